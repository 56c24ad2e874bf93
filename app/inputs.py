"""Decode and validate request inputs into a ``[B, D]`` float tensor in [0, 1], then binarise; the
shape of one input comes from the model's checkpoint.

Every failure raises a domain error naming the field (``inputs[3]``, ``files[0]``) and the limit.
"""

from __future__ import annotations

import asyncio
import io
import math
import warnings
from typing import Any

import numpy as np
import torch
from fastapi import UploadFile
from PIL import Image
from pydantic import ValidationError

from logpx.io import binarize

from .errors import InvalidInput, UnsupportedMediaType
from .schemas import Binarization, EstimatorIn, SamplerIn

__all__ = [
    "IMAGE_TYPES",
    "apply_binarization",
    "check_values",
    "decode_inputs",
    "finite_or_none",
    "images_from_files",
    "inputs_from_json",
    "parse_estimator",
    "parse_sampler",
    "plan_binarization",
    "read_uploads",
]

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
THRESHOLD = 0.5


def _shape_text(shape: tuple[int, ...]) -> str:
    size = math.prod(shape)
    return f"{size} values" + (f" or {' x '.join(map(str, shape))} nested lists" if len(shape) > 1 else "")


def _flatten_to(image: object, shape: tuple[int, ...]) -> list[float] | None:
    """``image`` as a flat list when it holds ``prod(shape)`` numbers flat or nested as ``shape``, else None."""
    if not isinstance(image, list):
        return None
    if len(image) == math.prod(shape) and not (image and isinstance(image[0], list)):
        return image
    if len(shape) < 2 or len(image) != shape[0]:
        return None
    flat: list[float] = []
    for row in image:
        part = (
            _flatten_to(row, shape[1:])
            if len(shape) > 2
            else (row if isinstance(row, list) and len(row) == shape[1] else None)
        )
        if part is None:
            return None
        flat.extend(part)
    return flat


def check_values(x: np.ndarray, scale: str, field: str, domain: str = "unit") -> torch.Tensor:
    """``x`` ``[B, D]`` float64 -> float32 in [0, 1] (``scale`` ``real``: as they are, for a model whose
    ``domain`` is real); NaN, inf and out-of-range values are refused. numpy, not torch: for a few thousand
    values its per-call cost is a fraction of torch's dispatch, and this runs on the event loop for every request."""
    if scale == "real" and domain != "real":
        raise InvalidInput(
            f"scale='real' is for models whose data are real-valued; this model's domain is {domain!r}: send values "
            "in [0, 1] (scale 'unit') or integers 0..255 (scale 'byte')",
            field="scale",
            limit=["unit", "byte"],
        )
    bad = ~np.isfinite(x)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidInput(f"{field}[{i}]: value {j} is not finite", field=f"{field}[{i}]", limit="finite numbers")
    if scale == "real":
        return torch.from_numpy(x.astype(np.float32))
    if domain == "uint8" and scale == "unit":  # an 8-bit model's data are the 256 values k / 255
        off = np.abs(x * 255 - np.round(x * 255)) > 1e-3
        if off.any():
            i, j = (int(v) for v in np.argwhere(off)[0])
            raise InvalidInput(
                f"{field}[{i}]: value {j} is {x[i, j]:g}, not one of the 256 values k / 255 an 8-bit model scores; "
                "send integers 0..255 with scale 'byte'",
                field=f"{field}[{i}]",
                limit="k / 255",
            )
        x = np.round(x * 255) / 255
    high = 1.0 if scale == "unit" else 255.0
    out = (x < 0) | (x > high)
    if scale == "byte":
        out |= x != np.round(x)
    if out.any():
        i, j = (int(v) for v in np.argwhere(out)[0])
        limit = "[0, 1]" if scale == "unit" else "integers 0..255"
        raise InvalidInput(
            f"{field}[{i}]: value {j} is {x[i, j]:g}, outside {limit} (scale={scale!r})",
            field=f"{field}[{i}]",
            limit=limit,
        )
    return torch.from_numpy((x / high).astype(np.float32))


def inputs_from_json(
    inputs: list[Any], scale: str, input_shape: tuple[int, ...], field: str = "inputs", domain: str = "unit"
) -> torch.Tensor:
    """Inputs as ``prod(input_shape)`` numbers or nested lists of ``input_shape`` each -> ``[B, D]``
    float32 in [0, 1] (as they are for a real-valued model's ``scale`` ``real``)."""
    rows = []
    for i, image in enumerate(inputs):
        flat = _flatten_to(image, input_shape)
        if flat is None:
            got = f"{len(image)} entries" if isinstance(image, list) else "a non-list"
            raise InvalidInput(
                f"{field}[{i}]: expected {_shape_text(input_shape)}, got {got}",
                field=f"{field}[{i}]",
                limit=_shape_text(input_shape),
            )
        rows.append(flat)
    try:
        array = np.array(rows, dtype=np.float64).reshape(len(rows), math.prod(input_shape))
    except (TypeError, ValueError):
        raise InvalidInput(f"{field}: values must be numbers", field=field, limit="numbers") from None
    return check_values(array, scale, field, domain)


def images_from_files(
    files: list[tuple[str | None, bytes]], input_shape: tuple[int, ...], field: str = "files"
) -> torch.Tensor:
    """``(content_type, bytes)`` per uploaded PNG / JPEG, of the model's ``input_shape``: ``[H, W]`` or
    ``[1, H, W]`` greyscale, ``[3, H, W]`` RGB -> ``[B, C * H * W]`` in [0, 1], channels first.

    The declared size is checked from the header before any pixel is decoded, so an image bomb is
    refused without being expanded.
    """
    channels = input_shape[0] if len(input_shape) == 3 else 1
    if not (len(input_shape) == 2 or (len(input_shape) == 3 and channels in (1, 3))):
        raise InvalidInput(
            f"this model takes inputs of shape {list(input_shape)}, not images; send them as JSON",
            field=field,
            limit=list(input_shape),
        )
    height, width = input_shape[-2:]
    mode = "RGB" if channels == 3 else "L"
    out = np.empty((len(files), channels * height * width), dtype=np.float32)
    for i, (content_type, data) in enumerate(files):
        kind = (content_type or "").split(";")[0].strip().lower()
        if kind not in IMAGE_TYPES:
            raise UnsupportedMediaType(
                f"{field}[{i}]: content type {kind or 'missing'!r} is not supported",
                field=f"{field}[{i}]",
                limit=sorted(IMAGE_TYPES),
            )
        try:
            with warnings.catch_warnings():
                # Pillow warns, then refuses, on huge declared sizes; both are a refusal here.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data), formats=[IMAGE_TYPES[kind]]) as probe:
                    probe.verify()  # every chunk's checksum and the end marker: a cut-short file is refused
                img = Image.open(io.BytesIO(data), formats=[IMAGE_TYPES[kind]])
            with img:
                if img.size != (width, height):
                    raise InvalidInput(
                        f"{field}[{i}]: image is {img.size[0]}x{img.size[1]}, must be {width}x{height} (no resizing is done)",
                        field=f"{field}[{i}]",
                        limit=f"{width}x{height}",
                    )
                allowed = ("L", "1") if channels == 1 else ("RGB", "RGBA", "L")
                if img.mode not in allowed:
                    kind_text = "greyscale (L)" if channels == 1 else "RGB (or greyscale, repeated over the channels)"
                    raise InvalidInput(
                        f"{field}[{i}]: image mode is {img.mode}, must be {kind_text}",
                        field=f"{field}[{i}]",
                        limit="greyscale" if channels == 1 else "RGB",
                    )
                img.load()  # decodes now, and raises on data that ends early (truncated images are not loaded)
                pixels = np.asarray(img.convert(mode), dtype=np.float32) / 255.0  # [H, W] or [H, W, 3]
                # [C, H, W] order, as the model's input_shape says (an alpha channel is dropped).
                out[i] = (pixels.transpose(2, 0, 1) if channels == 3 else pixels).reshape(-1)
        except InvalidInput:
            raise
        except Exception:  # Pillow's decoders raise many types (OSError, SyntaxError, ValueError, struct.error, ...)
            raise InvalidInput(
                f"{field}[{i}]: not a decodable, complete {IMAGE_TYPES[kind]} image",
                field=f"{field}[{i}]",
                limit=IMAGE_TYPES[kind],
            ) from None
    return torch.from_numpy(out)


OFF_LOOP_VALUES = 50_000  # decoding more values than this runs on a thread, away from the event loop


async def read_uploads(files: list[UploadFile], input_shape: tuple[int, ...], field: str = "files") -> torch.Tensor:
    """The uploaded image files of a multipart request, decoded for a model of ``input_shape`` on a
    thread: a crafted image can be slow to decode, and the event loop must keep answering."""
    raw = [(f.content_type, await f.read()) for f in files]
    return await asyncio.to_thread(images_from_files, raw, input_shape, field)


async def decode_inputs(
    inputs: list[Any], scale: str, input_shape: tuple[int, ...], field: str = "inputs", domain: str = "unit"
) -> torch.Tensor:
    """``inputs_from_json``, on a thread when the batch is large."""
    if len(inputs) * math.prod(input_shape) > OFF_LOOP_VALUES:
        return await asyncio.to_thread(inputs_from_json, inputs, scale, input_shape, field, domain)
    return inputs_from_json(inputs, scale, input_shape, field, domain)


def plan_binarization(
    x: torch.Tensor, likelihood: str, method: str | None, seed: int, default: str, protocol_seed: int
) -> Binarization:
    """Decide and validate the request's binarisation (``default``: the checkpoint's); a Bernoulli
    model never silently scores non-binary data. ``apply_binarization`` does the work, on the worker.

    ``sample`` is the checkpoint's protocol: Bernoulli draws that are a function of each input and
    ``protocol_seed``, never of the request's ``seed``, batch, route or job chunk; ``resample`` (asked for
    by name only) draws them afresh from the request's ``seed``, for whoever wants that variability."""
    if method is None:
        method = default
    if method == "threshold":
        return Binarization(method="threshold", threshold=THRESHOLD)
    if method == "sample":
        return Binarization(method="sample", seed=protocol_seed)
    if method == "resample":
        return Binarization(method="resample", seed=seed)
    if likelihood == "bernoulli" and not bool(((x == 0) | (x == 1)).all()):
        raise InvalidInput(
            "binarize='none' but the inputs are not all 0 or 1, and this model has a Bernoulli likelihood; "
            "use 'threshold' or 'sample'",
            field="binarize",
            limit="binary inputs",
        )
    return Binarization(method="none")


def apply_binarization(x: torch.Tensor, plan: Binarization, generator: torch.Generator) -> torch.Tensor:
    """``x`` binarised as planned: ``sample`` by each input's own draws (``plan.seed``, the protocol's);
    ``resample`` from ``generator``, the request's (before the model's noise)."""
    threshold = THRESHOLD if plan.threshold is None else plan.threshold
    return binarize(x, plan.method, seed=plan.seed, generator=generator, threshold=threshold)


def parse_estimator(raw: dict[str, object], field: str) -> EstimatorIn:
    """An ``EstimatorIn`` from loose values (form fields, OIP parameters), as a 422 when invalid."""
    try:
        return EstimatorIn.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        # The order-versus-k check sees the whole object; the value at fault is the order.
        loc = ".".join(str(p) for p in err.get("loc", ())) or ("order" if "order" in err.get("msg", "") else "")
        name = ".".join(part for part in (field, loc) if part) or "body"
        raise InvalidInput(f"{name}: {err.get('msg', 'invalid')}", field=name) from None


def parse_sampler(raw: dict[str, object], field: str) -> SamplerIn:
    """A ``SamplerIn`` from loose values (form fields, OIP parameters), as a 422 when invalid; ``None``
    values are left out."""
    try:
        return SamplerIn.model_validate({key: value for key, value in raw.items() if value is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        name = ".".join(part for part in (field, loc) if part) or "sampler"
        raise InvalidInput(f"{name}: {err.get('msg', 'invalid')}", field=name) from None


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or inf: those become ``null``."""
    return value if math.isfinite(value) else None
