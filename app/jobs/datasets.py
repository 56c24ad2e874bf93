"""Data sets for jobs: decoded from an upload, checked against the model's input shape, and stored in a
canonical form whose SHA-256 names it, so that the same images uploaded twice (or once gzipped, once not)
are stored once.

Formats, told apart by their first bytes, never by a file name: IDX (MNIST's, gzipped or not), ``.npy``,
``.npz`` (arrays ``inputs``, ``x`` or ``images``, and optionally ``labels`` or ``y``), a zip of PNG files
(taken in name order), or JSON inputs. Every size is checked before anything is expanded: a gzip or zip
bomb is refused at the limit, not after it.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from logpx.io import parse_idx

from ..errors import InvalidInput, PayloadTooLarge
from ..inputs import check_values, images_from_files

__all__ = ["Dataset", "decode_dataset", "decode_labels", "from_stored", "to_stored"]

Bytes = bytes | bytearray  # an upload as read, or inflated in place
NPY_MAGIC = b"\x93NUMPY"
IDX_ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}  # IDX type codes: bytes per value
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Dataset:
    """``x`` ``[N, D]`` float32 in [0, 1]; ``labels`` ``[N]`` int64 or None; ``source``: the format read."""

    x: np.ndarray
    labels: np.ndarray | None
    source: str


HEAD_BYTES = 4096  # enough of a decompressed stream to read an IDX or .npy header


def declared_size(head: bytes) -> int | None:
    """The whole size an IDX or ``.npy`` file declares in its first bytes (header and values), else None."""
    if len(head) >= 4 and head[:2] == b"\0\0" and head[2] in IDX_ITEMSIZE and len(head) >= 4 + 4 * head[3]:
        shape = struct.unpack(f">{head[3]}I", head[4 : 4 + 4 * head[3]])
        return 4 + 4 * head[3] + math.prod(shape) * IDX_ITEMSIZE[head[2]]
    if head[:6] == NPY_MAGIC:
        stream = io.BytesIO(head)
        try:
            version = np.lib.format.read_magic(stream)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(stream)
        except Exception:  # a header cut short or malformed: no size to trust
            return None
        return stream.tell() + math.prod(shape) * dtype.itemsize
    return None


def _gunzip(data: Bytes, max_bytes: int, field: str) -> bytearray:
    """Inflate a gzip upload no further than what its content declares: the IDX or ``.npy`` header in its
    first bytes gives the whole size, which must be within ``max_bytes``; one byte more is refused. Memory is
    then the declared size, never what a bomb would expand to."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, HEAD_BYTES)
        declared = declared_size(out)
        if declared is None:
            raise InvalidInput(
                f"{field}: a gzip upload must hold an IDX file or a .npy array", field=field, limit=["idx.gz", "npy.gz"]
            )
        if declared > max_bytes:
            raise PayloadTooLarge(f"{field}: declares {declared} bytes, over {max_bytes}", field=field, limit=max_bytes)
        whole = bytearray(declared)  # filled in place: no list of pieces joined into a second copy
        size = min(len(out), declared)
        whole[:size] = out[:size]
        size = len(out)
        while size <= declared and not inflater.eof:
            chunk = inflater.decompress(inflater.unconsumed_tail, min(declared + 1 - size, 1 << 20))
            if not chunk and not inflater.unconsumed_tail:
                break
            if size + len(chunk) <= declared:
                whole[size : size + len(chunk)] = chunk
            size += len(chunk)
    except zlib.error as exc:
        raise InvalidInput(
            f"{field}: gzip data is corrupt ({exc})", field=field, limit="a complete gzip file"
        ) from None
    if size > declared:
        raise PayloadTooLarge(
            f"{field}: expands past the {declared} bytes its header declares", field=field, limit=declared
        )
    if not inflater.eof or size < declared:
        raise InvalidInput(f"{field}: gzip data ends early", field=field, limit="a complete gzip file")
    return whole


# What a broken member raises inside zipfile: a bad CRC or header (BadZipFile), an unknown compression method
# (NotImplementedError), an encrypted member (RuntimeError), a stream that ends or lies (EOFError, zlib.error).
_MEMBER_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error, ValueError, OSError)


class _Members:
    """A zip's members read within one budget of inflated bytes: a member's declared size is a claim, not a
    bound, so each read asks the decompressor for at most what is left of the budget (zipfile inflates no
    further than asked), and one byte more than declared or than the budget is refused."""

    def __init__(self, archive: zipfile.ZipFile, budget: int, field: str) -> None:
        self.archive, self.left, self.field = archive, budget, field

    def read(self, name: str) -> bytes:
        info = self.archive.getinfo(name)
        limit = min(info.file_size, self.left)
        try:
            with self.archive.open(info) as stream:
                out = stream.read(limit + 1)
        except _MEMBER_ERRORS as exc:
            raise InvalidInput(
                f"{self.field}: member {name!r} cannot be read ({type(exc).__name__}: {exc})",
                field=self.field,
                limit="a zip of .png or .npy members, stored or deflated, not encrypted",
            ) from None
        if len(out) > limit:
            raise PayloadTooLarge(
                f"{self.field}: member {name!r} inflates past "
                + (
                    f"its declared {info.file_size} bytes" if limit == info.file_size else f"the {self.left} bytes left"
                ),
                field=self.field,
                limit=limit,
            )
        self.left -= len(out)
        return out


def _zip_members(data: Bytes, max_bytes: int, max_members: int, field: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (*_MEMBER_ERRORS, IndexError) as exc:
        raise InvalidInput(f"{field}: not a readable zip file ({exc})", field=field, limit="zip") from None
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > max_members:
        raise PayloadTooLarge(f"{field}: {len(members)} files, over {max_members}", field=field, limit=max_members)
    if sum(m.file_size for m in members) > max_bytes:
        raise PayloadTooLarge(f"{field}: expands to over {max_bytes} bytes", field=field, limit=max_bytes)
    return archive


def _to_rows(array: np.ndarray, input_shape: tuple[int, ...], field: str, domain: str) -> np.ndarray:
    """An array of N inputs, each of ``input_shape`` (or flat, or [H, W] for a [1, H, W] model) -> ``[N, D]``
    float32 in [0, 1]: unsigned bytes are scaled by 1/255, floats must lie in [0, 1] (any finite value for a
    model whose ``domain`` is real)."""
    shape = tuple(array.shape[1:])
    accepted = {input_shape, (math.prod(input_shape),), tuple(d for d in input_shape if d != 1) or (1,)}
    if array.ndim < 2 or shape not in accepted:
        raise InvalidInput(
            f"{field}: holds inputs of shape {list(shape)}, the model takes {list(input_shape)}",
            field=field,
            limit=list(input_shape),
        )
    if array.dtype.kind not in "uif":
        raise InvalidInput(f"{field}: values of type {array.dtype} are not numbers in [0, 1] or bytes", field=field)
    rows = array.reshape(array.shape[0], -1)
    scale = "byte" if array.dtype.kind in "ui" else "real" if domain == "real" else "unit"
    out = np.empty(rows.shape, dtype=np.float32)
    # Block by block: a float64 copy of the whole data set would be 8 bytes a value beside the 4 kept.
    for start in range(0, rows.shape[0], CONVERT_ROWS):
        block = rows[start : start + CONVERT_ROWS].astype(np.float64)
        try:
            out[start : start + CONVERT_ROWS] = check_values(block, scale, field, domain).numpy()  # [0, 1], float32
        except InvalidInput as exc:  # name the input by its place in the whole data set
            raise _shifted(exc, field, start) from None
    return out


CONVERT_ROWS = 1024  # inputs converted at a time: a few MB of temporaries whatever the data set's size


def _shifted(exc: InvalidInput, field: str, start: int) -> InvalidInput:
    """``exc`` from a block of rows starting at ``start``, its ``field[i]`` renumbered for the whole data set."""
    if not start or exc.field is None or not exc.field.startswith(f"{field}["):
        return exc
    index = int(exc.field[len(field) + 1 : exc.field.index("]")])
    renamed = f"{field}[{index + start}]"
    return InvalidInput(exc.detail.replace(exc.field, renamed, 1), field=renamed, limit=exc.limit)


def _label_array(array: np.ndarray, count: int | None, field: str) -> np.ndarray:
    if array.ndim != 1 or array.dtype.kind not in "ui":
        raise InvalidInput(f"{field}: labels must be one integer per input", field=field, limit="[N] integers")
    if array.dtype.kind == "u" and array.size and int(array.max()) >= 2**63:  # would wrap to a negative int64
        raise InvalidInput(f"{field}: label {int(array.max())} is over 2^63 - 1", field=field, limit=2**63 - 1)
    if count is not None and array.shape[0] != count:
        raise InvalidInput(f"{field}: {array.shape[0]} labels for {count} inputs", field=field, limit=count)
    return array.astype(np.int64)


def _npy(data: Bytes, field: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, OSError... for a broken file
        raise InvalidInput(f"{field}: not a readable .npy array ({exc})", field=field, limit=".npy") from None


def decode_dataset(
    data: Bytes,
    input_shape: tuple[int, ...],
    *,
    max_inputs: int,
    max_bytes: int,
    field: str = "data",
    domain: str = "unit",
) -> Dataset:
    """The inputs (and, from an ``.npz``, labels) in an uploaded file, for a model of ``input_shape``."""
    if data[:2] == GZIP_MAGIC:
        data = _gunzip(data, max_bytes, field)
    labels = None
    if data[:6] == NPY_MAGIC:
        source, array = "npy", _npy(data, field)
    elif data[:4] == ZIP_MAGIC:
        archive = _zip_members(data, max_bytes, max_inputs + 1, field)
        members = _Members(archive, max_bytes, field)
        names = sorted(m.filename for m in archive.infolist() if not m.is_dir())
        if names and all(n.endswith(".npy") for n in names):
            source = "npz"
            arrays = {n[:-4]: _npy(members.read(n), f"{field}:{n}") for n in names}
            key = next((k for k in ("inputs", "x", "images") if k in arrays), None)
            if key is None:
                raise InvalidInput(
                    f"{field}: the .npz holds {sorted(arrays)}, none named inputs, x or images",
                    field=field,
                    limit=["inputs", "x", "images"],
                )
            array = arrays[key]
            label_key = next((k for k in ("labels", "y") if k in arrays), None)
            if label_key is not None:
                labels = _label_array(arrays[label_key], array.shape[0], f"{field}:{label_key}")
        else:
            source = "png-zip"
            pngs = [n for n in names if n.lower().endswith(".png")]
            if not pngs or len(pngs) != len(names):
                raise InvalidInput(
                    f"{field}: a zip must hold only .png files (or .npy arrays)", field=field, limit=".png"
                )
            if len(pngs) > max_inputs:
                raise PayloadTooLarge(f"{field}: {len(pngs)} inputs, over {max_inputs}", field=field, limit=max_inputs)
            x = images_from_files([("image/png", members.read(n)) for n in pngs], input_shape, field).numpy()
            return Dataset(x, None, source)
    else:
        source = "idx"
        try:
            array = parse_idx(data, field)
        except ValueError as exc:
            raise InvalidInput(
                f"{exc}; send IDX (gzipped or not), .npy, .npz or a zip of PNGs",
                field=field,
                limit=["idx", "idx.gz", "npy", "npz", "zip of png"],
            ) from None
    if array.ndim >= 1 and array.shape[0] > max_inputs:
        raise PayloadTooLarge(f"{field}: {array.shape[0]} inputs, over {max_inputs}", field=field, limit=max_inputs)
    if array.ndim >= 1 and array.shape[0] == 0:
        raise InvalidInput(f"{field}: holds no inputs", field=field, limit="at least 1 input")
    return Dataset(_to_rows(array, input_shape, field, domain), labels, source)


def decode_labels(data: Bytes, count: int, *, max_bytes: int, field: str = "labels") -> np.ndarray:
    """Labels uploaded beside the inputs: a 1-D IDX file (gzipped or not) or ``.npy`` of integers."""
    if data[:2] == GZIP_MAGIC:
        data = _gunzip(data, max_bytes, field)
    if data[:6] == NPY_MAGIC:
        return _label_array(_npy(data, field), count, field)
    try:
        return _label_array(parse_idx(data, field), count, field)
    except ValueError as exc:
        raise InvalidInput(f"{exc}; send labels as IDX or .npy", field=field, limit=["idx", "npy"]) from None


def to_stored(dataset: Dataset) -> tuple[str, bytes, bytes | None]:
    """The canonical stored form: ``.npy`` bytes, unsigned bytes where every value is k / 255 (4 times
    smaller), else float32; and the SHA-256 of inputs and labels together, which names the data set."""
    as_bytes = np.empty(dataset.x.shape, dtype=np.uint8)
    exact = True
    for start in range(0, dataset.x.shape[0], CONVERT_ROWS):  # block by block, as when the data were read
        block = dataset.x[start : start + CONVERT_ROWS]
        rounded = np.rint(block * 255)
        exact = exact and np.array_equal((rounded / 255).astype(np.float32), block)
        as_bytes[start : start + CONVERT_ROWS] = rounded
    data = io.BytesIO()
    np.save(data, as_bytes if exact else dataset.x.astype(np.float32, copy=False), allow_pickle=False)
    labels = None
    if dataset.labels is not None:
        buffer = io.BytesIO()
        np.save(buffer, dataset.labels.astype(np.int64), allow_pickle=False)
        labels = buffer.getvalue()
    stored = data.getvalue()
    digest = hashlib.sha256(stored)
    digest.update(labels or b"no labels")
    return digest.hexdigest(), stored, labels


def from_stored(data: bytes, labels: bytes | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``[N, D]`` float32 inputs in [0, 1] and the labels, from ``to_stored``'s bytes."""
    x = np.load(io.BytesIO(data), allow_pickle=False)
    x = (x.astype(np.float64) / 255).astype(np.float32) if x.dtype == np.uint8 else x  # as check_values scales
    return x, (np.load(io.BytesIO(labels), allow_pickle=False) if labels is not None else None)
