"""Model registry: every checkpoint in a directory, loaded, moved to its device and warmed up.

A checkpoint that fails to load is kept as ``failed`` with its reason; the others serve.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from logpx.families import Family, LatentVariableModel
from logpx.io import MODEL_NAME, TRAINING_STATE_SUFFIX, Checkpoint, CheckpointError, load_checkpoint
from logpx.runtime import resolve_device
from logpx.samplers import Speed, measure

from .errors import InvalidInput, ModelNotFound, ModelNotReady

__all__ = ["NAME_PATTERN", "ModelEntry", "ModelRegistry"]

NAME_PATTERN = MODEL_NAME  # the library's: `logpx convert` and `train` refuse a name the service would skip
log = logging.getLogger("logpx")


@dataclass
class ModelEntry:
    name: str
    path: Path | None
    device: str
    status: Literal["loading", "ready", "failed"] = "loading"
    reason: str | None = None
    checkpoint: Checkpoint | None = None
    speed: Speed | None = None  # measured at load, for latent-variable models: what advice costs here

    @property
    def model(self) -> Family:
        """The loaded model; only ``get_ready`` entries are asked."""
        assert self.checkpoint is not None, f"model {self.name} is {self.status}"
        return self.checkpoint.model

    @property
    def binarize(self) -> str:
        """The checkpoint's default binarisation."""
        assert self.checkpoint is not None, f"model {self.name} is {self.status}"
        return self.checkpoint.binarize

    @property
    def domain(self) -> str:
        assert self.checkpoint is not None
        return self.checkpoint.domain

    @property
    def binarize_seed(self) -> int:
        """The seed of the checkpoint's binarisation protocol (``sample``)."""
        assert self.checkpoint is not None, f"model {self.name} is {self.status}"
        return self.checkpoint.binarize_seed

    @property
    def family(self) -> str | None:
        return self.checkpoint.model.family if self.checkpoint else None


class ModelRegistry:
    """``load_all``, ``load``, ``update``, ``get``, ``ready``; safe to read from any thread."""

    def __init__(self, directory: Path, device: str, retry_after_s: int = 5) -> None:
        self.directory = Path(directory)
        self.device = resolve_device(device)
        self.retry_after_s = retry_after_s
        self._entries: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self.skipped: list[tuple[str, str]] = []  # (file name, why) of files that are not served

    def discover(self) -> list[str]:
        """Register every ``*.safetensors`` in the directory as ``loading``; returns their names. Files
        whose name cannot be a model name are listed in ``skipped`` (and logged), never silently dropped."""
        paths = sorted(self.directory.glob("*.safetensors")) if self.directory.is_dir() else []
        with self._lock:
            for path in paths:
                if path.name.endswith(TRAINING_STATE_SUFFIX):
                    reason = "the optimiser state `logpx train` keeps beside a checkpoint for --resume, not a model"
                    self.skipped.append((path.name, reason))
                    log.info("skipping %s: %s", path.name, reason)
                elif NAME_PATTERN.match(path.stem):
                    self._entries.setdefault(path.stem, ModelEntry(path.stem, path, self.device))
                else:
                    reason = f"{path.stem!r} is not a model name: letters, digits, '.', '_', '-', starting with a letter or digit"
                    self.skipped.append((path.name, reason))
                    log.warning("skipping %s: %s", path.name, reason)
        if not paths:
            log.warning("no checkpoints found in %s", self.directory)
        return [p.stem for p in paths if not p.name.endswith(TRAINING_STATE_SUFFIX)]

    def load_all(self) -> None:
        for name in self.discover():
            if name in self._entries:
                self.load(name)
        self._loaded.set()

    def load(self, name: str) -> ModelEntry:
        entry = self._entries[name]
        assert entry.path is not None, f"{name} was registered in memory"
        try:
            checkpoint = load_checkpoint(entry.path, self.device)
            speed = self._warm_up(checkpoint)
        except CheckpointError as exc:
            entry.status, entry.reason = "failed", str(exc)
        except Exception as exc:  # a bad file must never stop the others from loading
            log.exception("checkpoint %s failed to load", name)
            entry.status, entry.reason = "failed", f"{type(exc).__name__}: could not be loaded"
        else:
            entry.checkpoint, entry.speed, entry.status, entry.reason = checkpoint, speed, "ready", None
        log.info("model %s: %s%s", name, entry.status, f" ({entry.reason})" if entry.reason else "")
        return entry

    def update(self, name: str, checkpoint: Checkpoint) -> ModelEntry:
        """Serve an already built checkpoint under ``name`` (moved to this registry's device and warmed
        up), replacing any entry of that name; no file needed (KServe's ``ModelRepository.update``)."""
        checkpoint.model.to(self.device).eval()
        speed = self._warm_up(checkpoint)
        entry = ModelEntry(name, None, self.device, "ready", None, checkpoint, speed)
        with self._lock:
            self._entries[name] = entry
        return entry

    def _warm_up(self, checkpoint: Checkpoint) -> Speed | None:
        """One tiny pass on the target device, so the first request pays no lazy initialisation; then, for a
        latent-variable model, its measured speed (what advice will cost here)."""
        generator = torch.Generator(device=self.device).manual_seed(0)
        with torch.no_grad():
            try:
                checkpoint.model.warm_up(generator)
            except ValueError as exc:
                raise CheckpointError(str(exc)) from None
        model = checkpoint.model
        return measure(model, generator) if isinstance(model, LatentVariableModel) else None

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return list(self._entries.values())

    def get(self, name: str) -> ModelEntry:
        if not NAME_PATTERN.match(name):
            raise InvalidInput(
                f"model name {name!r} has characters that are not allowed", field="name", limit=NAME_PATTERN.pattern
            )
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFound(f"no model named {name!r}", field="name")
        return entry

    def get_ready(self, name: str) -> ModelEntry:
        entry = self.get(name)
        if entry.status != "ready":
            raise ModelNotReady(
                f"model {name!r} is {entry.status}" + (f": {entry.reason}" if entry.reason else ""),
                field="name",
                headers={"Retry-After": str(self.retry_after_s)} if entry.status == "loading" else None,
            )
        return entry

    @property
    def loaded(self) -> bool:
        """Every checkpoint has been tried (each is ready or failed)."""
        return self._loaded.is_set()

    @property
    def ready(self) -> bool:
        """Every checkpoint has been tried, and at least one is serving."""
        return self._loaded.is_set() and any(e.status == "ready" for e in self.entries())
