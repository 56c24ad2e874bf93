"""Input validation shared by every public estimator and diagnostic."""

from __future__ import annotations

import torch

__all__ = ["check_log_weights"]


def check_log_weights(log_w: torch.Tensor, *, min_k: int = 1, finite: bool = True) -> None:
    """Raise ``ValueError`` unless ``log_w`` is a floating ``[k, B]`` tensor with ``k >= min_k``.

    Validation happens once, in the public function; the helpers below it trust their input.
    """
    if not isinstance(log_w, torch.Tensor):
        raise ValueError(f"log_w must be a torch.Tensor, got {type(log_w).__name__}")
    if log_w.dim() != 2:
        raise ValueError(f"log_w must have shape [k, B], got shape {tuple(log_w.shape)}")
    if not log_w.is_floating_point():
        raise ValueError(f"log_w must be a floating dtype, got {log_w.dtype}")
    if log_w.shape[0] < min_k:
        raise ValueError(f"need at least k={min_k} samples, got log_w of shape {tuple(log_w.shape)}")
    # One pass in the common case; -inf (a zero weight) is allowed, NaN and +inf are not (unless the
    # caller flags them per column: ``finite=False``).
    if finite and not bool(torch.isfinite(log_w).all()) and bool((torch.isnan(log_w) | torch.isposinf(log_w)).any()):
        raise ValueError("log_w contains NaN or +inf")
