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
import os
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..files import atomic_write

__all__ = ["IDXError", "DTYPE_CODES", "read_idx", "read_idx_bytes", "parse_idx", "write_idx", "atomic_write"]

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


class IDXError(ValueError):
    """A file is not a well-formed IDX array (or an array cannot be stored as one)."""


def _describe_codes() -> str:
    return ", ".join(f"0x{c:02X} ({dt.name})" for c, dt in DTYPE_CODES.items())


def _gunzip(raw: bytes) -> bytes | bytearray:
    """The decompressed content of ``raw`` (gzip). Decompressed straight into a buffer of the size the gzip
    trailer gives (ISIZE), so that the caller can view it as an array without a second copy: loading MNIST's
    training images peaks at 75 MiB of traced allocations instead of 99 MiB. Falls back to ``gzip.decompress``
    when the trailer's size is not the whole content (several members, 4 GiB and more)."""
    size = int.from_bytes(raw[-4:], "little") if len(raw) >= 18 else 0
    out = bytearray(size)
    stream = zlib.decompressobj(wbits=31)  # gzip wrapper: header, CRC-32 and size checked by zlib
    pending, pos = raw, 0
    while pending and not stream.eof:
        chunk = stream.decompress(pending, 1 << 20)  # at most 1 MiB of output at a time
        if pos + len(chunk) > size:
            break
        out[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
        pending = stream.unconsumed_tail
    if stream.eof and pos == size and not stream.unused_data:
        return out
    return gzip.decompress(raw)  # several members, a wrong trailer size, or a damaged stream (it raises)


def _read_bytes(path: Path) -> tuple[bytes | bytearray, bool]:
    """Return the (decompressed) bytes of ``path`` and whether it was gzip (by magic bytes)."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw, False
    try:
        return _gunzip(raw), True
    except (EOFError, OSError, zlib.error) as exc:
        # EOFError: stream cut short; BadGzipFile (an OSError) / zlib.error: damaged data.
        raise IDXError(
            f"{path}: starts with the gzip magic bytes but is not a valid gzip stream "
            f"({type(exc).__name__}: {exc}); the file is probably truncated or damaged"
        ) from exc


def read_idx(path: str | os.PathLike, *, ndim: int | None = None,
             dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a NumPy array.

    Args:
        path: the file. Gzip compression is detected from the content, not the name.
        ndim: if given, the number of dimensions the file must declare (e.g. 3 for
            MNIST images, 1 for labels); a different count raises ``IDXError``.
        dtype: if given, the element type the file must declare (e.g. ``np.uint8``).

    Returns:
        A writable, C-contiguous array in native byte order whose shape is the sizes
        from the header, e.g. ``(60000, 28, 28)`` uint8 for MNIST training images.

    Raises:
        IDXError: empty or short file, wrong magic bytes, unknown dtype code, ndim of 0
            or not the one asked for, truncated header or payload, trailing bytes.
        OSError: the file cannot be opened.
    """
    path = Path(path)
    buf, was_gzip = _read_bytes(path)
    return parse_idx(buf, path, ndim=ndim, dtype=dtype, was_gzip=was_gzip)


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The IDX bytes of ``path``, decompressed when the file is gzip (by its content): the payload that
    ``tinyconv.data.mnist`` checksums, the same for a mirror's ``.gz`` and a file written here."""
    return _read_bytes(Path(path))[0]


def parse_idx(buf: bytes, path: str | os.PathLike, *, ndim: int | None = None,
              dtype: npt.DTypeLike | None = None, was_gzip: bool = True) -> np.ndarray:
    """``read_idx`` on bytes already read (and decompressed); ``path`` only names the file in errors."""
    path = Path(path)
    # When the name promises gzip but the content is plain, say so in every error below:
    # "not gzip" is useful context when the plain content then fails to parse too.
    hint = ""
    if path.suffix == ".gz" and not was_gzip:
        hint = " (the name ends in .gz but the content is not gzip-compressed)"

    def fail(msg: str) -> IDXError:
        return IDXError(f"{path}: {msg}{hint}")

    if len(buf) == 0:
        raise fail("file is empty; expected an IDX header of at least 4 bytes")
    if len(buf) < 4:
        raise fail(f"file is {len(buf)} bytes long; expected an IDX header of at least 4 bytes")
    if buf[0:2] != b"\x00\x00":
        raise fail(f"bad magic: expected the first two bytes 00 00, found {buf[0:2].hex(' ')}")

    code, nd = buf[2], buf[3]
    if code not in DTYPE_CODES:
        raise fail(f"unknown dtype code 0x{code:02X}; expected one of {_describe_codes()}")
    stored = DTYPE_CODES[code]
    if dtype is not None and np.dtype(dtype).newbyteorder("=") != stored.newbyteorder("="):
        raise fail(f"dtype mismatch: expected {np.dtype(dtype).name}, "
                   f"found code 0x{code:02X} ({stored.name})")
    if nd == 0:
        raise fail("dimension count is 0; expected at least 1 dimension")
    if ndim is not None and nd != ndim:
        raise fail(f"dimension count mismatch: expected {ndim}, found {nd}")

    header_len = 4 + 4 * nd
    if len(buf) < header_len:
        raise fail(f"header truncated: {nd} dimensions need {header_len} header bytes, "
                   f"file has {len(buf)}")
    shape = tuple(int(s) for s in np.frombuffer(buf, dtype=">u4", count=nd, offset=4))

    expected = int(np.prod(shape, dtype=np.int64)) * stored.itemsize
    found = len(buf) - header_len
    if found < expected:
        raise fail(f"payload truncated: shape {shape} of {stored.name} needs {expected} bytes, "
                   f"found {found}")
    if found > expected:
        raise fail(f"{found - expected} trailing bytes after the payload: shape {shape} of "
                   f"{stored.name} needs {expected} bytes, found {found}")

    data = np.frombuffer(buf, dtype=stored, count=expected // stored.itemsize, offset=header_len)
    if isinstance(buf, bytearray) and stored.itemsize == 1:
        return data.reshape(shape)  # a writable view of a buffer nobody else holds: no copy needed
    # astype copies: the result is writable and in native byte order.
    return data.astype(stored.newbyteorder("="), copy=True).reshape(shape)


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
