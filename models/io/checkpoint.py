"""Checkpoint I/O: one safetensors file per model, its metadata a JSON document (docs/checkpoints.md).

The file's ``__metadata__`` maps the single key ``"logpx"`` to the JSON document described in
docs/checkpoints.md. Loading never unpickles anything: safetensors holds raw tensors only, and the model
is rebuilt from the stored family and architecture before the tensors are checked against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..families import Family, build_model
from ..families.likelihoods import EIGHT_BIT
from .data import BINARIZE_SEED

__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "TRAINING_STATE_SUFFIX",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION = 1
METADATA_KEY = "logpx"
REQUIRED_KEYS = ("format_version", "family", "arch", "likelihood", "input_shape", "training", "dataset", "created")


# `logpx train --resume` keeps the optimiser's state beside the checkpoint under this suffix: not a model.
TRAINING_STATE_SUFFIX = ".state.safetensors"


# What a model's inputs are: binary (its inputs are binarised), in [0, 1], bytes 0..255, or any finite value.
DOMAINS = ("binary", "unit", "uint8", "real")

# What the service serves a checkpoint as: its file name without `.safetensors`, if it matches this.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def model_name_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the service would not serve a checkpoint written to ``path`` (None: it would), as one line."""
    target = Path(path)
    if target.suffix != ".safetensors":
        return f"{target.name}: a checkpoint is a .safetensors file (the service loads no other)"
    if not MODEL_NAME.match(target.stem):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", target.stem).strip("-._")[:128] or "my-model"
        return (
            f"{target.name}: the service serves a checkpoint by its file name, and {target.stem!r} is not a model "
            f"name (letters, digits, '.', '_', '-', starting with a letter or digit, at most 128); "
            f"write it as {safe}.safetensors"
        )
    return None


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded; the message names the problem."""


@dataclass
class Checkpoint:
    model: Family
    metadata: dict[str, Any]
    sha256: str
    path: Path | None  # None for a model registered in memory

    @property
    def binarize(self) -> str:
        """How inputs are made binary by default: the metadata's ``binarize``, else for a Bernoulli
        model ``sample`` (Bernoulli(x) draws, a function of each input and ``binarize_seed``: the protocol
        its held-out numbers were measured with), else ``none``."""
        default = "sample" if self.model.likelihood == "bernoulli" else "none"
        value = self.metadata.get("binarize", default)
        return value if value in ("threshold", "sample", "resample", "none") else default

    @property
    def domain(self) -> str:
        """What its inputs are (``DOMAINS``): the metadata's ``domain``, else ``binary`` for a Bernoulli
        likelihood (greyscale in [0, 1] binarised on the way in), ``uint8`` for a discretised logistic (the 256
        values k / 255) and ``unit`` (values in [0, 1]) for others.
        A ``real`` model takes any finite value (standardised data, real vectors)."""
        likelihood = self.model.likelihood
        default = "binary" if likelihood == "bernoulli" else "uint8" if likelihood in EIGHT_BIT else "unit"
        value = self.metadata.get("domain", default)
        return value if value in DOMAINS else default

    @property
    def binarize_seed(self) -> int:
        """The seed of the binarisation protocol (``sample``): the metadata's ``binarize_seed``, else the
        one the shipped models' held-out numbers were measured with."""
        value = self.metadata.get("binarize_seed", BINARIZE_SEED)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else BINARIZE_SEED


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Family,
    *,
    training: dict[str, Any],
    dataset: dict[str, Any],
    final_bounds: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` and its metadata atomically (temporary file, then rename), readable by all (0644,
    so that a container's non-root user can read a mounted checkpoint); returns the metadata."""
    metadata = {
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "arch": model.arch(),
        "likelihood": model.likelihood,
        "input_shape": list(model.input_shape),
        "training": training,
        "dataset": dataset,
        "final_bounds": final_bounds or {},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "binarize": "sample" if model.likelihood == "bernoulli" else "none",
        "binarize_seed": BINARIZE_SEED,
        **(extra or {}),
    }
    tensors = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in model.state_dict().items()}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
        os.chmod(tmp, 0o644)  # mkstemp's file is 0600; the rename below keeps the mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return metadata


def _regular_file(path: str | os.PathLike[str]) -> Path:
    """``path`` with links resolved, if it is a regular file: opening a FIFO or a device would block or
    never end. ``CheckpointError`` otherwise; no message here names a file-system path."""
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        raise CheckpointError("the file does not exist (a dangling link?)") from None
    if not resolved.is_file():
        raise CheckpointError("not a regular file")
    return resolved


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's JSON document, validated for the required keys; ``CheckpointError`` otherwise."""
    resolved = _regular_file(path)
    try:
        with safe_open(str(resolved), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # safetensors raises its own error types for malformed files
        reason = str(exc).replace(str(resolved), resolved.name).replace(str(path), Path(path).name)
        raise CheckpointError(f"not a readable safetensors file: {reason}") from None
    if raw is None:
        raise CheckpointError(f"safetensors metadata has no {METADATA_KEY!r} entry")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"metadata {METADATA_KEY!r} is not JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise CheckpointError("metadata document must be a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(f"metadata lacks required keys {missing}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"format_version {metadata['format_version']!r} is not supported (expected {FORMAT_VERSION})"
        )
    return metadata


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model a checkpoint describes and load its tensors, checked name by name and shape by
    shape; ``CheckpointError`` names the first problem found."""
    metadata = read_metadata(path)
    path = _regular_file(path)
    # Rebuilt on the meta device first: the architecture's declared sizes are checked against the file's
    # tensor shapes before anything is allocated (metadata alone must not be able to exhaust memory).
    try:
        with torch.device("meta"):
            skeleton = build_model(metadata["family"], metadata["arch"], metadata["input_shape"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(str(exc)) from None
    if metadata["likelihood"] != skeleton.likelihood:
        raise CheckpointError(f"likelihood {metadata['likelihood']!r} does not match family {metadata['family']!r}")
    expected = {name: list(t.shape) for name, t in skeleton.state_dict().items()}
    with safe_open(str(path), framework="pt") as f:
        shapes = {name: list(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118 (not iterable)
        missing = sorted(set(expected) - set(shapes))
        unexpected = sorted(set(shapes) - set(expected))
        if missing:
            raise CheckpointError(f"missing tensors: {missing}")
        if unexpected:
            raise CheckpointError(f"unexpected tensors: {unexpected}")
        for name, want in expected.items():
            if shapes[name] != want:
                raise CheckpointError(f"tensor {name!r} has shape {shapes[name]}, architecture needs {want}")
        state = {}
        for name in expected:
            try:
                tensor = f.get_tensor(name)
            except Exception as exc:
                raise CheckpointError(f"tensor {name!r} cannot be read: {exc}") from None
            if not tensor.is_floating_point():
                raise CheckpointError(f"tensor {name!r} has dtype {tensor.dtype}, expected floating point")
            if not torch.isfinite(tensor).all():
                raise CheckpointError(f"tensor {name!r} contains NaN or inf")
            state[name] = tensor.to(torch.float32)
    model = build_model(
        metadata["family"], metadata["arch"], metadata["input_shape"]
    )  # checked: allocates what the file holds
    model.load_state_dict(state)
    model.to(device).eval()
    return Checkpoint(model=model, metadata=metadata, sha256=file_sha256(path), path=path)
