"""tinyconv.data.FashionMNIST without the network: small IDX files served from 127.0.0.1, MNIST's machinery."""
import dataclasses
import functools
import hashlib
import http.server
import importlib.util
import socket
import threading

import numpy as np
import pytest

from tinyconv.data import FashionMNIST, FashionMNISTUnavailable, MNISTUnavailable, fashion_mnist, write_idx
from tinyconv.data.mnist import FILES

SMALL = {"train": 30, "test": 12}


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                "TINYCONV_DATA", "TINYCONV_FASHION_MNIST_MIRRORS", "TINYCONV_MNIST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def served(tmp_path):
    """The four IDX.gz files of a small fake Fashion-MNIST, their md5s and arrays."""
    folder = tmp_path / "served"
    rng = np.random.default_rng(0)
    arrays = {s: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
              for s, n in SMALL.items()}
    for split, (x, y) in arrays.items():
        write_idx(folder / FILES[split][0], x)
        write_idx(folder / FILES[split][1], y)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return folder, md5, arrays


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(folder):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_is_checked_cached_and_read_back(tmp_path, served, serve, dead_url):
    folder, md5, arrays = served
    root = tmp_path / "root"
    ds = FashionMNIST(root, train=True, mirrors=[dead_url, serve(folder)], md5=md5, sizes=SMALL, progress=False,
                      timeout=5)
    np.testing.assert_array_equal(ds.data, arrays["train"][0])
    np.testing.assert_array_equal(ds.targets, arrays["train"][1])
    assert ds.targets.dtype == np.int64 and ds.classes[9] == "Ankle boot"
    image, label = ds[3]
    assert image.shape == (28, 28) and label == arrays["train"][1][3]
    assert sorted(p.name for p in (root / "fashion-mnist").iterdir()) == sorted(FILES["train"])
    assert not (root / "mnist").exists()  # its own folder: never mixed up with MNIST's cache
    again = FashionMNIST(root, train=True, download=False, sizes=SMALL)
    np.testing.assert_array_equal(again.data, ds.data)
    assert repr(again).startswith("FashionMNIST(split='train', n=30")


def test_a_file_with_the_wrong_md5_never_enters_the_cache(tmp_path, served, serve):
    folder, md5, _ = served
    wrong = dict(md5, **{FILES["test"][0]: "0" * 32})
    with pytest.raises(FashionMNISTUnavailable, match=f"md5 mismatch: expected {'0' * 32}"):
        FashionMNIST(tmp_path, train=False, mirrors=[serve(folder)], md5=wrong, sizes=SMALL, progress=False)
    assert FILES["test"][0] not in [p.name for p in (tmp_path / "fashion-mnist").iterdir()]


def test_without_network_the_message_says_where_to_put_the_four_files(tmp_path, dead_url):
    with pytest.raises(FashionMNISTUnavailable) as info:
        FashionMNIST(tmp_path, mirrors=[dead_url], sizes=SMALL, progress=False, timeout=5)
    msg = str(info.value)
    assert msg.startswith("Fashion-MNIST (train) is not available. Sources tried, in order:")
    assert f"mirror {dead_url}train-images-idx3-ubyte.gz: ConnectionRefusedError" in msg
    assert str(tmp_path / "fashion-mnist") in msg
    for names in FILES.values():
        for name in names:
            assert f"    {name}\n" in msg
    assert "https://github.com/zalandoresearch/fashion-mnist" in msg and "PyPI" not in msg
    assert isinstance(info.value, MNISTUnavailable)  # callers catching MNIST's error catch this one too
    with pytest.raises(FashionMNISTUnavailable, match="download=False: mirrors not tried"):
        FashionMNIST(tmp_path, download=False)


def test_a_corrupt_cached_file_is_replaced(tmp_path, served, serve):
    folder, md5, arrays = served
    cache = tmp_path / "fashion-mnist"
    cache.mkdir()
    (cache / FILES["test"][0]).write_bytes(b"not an IDX file")
    with pytest.warns(RuntimeWarning, match="Fashion-MNIST cache: corrupt file deleted"):
        ds = FashionMNIST(tmp_path, train=False, mirrors=[serve(folder)], md5=md5, sizes=SMALL, progress=False)
    np.testing.assert_array_equal(ds.data, arrays["test"][0])


def test_mirrors_from_the_environment(tmp_path, served, serve, monkeypatch):
    folder, md5, arrays = served
    monkeypatch.setenv("TINYCONV_FASHION_MNIST_MIRRORS", serve(folder))
    monkeypatch.setenv("TINYCONV_DATA", str(tmp_path))
    ds = FashionMNIST(train=False, md5=md5, sizes=SMALL, progress=False)
    np.testing.assert_array_equal(ds.targets, arrays["test"][1])
    monkeypatch.setenv("TINYCONV_FASHION_MNIST_MIRRORS", "")
    with pytest.raises(FashionMNISTUnavailable, match="mirrors: none configured"):
        FashionMNIST(train=True, sizes=SMALL, progress=False)


def test_the_published_checksums():
    # the md5s of the data set's README (zalandoresearch/fashion-mnist), which torchvision uses too
    assert fashion_mnist.MD5 == {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }


@pytest.mark.torch
def test_mirrors_checksums_and_classes_are_torchvisions():
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    from torchvision_cpu import import_real_torchvision

    tv = import_real_torchvision()
    assert dict(tv.datasets.FashionMNIST.resources) == fashion_mnist.MD5
    assert tv.datasets.FashionMNIST.mirrors[0] == fashion_mnist.MIRRORS[0]
    assert tv.datasets.FashionMNIST.classes == fashion_mnist.CLASSES


def test_load_split_names_the_data_sets(tmp_path, served, monkeypatch):
    from tinyconv.data import DATASETS, load_split

    folder, md5, arrays = served
    (tmp_path / "fashion-mnist").mkdir()
    for name in FILES["test"]:
        (tmp_path / "fashion-mnist" / name).write_bytes((folder / name).read_bytes())
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DATA",
                        dataclasses.replace(fashion_mnist.FASHION_MNIST_DATA, sizes=SMALL))
    x, y = load_split("fashion-mnist", tmp_path, train=False, custom=True, limit=5)
    np.testing.assert_array_equal(x, arrays["test"][0][:5])
    assert y.dtype == np.int64 and list(DATASETS) == ["mnist", "fashion-mnist"]
    with pytest.raises(ValueError, match="unknown data set 'cifar10'; valid: mnist, fashion-mnist"):
        load_split("cifar10", tmp_path)
