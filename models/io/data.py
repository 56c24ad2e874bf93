"""Image data: the IDX format (MNIST, Fashion-MNIST), the validation split, and binarisation."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "binarize_sample",
    "binarize_threshold",
    "held_out_count",
    "load_idx_dataset",
    "parse_idx",
    "read_idx",
    "split_train_valid",
]

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
VALID_SIZE = 10_000  # the last 10,000 training images are held out for validation


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data  # gzip by its magic, whatever the name


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped)."""
    return parse_idx(_read_bytes(Path(path)), str(path))


def parse_idx(data: bytes | bytearray, name: str = "data") -> np.ndarray:
    """The array in IDX bytes (not gzipped): magic ``0 0 dtype ndim``, ``ndim`` big-endian sizes, data."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or len(data) < 4 + 4 * data[3]:
        raise ValueError(f"{name}: not an IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    itemsize = np.dtype(_IDX_DTYPES[data[2]]).itemsize
    if (len(data) - 4 - 4 * ndim) != int(np.prod(shape)) * itemsize:
        raise ValueError(
            f"{name}: header says {list(shape)}, file holds {(len(data) - 4 - 4 * ndim) // itemsize} values"
        )
    return np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise FileNotFoundError(f"{directory} has no {stem}[.gz]")


def load_idx_dataset(
    directory: str | Path, split: str = "train", *, images: str | Path | None = None, labels: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, object]]:
    """Images ``[N, D]`` float32 in [0, 1], labels ``[N]`` int64, and a description with the sha256 of
    the decompressed image bytes. The files are ``images`` and ``labels`` when given (any names), else
    ``{split}-images-idx3-ubyte[.gz]`` and ``{split}-labels-idx1-ubyte[.gz]`` in ``directory``."""
    directory = Path(directory)
    image_path = Path(images) if images else _find(directory, f"{split}-images-idx3-ubyte")
    images_array = read_idx(image_path)
    labels_array = read_idx(Path(labels) if labels else _find(directory, f"{split}-labels-idx1-ubyte"))
    if labels_array.shape[0] != images_array.shape[0]:
        raise ValueError(f"{images_array.shape[0]} images but {labels_array.shape[0]} labels")
    info = {
        "name": image_path.parent.name if images else directory.name,
        "file": image_path.name,
        "sha256": hashlib.sha256(_read_bytes(image_path)).hexdigest(),
        "num_images": int(images_array.shape[0]),
    }
    x = torch.from_numpy(images_array.reshape(images_array.shape[0], -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels_array.astype(np.int64)), info


def held_out_count(n: int, valid: float) -> int:
    """Images held out of ``n``: ``valid`` as a count (>= 1) or a fraction (< 1); ``ValueError`` unless at
    least one image is held out and at least one is left to train on."""
    if valid >= 1 and valid != int(valid):
        raise ValueError(f"--valid {valid:g}: a count of images is a whole number (a fraction is below 1)")
    count = round(valid * n) if 0 < valid < 1 else int(valid)
    if not 1 <= count < n:
        raise ValueError(
            f"holding out {count} of {n} images leaves no training or no held-out images; "
            "give --valid as a count below the data set's size or a fraction in (0, 1)"
        )
    return count


def split_train_valid(x: torch.Tensor, valid_size: int = VALID_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All but the last ``valid_size`` rows for training, the last ``valid_size`` for validation."""
    return x[:-valid_size], x[-valid_size:]


def binarize_threshold(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Pixels in [0, 1] to {0, 1}: 1 where ``x > threshold``."""
    return (x > threshold).to(x.dtype)


# The binarisation protocol's seed: training's held-out bounds, ``logpx evaluate`` and the service (for a
# checkpoint that states no ``binarize_seed`` of its own) all binarise with it.
BINARIZE_SEED = 12345


def binarize_per_input(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Pixels in [0, 1] to {0, 1} by Bernoulli(x) draws that are a function of each input and ``seed``
    alone: row i's uniforms come from a generator seeded by ``seed`` and a hash of row i's float32 values.
    The same image is binarised the same way in any batch, request, route, job chunk or replica, and
    whatever seed its estimator draws with (the literature binarises a test set once)."""
    rows = x.detach().to("cpu", torch.float32).contiguous().numpy()
    out = np.empty(rows.shape, dtype=np.float32)
    for i, row in enumerate(rows):
        digest = np.frombuffer(hashlib.blake2b(row.tobytes(), digest_size=16).digest(), dtype=np.uint32)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *digest.tolist()])))
        out[i] = rng.random(row.shape[0], dtype=np.float32) < row
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def binarize(
    x: torch.Tensor,
    method: str,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    threshold: float = 0.5,
) -> torch.Tensor:
    """``x`` made binary by ``method``, the one implementation behind the service, jobs and ``logpx
    evaluate``: ``threshold``; ``sample``, the protocol (each input's own Bernoulli draws under ``seed``);
    ``resample``, fresh draws from ``generator`` (a request's); ``none`` leaves ``x`` as it is."""
    if method == "threshold":
        return binarize_threshold(x, threshold)
    if method == "sample":
        if seed is None:
            raise ValueError("binarize 'sample' is the protocol of a seed; none was given")
        return binarize_per_input(x, seed)
    if method == "resample":
        if generator is None:
            raise ValueError("binarize 'resample' draws from a generator; none was given")
        return binarize_sample(x, generator)
    if method == "none":
        return x
    raise ValueError(f"unknown binarisation {method!r}: threshold, sample, resample or none")


def binarize_sample(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pixels in [0, 1] to {0, 1}: Bernoulli(x) draws (dynamic binarisation; fixed for a fixed seed)."""
    u = torch.rand(x.shape, generator=generator, device=generator.device).to(x.device)
    return (u < x).to(x.dtype)
