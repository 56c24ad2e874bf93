"""Decode and validate request inputs into a ``[B, 784]`` float tensor in [0, 1], then binarise.

Every failure raises a domain error naming the field (``inputs[3]``, ``files[0]``) and the limit.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from models.data import binarize_sample, binarize_threshold

from .errors import InvalidInput, UnsupportedMediaType
from .schemas import Binarization, EstimatorIn

__all__ = ["images_from_json", "images_from_files", "plan_binarization", "apply_binarization", "parse_estimator", "finite_or_none", "IMAGE_TYPES"]

SIDE = 28
PIXELS = SIDE * SIDE
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
THRESHOLD = 0.5


def _shape_error(image: object, index: int, field: str) -> InvalidInput:
    if isinstance(image, list) and image and isinstance(image[0], list):
        detail = f"expected 28 rows of 28 values, got {len(image)} rows" + (
            "" if len(image) != SIDE else f" with lengths {sorted({len(r) for r in image if isinstance(r, list)})}"
        )
    else:
        detail = f"expected 784 values, got {len(image) if isinstance(image, list) else 'a non-list'}"
    return InvalidInput(f"{field}[{index}]: {detail}", field=f"{field}[{index}]", limit="784 values or 28x28")


def _check_values(x: np.ndarray, scale: str, field: str) -> torch.Tensor:
    """``x`` ``[B, 784]`` float64 -> float32 in [0, 1]; NaN, inf and out-of-range values are refused.
    numpy, not torch: for a few thousand values its per-call cost is a fraction of torch's dispatch, and
    this runs on the event loop for every request."""
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidInput(f"{field}[{i}]: value {j} is not finite", field=f"{field}[{i}]", limit="finite numbers")
    high = 1.0 if scale == "unit" else 255.0
    out = (x < 0) | (x > high)
    if scale == "byte":
        out |= x != np.round(x)
    if out.any():
        i, j = (int(v) for v in np.argwhere(out)[0])
        limit = "[0, 1]" if scale == "unit" else "integers 0..255"
        raise InvalidInput(
            f"{field}[{i}]: value {j} is {x[i, j]:g}, outside {limit} (scale={scale!r})",
            field=f"{field}[{i}]", limit=limit,
        )
    return torch.from_numpy((x / high).astype(np.float32))


def images_from_json(inputs: list[list[float]] | list[list[list[float]]], scale: str, field: str = "inputs") -> torch.Tensor:
    """Images as 784 numbers or 28 x 28 nested lists each -> ``[B, 784]`` float32 in [0, 1]."""
    rows = []
    for i, image in enumerate(inputs):
        if len(image) == PIXELS and not isinstance(image[0], list):
            rows.append(image)
        elif len(image) == SIDE and all(isinstance(r, list) and len(r) == SIDE for r in image):
            rows.append([v for r in image for v in r])
        else:
            raise _shape_error(image, i, field)
    return _check_values(np.array(rows, dtype=np.float64).reshape(len(rows), PIXELS), scale, field)


def images_from_files(files: list[tuple[str | None, bytes]], field: str = "files") -> torch.Tensor:
    """``(content_type, bytes)`` per uploaded PNG / JPEG, greyscale 28 x 28 -> ``[B, 784]`` in [0, 1].

    The declared size is checked from the header before any pixel is decoded, so an image bomb is
    refused without being expanded.
    """
    out = np.empty((len(files), PIXELS), dtype=np.float32)
    for i, (content_type, data) in enumerate(files):
        kind = (content_type or "").split(";")[0].strip().lower()
        if kind not in IMAGE_TYPES:
            raise UnsupportedMediaType(
                f"{field}[{i}]: content type {kind or 'missing'!r} is not supported", field=f"{field}[{i}]",
                limit=sorted(IMAGE_TYPES),
            )
        try:
            with warnings.catch_warnings():
                # Pillow warns, then refuses, on huge declared sizes; both are a refusal here.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data), formats=[IMAGE_TYPES[kind]])
            with img:
                if img.size != (SIDE, SIDE):
                    raise InvalidInput(
                        f"{field}[{i}]: image is {img.size[0]}x{img.size[1]}, must be 28x28 (no resizing is done)",
                        field=f"{field}[{i}]", limit="28x28",
                    )
                if img.mode not in ("L", "1"):
                    raise InvalidInput(
                        f"{field}[{i}]: image mode is {img.mode}, must be greyscale (L)", field=f"{field}[{i}]",
                        limit="greyscale",
                    )
                out[i] = np.asarray(img.convert("L"), dtype=np.float32).reshape(-1) / 255.0
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(
                f"{field}[{i}]: not a decodable {IMAGE_TYPES[kind]} image", field=f"{field}[{i}]", limit=IMAGE_TYPES[kind]
            ) from None
    return torch.from_numpy(out)


def plan_binarization(x: torch.Tensor, likelihood: str, method: str | None, seed: int) -> Binarization:
    """Decide and validate the request's binarisation; a Bernoulli model never silently scores
    non-binary data. ``apply_binarization`` does the work, on the device worker."""
    if method is None:
        method = "threshold" if likelihood == "bernoulli" else "none"
    if method == "threshold":
        return Binarization(method="threshold", threshold=THRESHOLD)
    if method == "sample":
        return Binarization(method="sample", seed=seed)
    if likelihood == "bernoulli" and not bool(((x == 0) | (x == 1)).all()):
        raise InvalidInput(
            "binarize='none' but the inputs are not all 0 or 1, and this model has a Bernoulli likelihood; "
            "use 'threshold' or 'sample'", field="binarize", limit="binary inputs",
        )
    return Binarization(method="none")


def apply_binarization(x: torch.Tensor, plan: Binarization, generator: torch.Generator) -> torch.Tensor:
    """``x`` binarised as planned; ``sample`` draws from ``generator`` (before the model's noise)."""
    if plan.method == "threshold":
        return binarize_threshold(x, plan.threshold)
    if plan.method == "sample":
        return binarize_sample(x, generator)
    return x


def parse_estimator(raw: dict[str, object], field: str) -> EstimatorIn:
    """An ``EstimatorIn`` from loose values (form fields, OIP parameters), as a 422 when invalid."""
    try:
        return EstimatorIn.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        name = f"{field}.{loc}" if loc else field
        raise InvalidInput(f"{name}: {err.get('msg', 'invalid')}", field=name) from None


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or inf: those become ``null``."""
    return value if math.isfinite(value) else None
