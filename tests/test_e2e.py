"""End to end: the real server started the way `make serve` starts it, driven by the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from logpx.client import LogpxClient
from tests.local_server import LocalServer

ROOT = Path(__file__).resolve().parents[1]
DIGITS = sorted((ROOT / "tests" / "data").glob("mnist-*.png"))
MODEL = "vae1-iwae50"


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="module")
def server(server_log: Path) -> Iterator[str]:
    """The shipped checkpoints served by `logpx serve`, the command `make serve` and the image run."""
    with LocalServer(ROOT / "checkpoints", log_path=server_log) as local:
        yield local.url


def test_server_logs_model_loads_and_one_json_line_per_request(server: str, server_log: Path) -> None:
    httpx.get(f"{server}/v1/models/{MODEL}", headers={"X-Request-ID": "find-me-in-the-log"})
    deadline = time.monotonic() + 10
    while "find-me-in-the-log" not in server_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = server_log.read_text().splitlines()
    assert f"model {MODEL}: ready" in lines
    access = [json.loads(line) for line in lines if "find-me-in-the-log" in line]
    assert access and access[0]["path"] == f"/v1/models/{MODEL}" and access[0]["status"] == 200


def test_cli_scores_pngs(server: str) -> None:
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("logpx")),
            "score",
            *map(str, DIGITS),
            "--model",
            MODEL,
            "--estimator",
            "jvi",
            "--k",
            "500",
            "--order",
            "1",
            "--url",
            server,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert f"model {MODEL} on cpu: jvi k=500 order=1" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("mnist-")]
    assert len(rows) == len(DIGITS) == 5
    for row in rows:
        log_px, std_err = float(row[1]), float(row[2])
        assert -250 < log_px < -20 and 0 < std_err < 5  # real digits under a trained MNIST model


def test_models_command(server: str) -> None:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("logpx")), "models", "--url", server],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert MODEL in out and "ready" in out


def test_live_answers_fast_while_a_long_request_computes(server: str) -> None:
    inputs = [[0.0] * 784] * 100
    done = threading.Event()

    def long_request() -> None:
        with LogpxClient(server) as client:
            client.evidence(MODEL, inputs, estimator={"name": "iwae", "k": 5000}, diagnostics=False)
        done.set()

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(0.5)
    latencies = []
    with httpx.Client(base_url=server) as http:
        while not done.is_set() and len(latencies) < 20:
            start = time.perf_counter()
            assert http.get("/v2/health/live").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
    thread.join()
    assert len(latencies) >= 3, "the long request finished too soon to measure"
    assert max(latencies) < 0.1, latencies


def test_cli_compares_estimators(server: str) -> None:
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("logpx")),
            "compare",
            *map(str, DIGITS[:2]),
            "--model",
            MODEL,
            "--estimators",
            "iwae:50",
            "jvi:50:1",
            "--reference",
            "iwae:500",
            "--replicates",
            "4",
            "--url",
            server,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "4 replicates, common random numbers" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("iwae-", "jvi-"))}
    assert set(rows) == {"iwae-500", "iwae-50", "jvi-50"}
    assert float(rows["iwae-50"][3]) < 0  # IWAE-50 lies below IWAE-500 on the same draws
    # k-hat on real digits is far over 0.7: the table says so, and says what to run instead.
    assert "unreliable" in rows["iwae-500"] and "advice: run AIS instead" in out
    # The advice rendered as the command that runs it, in the plan's grammar (leapfrog 10 is AIS's default).
    assert "run:     logpx score IMAGE... --model vae1-iwae50 --estimator iwae --k 100 --sampler ais:1000" in out


def test_cli_predict_and_client_arrays(server: str) -> None:
    """`logpx predict` on two digits with their labels; the client takes numpy arrays as well as lists."""
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("logpx")),
            "predict",
            *map(str, DIGITS[:2]),
            "--model",
            "bbb-mlp400",
            "--labels",
            "3",
            "8",
            "--k",
            "50",
            "--url",
            server,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("mnist-")]
    assert [r[1] for r in rows] == ["3", "8"], out
    assert all(any(level in line for level in ("reliable", "caution", "unreliable")) for line in out.splitlines()[3:5])
    image = np.zeros((1, 784))
    with LogpxClient(server) as client:
        as_array = client.evidence(MODEL, image, estimator={"name": "iwae", "k": 20})
        as_list = client.evidence(MODEL, image.tolist(), estimator={"name": "iwae", "k": 20})
        assert as_array["results"] == as_list["results"]
        assert client.predict("bbb-mlp400", image, k=10)["predictions"][0]["predicted"] in range(10)


def test_the_client_takes_the_same_words_everywhere(server: str) -> None:
    """One set of argument names across the client's methods and the CLI's flags, and the plan's text
    accepted wherever an estimator or a sampler is (a new user's `evidence(..., k=100)` was a TypeError, and
    `submit_job(..., estimators=["iwae:100"])` raised `string indices must be integers`)."""
    image = [[0.0] * 784]
    with LogpxClient(server) as client:
        by_keywords = client.evidence(MODEL, image, estimator="iwae", k=20, seed=4)
        by_text = client.evidence(MODEL, image, estimator="iwae:20", seed=4)
        by_object = client.evidence(MODEL, image, estimator={"name": "iwae", "k": 20}, seed=4)
        assert by_keywords["results"] == by_text["results"] == by_object["results"]
        annealed = client.evidence(MODEL, image, estimator="iwae:4@ais:5:2", seed=4)
        assert annealed["estimator"]["sampler"] == {
            "name": "ais", "steps": 5, "leapfrog": 2, "init": "encoder", "schedule": "sigmoid"
        }  # fmt: skip
        same = client.evidence(MODEL, image, estimator="iwae", k=4, sampler="ais:5:2", seed=4)
        assert same["results"] == annealed["results"]
        images = client.evidence_images(MODEL, DIGITS[:1], estimator="jvi:20:1", seed=4)
        assert images["estimator"]["name"] == "jvi" and images["estimator"]["k"] == 20
        compared = client.compare(MODEL, image, ["iwae:10", "jvi:10:1"], reference="iwae:20", replicates=2)
        assert [s["estimator"]["name"] for s in compared["estimators"]] == ["iwae", "jvi"]
        job = client.submit_job(MODEL, np.zeros((2, 784)), estimators=["iwae:10", "iwae:4@ais:5"])
        assert [s["estimator"]["sampler"]["name"] for s in job["summary"]] == ["importance", "ais"]
        client.cancel_job(job["id"][:8])  # a unique prefix names the job
        with pytest.raises(TypeError, match="needs k"):
            client.evidence(MODEL, image, estimator="iwae")


# Every `sh` and `python` block of these files runs as printed against this module's server (the port put in
# for 8000), except the blocks named here, each with why it cannot run in a test.
DOCUMENTED = ("README.md", "docs/api.md", "docs/jobs.md", "docs/checkpoints.md")
NOT_RUN = {
    "make serve": "the two commands start a server and the suite of their own (this server is `logpx serve`, as they run it)",
    "logpx train --data DIR": "DIR is the reader's data, and a 100-epoch run",
    "my_state_dict": "the reader's own state dict; tests/test_docs.py runs this recipe on one",
}


def _blocks() -> list[tuple[str, str, str]]:
    """``(where, language, text)`` of every fenced block to run."""
    import re

    found = []
    for name in DOCUMENTED:
        text = (ROOT / name).read_text()
        for m in re.finditer(r"```(sh|python)\n(.*?)```", text, re.S):
            line = text[: m.start()].count("\n") + 1
            if not any(marker in m.group(2) for marker in NOT_RUN):
                found.append((f"{name}:{line}", m.group(1), m.group(2)))
    return found


def test_every_documented_command_runs_as_printed(server: str, tmp_path: Path) -> None:
    """The commands of README.md and docs/, run from a directory laid out like a clone (its checkpoints, test
    data and .venv), against a real server; curl made to fail on an HTTP error status, the shell on any
    failing command. Where the docs print an answer (the advice in README.md), the run must give it."""
    import os
    import re

    blocks = _blocks()
    assert len(blocks) >= 12, [b[0] for b in blocks]
    (tmp_path / "checkpoints").mkdir()
    for shipped in (ROOT / "checkpoints").glob("*.safetensors"):
        (tmp_path / "checkpoints" / shipped.name).symlink_to(shipped)
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    # The convert example's vae.pt: the PyTorch examples VAE's tensors (their values do not matter here).
    import torch

    shapes = {"fc1": (400, 784), "fc21": (20, 400), "fc22": (20, 400), "fc3": (400, 20), "fc4": (784, 400)}
    state = {
        f"{n}.{p}": torch.randn(s if p == "weight" else s[:1]) for n, s in shapes.items() for p in ("weight", "bias")
    }
    torch.save(state, tmp_path / "vae.pt")
    port = server.rsplit(":", 1)[1]
    env = {**os.environ, "LOGPX_URL": server}
    outputs = {}
    for where, language, text in blocks:
        text = re.sub(r"(localhost|127\.0\.0\.1):8000", f"127.0.0.1:{port}", text)
        if language == "sh":
            text = text.replace("curl -s ", "curl -sf ")
            # ID: the job or the comparison just submitted.
            job = "$(.venv/bin/logpx job list --limit 1 | head -n1 | cut -d' ' -f1)"
            comparison = (
                f"$(curl -s {server}/v1/comparisons?limit=1 | "
                'python3 -c \'import json, sys; print(json.load(sys.stdin)["comparisons"][0]["id"])\')'
            )
            text = text.replace("logpx comparison ID", f"logpx comparison {comparison}")
            text = re.sub(r"\bID\b", job, text)
            argv = ["bash", "-euo", "pipefail", "-c", text]
        else:
            argv = [sys.executable, "-c", text]
        started = time.monotonic()
        run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        print(f"{where}: {time.monotonic() - started:.1f} s")
        assert run.returncode == 0, (where, text, run.stdout[-2000:], run.stderr[-2000:])
        outputs[where] = run.stdout
        # A job the block submitted without watching it has been accepted, which is all the block shows;
        # cancelled, it leaves the worker to the next block.
        for job in httpx.get(f"{server}/v1/jobs", params={"limit": 100}).json()["jobs"]:
            if job["state"] in ("queued", "running"):
                httpx.delete(f"{server}/v1/jobs/{job['id']}")
    printed = (ROOT / "README.md").read_text().split("```text\n", 1)[1].split("\n", 1)[0]
    assert any(printed.split(" (POST")[0] in out for out in outputs.values()), printed
    assert (tmp_path / "rows.csv").read_text().startswith("index,")
    assert (tmp_path / "pairs.csv").read_text().startswith("index,label,vae1-iwae50.iwae:500.log_px")
    assert (tmp_path / "checkpoints" / "examples-vae.safetensors").is_file()
