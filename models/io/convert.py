"""Import your own weights: a state dict (safetensors, or a ``.pt`` file opened with
``torch.load(weights_only=True)``, which refuses anything but tensors and containers: never a full
pickle), a name map and an architecture become a logpx checkpoint. docs/checkpoints.md has a worked
example for the PyTorch examples VAE."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open

from ..families import build_model
from .checkpoint import CheckpointError, model_name_problem, save_checkpoint

__all__ = ["BY_ORDER", "convert", "convert_state", "load_document", "names_by_order", "read_state_dict"]

BY_ORDER = "by-order"  # in place of a name map: pair the tensors in the order the two networks hold them


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The named tensors of a safetensors file or of a ``.pt`` state dict (tensors only). Anything else is
    one ``CheckpointError`` line: never a traceback, and never torch's suggestion to load with
    ``weights_only=False`` (that runs whatever code the file holds)."""
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                # The format stores names sorted as text ("10.weight" before "2.weight"): in natural order they
                # are an nn.Sequential's module order again (what `--by-order` pairs by).
                return {name: f.get_tensor(name) for name in sorted(f.keys(), key=_natural)}
        except Exception as exc:  # safetensors raises its own error types for a malformed header
            raise CheckpointError(f"{path.name}: not a readable safetensors file ({type(exc).__name__})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain containers only
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path.name}: refused: it holds Python objects besides tensors, which only a loader that runs code "
            "could read. Save the weights alone: torch.save(model.state_dict(), 'weights.pt'), or as safetensors"
        ) from None
    except Exception as exc:  # a truncated or foreign file: zip, EOF and runtime errors of many kinds
        raise CheckpointError(
            f"{path.name}: not a readable PyTorch state dict ({type(exc).__name__}); send a .pt state dict or "
            ".safetensors (a .pt2 exported program is not read: its loader can run code)"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name}: expected a state dict of tensors (model.state_dict())")
    return dict(state)


# A module's own tensors in the order PyTorch registers them (Linear, convolutions, norms); others by name.
_REGISTERED = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


def _natural(name: str) -> list[tuple[int, int | str]]:
    *path, last = name.split(".")
    key: list[tuple[int, int | str]] = [(0, int(p)) if p.isdigit() else (1, p) for p in path]
    return [*key, (0, _REGISTERED[last]) if last in _REGISTERED else (1, last)]


def names_by_order(expected: dict[str, list[int]], state: dict[str, torch.Tensor], source: str) -> dict[str, str]:
    """The name map that pairs the architecture's tensors (``expected``: name -> shape, in module order) with
    ``state``'s in the order it holds them: a ``.pt`` state dict's is its module order; a safetensors file's is
    natural order, an ``nn.Sequential``'s. Any count or shape that does not pair is one line saying where."""
    ours, theirs = list(expected), list(state)
    if len(ours) != len(theirs):
        raise CheckpointError(
            f"by order: the architecture has {len(ours)} tensors, {source} has {len(theirs)}; give a name map (--names)"
        )
    for i, (name, user) in enumerate(zip(ours, theirs, strict=True)):
        if list(state[user].shape) != expected[name]:
            raise CheckpointError(
                f"by order: tensor {i} of {source}, {user} {list(state[user].shape)}, pairs with {name} which needs "
                f"{expected[name]}: the networks hold their layers in different orders; give a name map (--names)"
            )
    return dict(zip(ours, theirs, strict=True))


def convert(
    weights: Path,
    names: dict[str, str] | str,
    spec: dict[str, Any],
    out: Path,
    dataset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out`` from ``weights``; ``names`` maps each logpx tensor name to the user's (or is ``BY_ORDER``:
    ``names_by_order``), ``spec`` is
    ``{"family": ..., "arch": {...}, "input_shape": [...]}``. ``CheckpointError`` names every tensor that
    is missing from the map, absent from the file, left over, or of the wrong shape."""
    if (problem := model_name_problem(out)) is not None:  # before the weights are read: a name is cheap to fix
        raise CheckpointError(problem)
    return convert_state(read_state_dict(weights), weights.name, names, spec, out, dataset)


def convert_state(
    state: dict[str, torch.Tensor],
    source: str,
    names: dict[str, str] | str,
    spec: dict[str, Any],
    out: Path,
    dataset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``convert`` of a state dict already read (``source`` names it in errors and in the metadata)."""
    if (problem := model_name_problem(out)) is not None:
        raise CheckpointError(problem)
    if names != BY_ORDER and (
        not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items())
    ):
        raise CheckpointError("the name map must be an object of logpx tensor name -> your tensor name, both strings")
    if not isinstance(spec, dict):
        raise CheckpointError("the architecture file must be an object with 'family', 'arch' and 'input_shape'")
    for key in ("family", "arch"):
        if key not in spec:
            raise CheckpointError(f"the architecture file needs {key!r} (and optionally 'input_shape')")
    try:
        with torch.device("meta"):
            skeleton = build_model(spec["family"], spec["arch"], spec.get("input_shape"))
    except (ValueError, TypeError, KeyError) as exc:  # an architecture of the wrong kinds of values
        raise CheckpointError(f"the architecture: {exc}") from None
    expected = {name: list(t.shape) for name, t in skeleton.state_dict().items()}
    if isinstance(names, str):
        names = names_by_order(expected, state, source)
    problems = []
    if unmapped := sorted(set(expected) - set(names)):
        problems.append(f"the name map does not cover {unmapped}")
    if unknown := sorted(set(names) - set(expected)):
        problems.append(f"the name map names tensors this architecture does not have: {unknown}")
    if absent := sorted(user for name, user in names.items() if name in expected and user not in state):
        problems.append(f"{source} has no tensors {absent}")
    if unused := sorted(set(state) - set(names.values())):
        problems.append(f"tensors of {source} that nothing maps: {unused}")
    for name, user in sorted(names.items()):
        if name in expected and user in state and list(state[user].shape) != expected[name]:
            problems.append(f"{user} has shape {list(state[user].shape)}, {name} needs {expected[name]}")
    if problems:
        raise CheckpointError("; ".join(problems))
    model = build_model(spec["family"], spec["arch"], spec.get("input_shape"))
    model.load_state_dict({name: state[user].to(torch.float32) for name, user in names.items()})
    training = {"objective": "imported", "k": None, "order": None, "epochs": None, "source": source}
    return save_checkpoint(out, model.eval(), training=training, dataset=dataset or {"name": "unknown"})


def load_document(path: Path, what: str) -> Any:
    """A small JSON or YAML file (by its suffix: ``.yaml`` / ``.yml`` are YAML, anything else JSON)."""
    try:
        text = path.read_text()
        return yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    except yaml.constructor.ConstructorError:
        raise CheckpointError(
            f"{what} {path.name}: YAML tags that build Python objects are not read (loading them can run code); "
            "write plain YAML or JSON"
        ) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{what} {path.name}: {first}") from None
