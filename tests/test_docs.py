"""The documentation stays true: every setting documented, the checkpoint recipe loads."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from safetensors.torch import save_file

from logpx.app.config import Settings
from logpx.families.vae import VAE, VAEConfig
from logpx.io.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    for name in Settings.model_fields:
        assert f"`LOGPX_{name.upper()}`" in text, name


def test_checkpoint_recipe_from_the_docs_loads(tmp_path: Path) -> None:
    """docs/checkpoints.md: a checkpoint written with plain safetensors from someone else's code."""
    arch = {"layers": 1, "input_dim": 784, "hidden": [200, 200], "latent": 50, "hidden2": [100, 100], "latent1": 100}
    state = VAE(VAEConfig(**arch)).state_dict()  # stands in for "my_state_dict"
    meta = {
        "format_version": 1,
        "family": "vae",
        "arch": arch,
        "likelihood": "bernoulli",
        "input_shape": [28, 28],
        "training": {"objective": "iwae", "k": 50, "order": None, "epochs": 100},
        "dataset": {"name": "mnist", "sha256": "..."},
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    save_file(
        {n: t.contiguous() for n, t in state.items()},
        str(tmp_path / "mine.safetensors"),
        metadata={"logpx": json.dumps(meta)},
    )
    assert load_checkpoint(tmp_path / "mine.safetensors").metadata["family"] == "vae"
    documented = (ROOT / "docs" / "checkpoints.md").read_text()
    for name in state:
        assert f"`{name}`" in documented or name.split(".")[0] in ("encoder2", "prior1"), name


def test_the_api_docs_example_response_matches_the_current_schema_and_advice() -> None:
    """The example in docs/api.md is a real response: it must still parse as one, with today's advice."""
    import json

    from logpx.app.plans import rerun_out
    from logpx.app.schemas import EvidenceResponse
    from logpx.estimators.verdict import AIS_ADVICE, AIS_RERUN

    text = (ROOT / "docs" / "api.md").read_text()
    start = text.index("```json\n", text.index("A real response (")) + len("```json\n")
    example = EvidenceResponse.model_validate(json.loads(text[start : text.index("\n```", start)]))
    verdict = example.results[0].verdict
    assert verdict.level == "unreliable" and verdict.advice == f"{AIS_ADVICE} (POST /v1/models/{example.model}/bdmc)"
    assert verdict.rerun == rerun_out(AIS_RERUN)
