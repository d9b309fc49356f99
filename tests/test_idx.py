"""tinyconv.data.idx: round trips for every dtype code, exact bytes, and every way a file can be bad."""

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyconv.data import idx
from tinyconv.data.idx import DTYPE_CODES, IDXError, read_idx, write_idx

# Every dtype code, in both byte orders where that means anything.
DTYPES = [np.dtype(d) for d in ("u1", "i1", ">i2", "<i2", ">i4", "<i4", ">f4", "<f4", ">f8", "<f8")]


def _header(code: int, shape) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(int(s).to_bytes(4, "big") for s in shape)


# ---------------------------------------------------------------------------- round trips

@settings(max_examples=60, deadline=None)
@given(
    array=st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
        dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))),
    suffix=st.sampled_from([".idx", ".idx.gz"]),
)
def test_round_trip_every_dtype_and_shape(array, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"a{suffix}"
        write_idx(path, array)
        back = read_idx(path)
        assert back.shape == array.shape
        assert back.dtype == array.dtype.newbyteorder("=")
        assert back.dtype.isnative and back.flags.writeable and back.flags.c_contiguous
        # equal_nan: hypothesis puts NaN in float arrays; bit patterns survive too.
        np.testing.assert_array_equal(back, array)
        assert back.tobytes() == array.astype(back.dtype).tobytes()
        assert os.listdir(d) == [path.name]  # no temp file left behind


@pytest.mark.parametrize("code,dt", sorted(DTYPE_CODES.items()))
def test_exact_bytes_plain_and_gz(tmp_path, code, dt):
    a = np.arange(6).reshape(2, 3).astype(dt.newbyteorder("<"))  # little-endian in memory
    expected = _header(code, (2, 3)) + np.arange(6).astype(dt.newbyteorder(">")).tobytes()
    plain = write_idx(tmp_path / "x.idx", a)
    assert plain.read_bytes() == expected
    gz = write_idx(tmp_path / "x.idx.gz", a)
    raw = gz.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert gzip.decompress(raw) == expected
    # Reproducible: same array, same bytes (mtime 0, final name in the header, not the temp name).
    assert write_idx(tmp_path / "y.idx.gz", a).read_bytes()[:10] == raw[:10]


def test_mnist_like_header(tmp_path):
    p = write_idx(tmp_path / "imgs", np.zeros((3, 28, 28), np.uint8))
    assert p.read_bytes()[:16] == bytes.fromhex("00000803 00000003 0000001c 0000001c")


def test_gzip_detected_by_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.int32)
    # gzip content without the suffix
    gz_bytes = write_idx(tmp_path / "a.gz", a).read_bytes()
    (tmp_path / "noext").write_bytes(gz_bytes)
    np.testing.assert_array_equal(read_idx(tmp_path / "noext"), a)
    # plain content with a .gz name (what a browser that un-gzips downloads leaves behind)
    plain = write_idx(tmp_path / "p.idx", a).read_bytes()
    (tmp_path / "plain.gz").write_bytes(plain)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), a)


def test_read_checks_requested_ndim_and_dtype(tmp_path):
    p = write_idx(tmp_path / "a.idx", np.zeros((2, 3), np.uint8))
    read_idx(p, ndim=2, dtype=np.uint8)
    with pytest.raises(IDXError, match=r"a\.idx.*dimension count mismatch: expected 3, found 2"):
        read_idx(p, ndim=3)
    with pytest.raises(IDXError, match=r"a\.idx.*dtype mismatch: expected float32.*uint8"):
        read_idx(p, dtype=np.float32)


# ---------------------------------------------------------------------------- corrupt files

GOOD = _header(0x08, (2, 3)) + bytes(range(6))

CORRUPT = {
    "empty": (b"", r"file is empty"),
    "short": (b"\x00\x00\x08", r"3 bytes long; expected an IDX header of at least 4"),
    "magic": (b"\x01\x00" + GOOD[2:], r"bad magic: expected .*00 00, found 01 00"),
    "gzip-looking": (b"\x1f\x8b\x08\x00garbage", r"not a valid gzip stream"),
    "dtype": (b"\x00\x00\x0a\x02" + GOOD[4:], r"unknown dtype code 0x0A; expected one of 0x08"),
    "ndim0": (b"\x00\x00\x08\x00", r"dimension count is 0"),
    "header-truncated": (GOOD[:9], r"header truncated: 2 dimensions need 12 header bytes, file has 9"),
    "ndim-too-big": (b"\x00\x00\x08\x03" + GOOD[4:], r"payload truncated|header truncated"),
    "payload-truncated": (GOOD[:-1], r"payload truncated: shape \(2, 3\) of uint8 needs 6 bytes, found 5"),
    "trailing": (GOOD + b"\x00\x00", r"2 trailing bytes after the payload.*needs 6 bytes, found 8"),
    "wide-payload-truncated": (_header(0x0E, (4,)) + b"\x00" * 31,
                               r"payload truncated: shape \(4,\) of float64 needs 32 bytes, found 31"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_file_raises_with_name(tmp_path, case, compress):
    content, pattern = CORRUPT[case]
    if compress and case != "gzip-looking":
        content = gzip.compress(content)
    path = tmp_path / f"bad-{case}.idx"
    path.write_bytes(content)
    with pytest.raises(IDXError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_gzip_stream(tmp_path):
    raw = write_idx(tmp_path / "a.idx.gz", np.arange(1000, dtype=np.float64)).read_bytes()
    cut = tmp_path / "cut.idx.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IDXError, match=r"cut\.idx\.gz.*not a valid gzip stream.*truncated"):
        read_idx(cut)


def test_gzip_members_and_trailers_the_fast_path_cannot_take(tmp_path):
    """A gzip file of several members (its trailer gives the last member's size only) and one whose trailer
    size was altered are decompressed whole or refused, never cut short; the one-buffer path gives a
    writable uint8 array."""
    a = np.arange(300, dtype=np.uint8).reshape(3, 100) % 7
    payload = (tmp_path / "a.idx")
    write_idx(payload, a)
    body = payload.read_bytes()
    two = tmp_path / "two.idx.gz"
    two.write_bytes(gzip.compress(body[:50]) + gzip.compress(body[50:]))
    np.testing.assert_array_equal(read_idx(two), a)
    one = tmp_path / "one.idx.gz"
    one.write_bytes(gzip.compress(body))
    got = read_idx(one)
    np.testing.assert_array_equal(got, a)
    got[0, 0] = 9                       # writable
    bad = tmp_path / "bad.idx.gz"
    raw = bytearray(gzip.compress(body))
    raw[-4:] = (len(body) + 5).to_bytes(4, "little")  # a trailer size that does not match
    bad.write_bytes(bytes(raw))
    with pytest.raises(IDXError, match="not a valid gzip stream"):
        read_idx(bad)


def test_plain_file_named_gz_says_so_when_bad(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"\x05\x00\x08\x01")
    with pytest.raises(IDXError, match=r"bad magic.*name ends in \.gz but the content is not gzip"):
        read_idx(p)


# ---------------------------------------------------------------------------- writing

@pytest.mark.parametrize("array,pattern", [
    (np.zeros(3, np.int64), r"cannot store dtype int64"),
    (np.zeros(3, bool), r"cannot store dtype bool"),
    (np.zeros(3, np.uint16), r"cannot store dtype uint16"),
    (np.float32(1.0), r"1 to 255 dimensions, given an array with 0"),
])
def test_write_refuses_what_idx_cannot_hold(tmp_path, array, pattern):
    with pytest.raises(IDXError, match=pattern):
        write_idx(tmp_path / "a.idx", array)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "a.idx.gz", np.arange(5, dtype=np.uint8))
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(idx.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        write_idx(path, np.arange(50, dtype=np.uint8))
    assert path.read_bytes() == before                     # old file untouched
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # temp file removed


def test_write_creates_parent_and_overwrites(tmp_path):
    p = tmp_path / "deep" / "er" / "a.idx"
    write_idx(p, np.arange(3, dtype=np.int8))
    write_idx(p, np.arange(4, dtype=np.int8))
    np.testing.assert_array_equal(read_idx(p), np.arange(4, dtype=np.int8))
