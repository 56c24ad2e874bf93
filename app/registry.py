"""Model registry: every checkpoint in a directory, loaded, moved to its device and warmed up.

A checkpoint that fails to load is kept as ``failed`` with its reason; the others serve.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from models.checkpoint import Checkpoint, CheckpointError, load_checkpoint

from .errors import InvalidInput, ModelNotFound, ModelNotReady

__all__ = ["ModelEntry", "ModelRegistry", "resolve_device", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
log = logging.getLogger("logpx")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class ModelEntry:
    name: str
    path: Path
    status: Literal["loading", "ready", "failed"] = "loading"
    reason: str | None = None
    device: str | None = None
    checkpoint: Checkpoint | None = None

    @property
    def family(self) -> str | None:
        return self.checkpoint.metadata["family"] if self.checkpoint else None


class ModelRegistry:
    """``load_all``, ``load``, ``get``, ``unload``, ``ready``; safe to read from any thread."""

    def __init__(self, directory: Path, device: str) -> None:
        self.directory = Path(directory)
        self.device = resolve_device(device)
        self._entries: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()
        self._loaded = threading.Event()

    def discover(self) -> list[str]:
        """Register every ``*.safetensors`` in the directory as ``loading``; returns their names."""
        paths = sorted(self.directory.glob("*.safetensors")) if self.directory.is_dir() else []
        with self._lock:
            for path in paths:
                if NAME_PATTERN.match(path.stem):
                    self._entries.setdefault(path.stem, ModelEntry(path.stem, path))
        if not paths:
            log.warning("no checkpoints found in %s", self.directory)
        return [p.stem for p in paths]

    def load_all(self) -> None:
        for name in self.discover():
            if name in self._entries:
                self.load(name)
        self._loaded.set()

    def load(self, name: str) -> ModelEntry:
        entry = self._entries[name]
        try:
            checkpoint = load_checkpoint(entry.path, self.device)
            self._warm_up(checkpoint)
        except CheckpointError as exc:
            entry.status, entry.reason = "failed", str(exc)
        except Exception as exc:  # a bad file must never stop the others from loading
            log.exception("checkpoint %s failed to load", name)
            entry.status, entry.reason = "failed", f"{type(exc).__name__}: could not be loaded"
        else:
            entry.checkpoint, entry.device, entry.status, entry.reason = checkpoint, self.device, "ready", None
        log.info("model %s: %s%s", name, entry.status, f" ({entry.reason})" if entry.reason else "")
        return entry

    @staticmethod
    def _warm_up(checkpoint: Checkpoint) -> None:
        """One tiny pass on the target device, so the first request pays no lazy initialisation."""
        with torch.inference_mode():
            try:
                checkpoint.model.warm_up()
            except ValueError as exc:
                raise CheckpointError(str(exc)) from None

    def unload(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

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
                field="name", headers={"Retry-After": "5"} if entry.status == "loading" else None,
            )
        return entry

    @property
    def ready(self) -> bool:
        """Every checkpoint has been tried, and at least one is serving."""
        return self._loaded.is_set() and any(e.status == "ready" for e in self.entries())
