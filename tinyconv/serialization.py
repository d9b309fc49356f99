"""``tc.save`` / ``tc.load``: state dicts and checkpoints as ``.npz`` files, without pickle.

What can be saved: a Tensor or NumPy array (numeric, bool or fixed-width string dtypes), a Python number,
bool, string or None, and dicts / lists / tuples nesting those. Typical objects::

    tc.save(model.state_dict(), "lenet.npz")             # {"conv1.weight": Tensor, ...}
    tc.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
             "rng": tc.get_rng_state(), "history": [{"loss": 0.1}, ...]}, "checkpoint.npz")

The file is an ordinary ``.npz`` (readable with ``np.load(path)``): every array is one member, named by its key
path joined with ``/`` (``model/conv1.weight``, ``optimizer/state/0/exp_avg``). One more member,
``__tinyconv__``, holds UTF-8 JSON (as uint8) describing the structure: dict key types (int keys stay ints),
lists vs tuples, Tensors vs arrays, and the plain values inline. ``tc.load`` rebuilds the object exactly.
A plain ``.npz`` without that member (e.g. from ``np.savez``) loads as a flat ``{name: Tensor}`` dict.

Files are written atomically (``tinyconv.files.atomic_write``: a temporary file in the same folder, renamed into
place), so a crash mid-write never leaves a truncated file under the final name. Everything is read with ``allow_pickle=False``.
"""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from .files import atomic_write
from .tensor import Tensor

__all__ = ["save", "load", "CheckpointError", "CheckpointNotFoundError", "SerializationError", "FORMAT", "VERSION"]

FORMAT = "tinyconv"
VERSION = 1
META_KEY = "__tinyconv__"


class CheckpointError(ValueError):
    """tinyconv's one error for a file it cannot use: ``tc.load`` of a missing, unreadable, corrupt or tampered
    file, a training checkpoint whose contents do not fit its schema, or an object ``tc.save`` cannot store.
    The message names the file and the problem (and, where it applies, the key)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """``tc.load`` of a path that does not exist (also a ``FileNotFoundError``)."""


#: The former name of :class:`CheckpointError`.
SerializationError = CheckpointError


#: Deflate expands at most about 1032:1: a zip member that claims more than that over its compressed size lies.
_DEFLATE_MAX_RATIO = 1032


def _check_members(path: Path) -> None:
    """Refuse, before anything is allocated, a member whose ``.npy`` header declares more data than the member
    holds (or whose zip entry claims more than its compressed bytes can expand to): np.load would allocate the
    declared array first and only then find the data missing."""
    size_on_disk = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            # the member's bytes follow its 30-byte local header and name: they must lie inside the file
            if info.header_offset + 30 + len(info.filename.encode()) + info.compress_size > size_on_disk:
                raise CheckpointError(f"'{path}': member {name!r} claims {info.compress_size} stored bytes, more "
                                      f"than the file's {size_on_disk} bytes hold (truncated or forged)")
            limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else (
                _DEFLATE_MAX_RATIO * info.compress_size + 1024)
            if info.file_size > limit:
                raise CheckpointError(f"'{path}': member {name!r} claims {info.file_size} bytes, more than its "
                                      f"{info.compress_size} stored bytes can hold (corrupt or forged)")
            with zf.open(info) as f:
                try:
                    version = np.lib.format.read_magic(f)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise ValueError(f"format version {version}, expected 1.0 or 2.0")
                    shape, _, dtype = read_header(f)
                except ValueError as e:
                    raise CheckpointError(f"'{path}': member {name!r} has no valid .npy header: {e}") from None
                declared = math.prod(shape) * dtype.itemsize
                room = info.file_size - f.tell()
            if declared > room:
                raise CheckpointError(f"'{path}': member {name!r} declares shape {shape} of {dtype} "
                                      f"({declared} bytes) but holds {room} bytes (truncated or forged)")


# ----------------------------------------------------------------------------------------------------- save
def _array_name(path: tuple, taken: dict) -> str:
    """A readable member name for the array at ``path``, unique among ``taken`` (keys with '/' could clash)."""
    name = "/".join(str(p) for p in path) or "value"
    base, n = name, 1
    while name in taken or name == META_KEY:
        name, n = f"{base}#{n}", n + 1
    return name


def _where(path: tuple) -> str:
    return "/".join(str(p) for p in path) or "<root>"


def _encode(obj, path: tuple, arrays: dict):
    """The JSON description of ``obj``; arrays go into ``arrays`` under a unique name."""
    if isinstance(obj, Tensor):
        arr = obj._data
        kind = "tensor"
    elif isinstance(obj, np.ndarray):
        arr, kind = obj, "ndarray"
    elif isinstance(obj, np.generic):
        arr, kind = np.asarray(obj), "npscalar"
    else:
        arr = None
    if arr is not None:
        if arr.dtype.kind not in "biufcUS":
            raise SerializationError(f"cannot save {_where(path)}: arrays of dtype {arr.dtype} need pickle, which "
                                     "tinyconv never uses (numeric, bool and string arrays are fine)")
        name = _array_name(path, arrays)
        arrays[name] = arr  # np.save copes with any layout (ascontiguousarray would make 0-d arrays 1-d)
        return {"t": kind, "a": name}
    if obj is None or isinstance(obj, (bool, str)):
        return {"t": "v", "v": obj}
    if isinstance(obj, int):
        return {"t": "v", "v": obj}
    if isinstance(obj, float):
        if math.isfinite(obj):
            return {"t": "v", "v": obj}
        return {"t": "float", "v": repr(obj)}  # JSON has no inf/nan; repr round-trips through float()
    if isinstance(obj, dict):
        keys, values = [], []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise SerializationError(f"cannot save {_where(path)}: dict keys must be str or int, got "
                                         f"{type(k).__name__} {k!r}")
            keys.append(k)
            values.append(_encode(v, path + (k,), arrays))
        # JSON keeps ints and strs apart in a list, so int keys come back as ints.
        return {"t": "dict", "k": keys, "v": values}
    if isinstance(obj, (list, tuple)):
        return {"t": "list" if isinstance(obj, list) else "tuple",
                "v": [_encode(v, path + (i,), arrays) for i, v in enumerate(obj)]}
    raise SerializationError(f"cannot save {_where(path)}: objects of type {type(obj).__name__} are not supported "
                             "(use Tensors/arrays, numbers, strings, None, and dicts/lists/tuples of them)")


def save(obj, path) -> None:
    """Write ``obj`` (a state dict, or a nested dict/list of Tensors, arrays and plain values) to ``path``.

    The content is always the pickle-free ``.npz`` format; the name is the caller's (``'mlp.params'`` works as
    in PyTorch, and nothing is appended to it). The write is atomic: a temporary file in the same folder is
    renamed into place once complete. Returns None, as PyTorch's does.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, (), arrays)
    meta = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree}, allow_nan=False)
    members = dict(arrays)
    members[META_KEY] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **members)


# ----------------------------------------------------------------------------------------------------- load
def _decode(node, arrays, path: str, file: Path):
    where = path or "<root>"

    def bad(what: str):
        return CheckpointError(f"{file}: damaged structure description at {where}: {what}")

    if not isinstance(node, dict) or not isinstance(node.get("t"), str):
        raise bad(f"expected a node object, found {node!r:.60}")
    t = node["t"]
    if t in ("tensor", "ndarray", "npscalar"):
        name = node.get("a")
        if not isinstance(name, str) or name not in arrays:
            raise CheckpointError(f"{file}: array member {name!r} (for {where}) is missing")
        arr = arrays[name]
        if t == "tensor":
            try:
                return Tensor(arr)
            except (TypeError, ValueError) as e:  # a dtype tensors do not support (int8, strings, ...)
                raise bad(f"member {name!r}: {e}") from None
        return arr if t == "ndarray" else arr[()]
    if t == "v":
        v = node.get("v")
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise bad(f"a plain value expected, found {type(v).__name__}")
        return v
    if t == "float":
        try:
            return float(node.get("v"))
        except (TypeError, ValueError):
            raise bad(f"not a float: {node.get('v')!r:.60}") from None
    if t == "dict":
        keys, values = node.get("k"), node.get("v")
        if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values) or \
                not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in keys) or \
                len(set(keys)) != len(keys):
            raise bad("dict keys and values do not match")
        return {k: _decode(v, arrays, f"{path}/{k}" if path else str(k), file) for k, v in zip(keys, values)}
    if t in ("list", "tuple"):
        if not isinstance(node.get("v"), list):
            raise bad(f"a {t} without items")
        items = [_decode(v, arrays, f"{path}/{i}" if path else str(i), file) for i, v in enumerate(node["v"])]
        return items if t == "list" else tuple(items)
    raise CheckpointError(f"{file}: unknown node type {t!r} at {where}")


def load(path):
    """Read a file written by :func:`save` and return the object, rebuilt exactly (Tensors as Tensors).

    Raises :class:`CheckpointError` (naming the file and the problem) for a file that is missing
    (:class:`CheckpointNotFoundError`, also a ``FileNotFoundError``), unreadable, not an ``.npz``, corrupt, or whose
    structure description is damaged. Nothing else: any other failure of a damaged file is reported the same way.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"no such file: '{path}'")
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder, not a checkpoint file")
    try:
        is_zip = zipfile.is_zipfile(path)
        with open(path, "rb"):
            pass
    except OSError as e:
        raise CheckpointError(f"cannot read '{path}': {e.strerror or e}") from e
    if not is_zip:
        raise CheckpointError(f"'{path}' is not an .npz file (not a zip archive; corrupt, truncated, or "
                              "another format?)")
    try:
        _check_members(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"'{path}' is not a readable .npz file (corrupt or truncated?): "
                              f"{type(e).__name__}: {e}") from e
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as e:  # e.g. an object array, which would need pickle
        raise CheckpointError(f"'{path}' cannot be read without pickle, which tinyconv refuses: {e}") from e
    except Exception as e:  # BadZipFile, CRC errors, truncated members, bad .npy headers, MemoryError ...
        raise CheckpointError(f"'{path}' is not a readable .npz file (corrupt or truncated?): "
                              f"{type(e).__name__}: {e}") from e
    if META_KEY not in arrays:
        # A plain .npz of named arrays (np.savez(..., **state_dict)): a flat state dict.
        try:
            return {name: Tensor(arr) for name, arr in arrays.items()}
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"'{path}': not a state dict of tensors: {e}") from None
    raw = arrays.pop(META_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"expected uint8 bytes, found {raw.dtype} {tuple(raw.shape)}")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format') if isinstance(meta, dict) else meta!r:.60}")
        version = meta.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or "tree" not in meta:
            raise ValueError("no version or no tree")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"'{path}': its {META_KEY} member is damaged ({e})") from e
    if version > VERSION:
        raise CheckpointError(f"'{path}' was written by a newer tinyconv (format version {version}, "
                              f"this one reads up to {VERSION})")
    try:
        return _decode(meta["tree"], arrays, "", path)
    except RecursionError:
        raise CheckpointError(f"'{path}': its {META_KEY} member is nested too deeply") from None
