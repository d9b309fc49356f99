"""The IDX file format (the container MNIST ships in), read and written strictly.

Layout of an IDX file (all multi-byte numbers big-endian)::

    offset  size      meaning
    0       2         zero bytes 0x00 0x00
    2       1         dtype code (see ``DTYPE_CODES``)
    3       1         ndim, the number of dimensions (1..255)
    4       4*ndim    the sizes, one unsigned 32-bit integer per dimension
    4+4*nd  ...       the payload: prod(sizes) items of the dtype, C order, big-endian

A file is read as gzip-compressed when it starts with the gzip magic bytes 0x1f 0x8b; the
``.gz`` suffix only decides how a file is *written*. Sniffing the content on read matters
because browsers often decompress ``*.gz`` downloads on the fly but keep the name: a plain
IDX file called ``train-images-idx3-ubyte.gz`` is read without complaint, and a gzip file
without the suffix is read too.

Reading is strict: anything that is not exactly one well-formed IDX array raises
``IDXError`` (a ``ValueError``) whose message names the file, what was expected and what
was found. Writing is atomic (``tinyconv.files.atomic_write``): a reader never sees half a file.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ..files import atomic_write

__all__ = ["IDXError", "DTYPE_CODES", "MAX_BYTES", "read_idx", "read_idx_checked", "write_idx",
           "atomic_write"]

#: IDX dtype code -> NumPy dtype of the payload as stored on disk (big-endian).
DTYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The reverse map keyed by (kind, itemsize), so any byte order of a supported type can be written.
_CODE_FOR = {(dt.kind, dt.itemsize): code for code, dt in DTYPE_CODES.items()}

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 255          # the ndim field is one byte
_MAX_DIM = 2**32 - 1     # each size is an unsigned 32-bit integer
#: The largest payload a reader accepts unless given ``max_bytes=``: far above any data set stored this way
#: (MNIST's training images are 47 MB), far below what makes a laptop swap. A header that declares more is
#: refused before anything is allocated.
MAX_BYTES = 2**31
#: Deflate expands at most about 1032:1, so a gzip file of n bytes holds at most this many times n decompressed:
#: a header that declares more than its file can hold is refused before the payload buffer is allocated.
_DEFLATE_MAX_RATIO = 1032
_CHUNK = 1 << 20


class IDXError(ValueError):
    """A file is not a well-formed IDX array (or an array cannot be stored as one)."""


def _describe_codes() -> str:
    return ", ".join(f"0x{c:02X} ({dt.name})" for c, dt in DTYPE_CODES.items())


class _Header(NamedTuple):
    stored: np.dtype       # the payload's dtype as stored (big-endian)
    shape: tuple[int, ...]
    length: int            # header bytes
    payload: int           # payload bytes the shape implies


def _failer(path: Path, was_gzip: bool):
    # When the name promises gzip but the content is plain, say so in every error: "not gzip" is useful
    # context when the plain content then fails to parse too.
    hint = " (the name ends in .gz but the content is not gzip-compressed)" if (
        path.suffix == ".gz" and not was_gzip) else ""

    def fail(msg: str) -> IDXError:
        return IDXError(f"{path}: {msg}{hint}")
    return fail


def _parse_header(head: bytes, fail, *, ndim: int | None, dtype: npt.DTypeLike | None,
                  max_bytes: int) -> _Header:
    """The header at the start of ``head`` (which holds at least the first 4 bytes, and the sizes when present)."""
    if len(head) == 0:
        raise fail("file is empty; expected an IDX header of at least 4 bytes")
    if len(head) < 4:
        raise fail(f"file is {len(head)} bytes long; expected an IDX header of at least 4 bytes")
    if head[0:2] != b"\x00\x00":
        raise fail(f"bad magic: expected the first two bytes 00 00, found {head[0:2].hex(' ')}")
    code, nd = head[2], head[3]
    if code not in DTYPE_CODES:
        raise fail(f"unknown dtype code 0x{code:02X}; expected one of {_describe_codes()}")
    stored = DTYPE_CODES[code]
    if dtype is not None and np.dtype(dtype).newbyteorder("=") != stored.newbyteorder("="):
        raise fail(f"dtype mismatch: expected {np.dtype(dtype).name}, found code 0x{code:02X} ({stored.name})")
    if nd == 0:
        raise fail("dimension count is 0; expected at least 1 dimension")
    if ndim is not None and nd != ndim:
        raise fail(f"dimension count mismatch: expected {ndim}, found {nd}")
    length = 4 + 4 * nd
    if len(head) < length:
        raise fail(f"header truncated: {nd} dimensions need {length} header bytes, file has {len(head)}")
    shape = tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(nd))
    payload = math.prod(shape) * stored.itemsize  # Python integers: no overflow, however absurd the sizes
    if payload > max_bytes:
        raise fail(f"the header declares shape {shape} of {stored.name}, {payload} bytes; expected at most "
                   f"{max_bytes} (pass max_bytes= to read a larger file)")
    return _Header(stored, shape, length, payload)


def _read_exactly(stream, buf: memoryview) -> int:
    """Fill ``buf`` from ``stream``; return how many bytes were read (fewer at the end of the stream)."""
    pos = 0
    while pos < len(buf):
        n = stream.readinto(buf[pos:pos + _CHUNK])
        if not n:
            break
        pos += n
    return pos


def _read(path: Path, *, ndim: int | None, dtype: npt.DTypeLike | None, max_bytes: int,
          digest=None, shape: tuple[int, ...] | None = None, what: str = "an array") -> np.ndarray:
    """Read ``path`` with memory bounded by its header's shape: the header first, the payload straight into a
    buffer of the size the shape implies (and no larger than the file can hold), then one byte more to prove
    nothing trails it. ``digest`` (a hashlib object), if given, is fed every decompressed byte."""
    with open(path, "rb") as raw:
        was_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        size_on_disk = os.fstat(raw.fileno()).st_size
        fail = _failer(path, was_gzip)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if was_gzip else raw
        try:
            head = stream.read(4)
            if len(head) == 4 and head[0:2] == b"\x00\x00":
                head += stream.read(4 * head[3])
            header = _parse_header(head, fail, ndim=ndim, dtype=dtype, max_bytes=max_bytes)
            if shape is not None and header.shape != tuple(shape):  # refused before the payload is allocated
                raise IDXError(f"{path}: expected {what} of shape {tuple(shape)}, found {header.shape}")
            capacity = (_DEFLATE_MAX_RATIO * size_on_disk if was_gzip else size_on_disk) - header.length
            if header.payload > max(capacity, 0):
                held = f"the file can hold at most {max(capacity, 0)}" if was_gzip else f"found {capacity}"
                raise fail(f"payload truncated: shape {header.shape} of {header.stored.name} needs "
                           f"{header.payload} bytes, {held}")
            data = np.empty(header.payload // header.stored.itemsize, dtype=header.stored)
            found = _read_exactly(stream, memoryview(data).cast("B"))
            if found < header.payload:
                raise fail(f"payload truncated: shape {header.shape} of {header.stored.name} needs "
                           f"{header.payload} bytes, found {found}")
            extra = len(stream.read(_CHUNK))  # one chunk at most: a long tail is not decompressed to count it
            if extra:
                count, found = (f"{extra}", f"{header.payload + extra}") if extra < _CHUNK else (
                    f"at least {extra}", f"at least {header.payload + extra}")
                raise fail(f"{count} trailing bytes after the payload: shape {header.shape} of "
                           f"{header.stored.name} needs {header.payload} bytes, found {found}")
        except (EOFError, OSError, zlib.error) as exc:
            if not was_gzip:
                raise
            # EOFError: stream cut short; BadGzipFile (an OSError) / zlib.error: damaged data.
            raise IDXError(f"{path}: starts with the gzip magic bytes but is not a valid gzip stream "
                           f"({type(exc).__name__}: {exc}); the file is probably truncated or damaged") from exc
    if digest is not None:
        digest.update(head[:header.length])
        digest.update(memoryview(data).cast("B"))
    if header.stored.itemsize > 1 and header.stored.byteorder != "=" and header.stored.byteorder != "|":
        data = data.astype(header.stored.newbyteorder("="))  # native byte order (a copy the shape justifies)
    return data.reshape(header.shape)


def read_idx(path: str | os.PathLike, *, ndim: int | None = None, dtype: npt.DTypeLike | None = None,
             max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a NumPy array.

    Memory is bounded by the header: nothing larger than the array its shape describes is allocated, and a header
    that declares more than ``max_bytes``, or more than the file can hold, is refused before the payload is read.

    Args:
        path: the file. Gzip compression is detected from the content, not the name.
        ndim: if given, the number of dimensions the file must declare (e.g. 3 for
            MNIST images, 1 for labels); a different count raises ``IDXError``.
        dtype: if given, the element type the file must declare (e.g. ``np.uint8``).
        max_bytes: the largest payload accepted (default ``MAX_BYTES``, 2 GiB).

    Returns:
        A writable, C-contiguous array in native byte order whose shape is the sizes
        from the header, e.g. ``(60000, 28, 28)`` uint8 for MNIST training images.

    Raises:
        IDXError: empty or short file, wrong magic bytes, unknown dtype code, ndim of 0
            or not the one asked for, a payload over ``max_bytes``, truncated header or payload, trailing
            bytes, a damaged gzip stream.
        OSError: the file cannot be opened.
    """
    return _read(Path(path), ndim=ndim, dtype=dtype, max_bytes=max_bytes)


def read_idx_checked(path: str | os.PathLike, digest, *, dtype: npt.DTypeLike | None = None,
                     shape: tuple[int, ...] | None = None, what: str = "an array",
                     max_bytes: int = MAX_BYTES) -> np.ndarray:
    """``read_idx`` that also feeds ``digest`` (a ``hashlib`` object) the file's IDX bytes, decompressed: the
    content ``tinyconv.data.mnist`` checksums, the same for a mirror's ``.gz`` and a file written here. With
    ``shape``, a header declaring another shape is refused ("expected {what} of shape ...") before the payload is
    read, so a data set's reader allocates no more than the data set's own size."""
    return _read(Path(path), ndim=None if shape is None else len(shape), dtype=dtype, max_bytes=max_bytes,
                 digest=digest, shape=shape, what=what)


def _idx_header(array: np.ndarray, path: Path) -> tuple[bytes, np.dtype]:
    """Header bytes for ``array`` and the big-endian dtype its payload is stored in."""
    dt = array.dtype
    code = _CODE_FOR.get((dt.kind, dt.itemsize))
    if code is None:
        raise IDXError(f"{path}: cannot store dtype {dt.name} in IDX; expected one of "
                       f"{_describe_codes()} (cast the array first)")
    if not 1 <= array.ndim <= _MAX_NDIM:
        raise IDXError(f"{path}: IDX stores 1 to {_MAX_NDIM} dimensions, "
                       f"given an array with {array.ndim}")
    if any(s > _MAX_DIM for s in array.shape):
        raise IDXError(f"{path}: IDX sizes are 32-bit; given shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header, DTYPE_CODES[code]


def write_idx(path: str | os.PathLike, array: npt.ArrayLike, *, compresslevel: int = 6) -> Path:
    """Write ``array`` to ``path`` as IDX, gzip-compressed when the name ends in ``.gz``.

    Args:
        path: destination; parent folders are created. Replaced atomically.
        array: 1 to 255 dimensions, dtype uint8, int8, int16, int32, float32 or float64
            (any byte order). Other dtypes are refused rather than silently cast.
        compresslevel: gzip level for ``.gz`` files (6 is the zlib default: near-best size,
            several times faster than 9 on MNIST-sized files).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    array = np.asarray(array)
    header, stored = _idx_header(array, path)
    payload = np.ascontiguousarray(array, dtype=stored).tobytes()
    with atomic_write(path) as f:
        if path.suffix == ".gz":
            # mtime=0 and the final file name (not the temp name; gzip strips ".gz") in the
            # gzip header make the output byte-for-byte reproducible.
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=f,
                               compresslevel=compresslevel, mtime=0) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            f.write(header)
            f.write(payload)
    return path
