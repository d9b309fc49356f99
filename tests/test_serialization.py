"""tc.save / tc.load: exact round trips without pickle, atomic writes, and clear errors."""
import json
import os
import zipfile

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn
from tinyconv.serialization import META_KEY, SerializationError


def small_model():
    tc.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_state_dict_round_trip(tmp_path):
    model = small_model()
    path = tmp_path / "m.npz"
    assert tc.save(model.state_dict(), path) is None  # PyTorch's save returns nothing either
    loaded = tc.load(path)
    assert list(loaded) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(isinstance(v, tc.Tensor) for v in loaded.values())
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    other.load_state_dict(loaded)
    for (_k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.dtype == b.dtype == np.float32
    # Plain NumPy can read it too, member names are the keys.
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"0.weight", "0.bias", "2.weight", "2.bias", META_KEY}


def test_nested_checkpoint_structure_is_rebuilt_exactly(tmp_path):
    obj = {
        "model": {"w": tc.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))},
        "optimizer": {"state": {0: {"step": 7, "exp_avg": np.ones(3, np.float64)}},
                      "param_groups": [{"lr": 1e-3, "betas": [0.9, 0.999], "params": [0], "nesterov": False}]},
        "epoch": 3,
        "rng": tc.get_rng_state(),
        "history": [{"loss": 0.123456789012345678, "acc": 0.5}, {"loss": float("nan"), "acc": float("inf")}],
        "pair": (1, "two", None),
        "scalar": np.float32(2.5),
        "zero_d": np.array(4, dtype=np.int64),
        "labels": np.array(["a", "bc"]),
        "empty": {},
        "a/b": np.zeros(1),
        "a": {"b": np.ones(1)},  # same member name as the key above: kept apart
    }
    tc.save(obj, tmp_path / "c.npz")
    back = tc.load(tmp_path / "c.npz")
    assert set(back) == set(obj)
    assert isinstance(back["model"]["w"], tc.Tensor) and back["model"]["w"].dtype == np.float32
    np.testing.assert_array_equal(back["model"]["w"].numpy(), obj["model"]["w"].numpy())
    assert list(back["optimizer"]["state"]) == [0]  # int keys stay ints
    assert back["optimizer"]["state"][0]["step"] == 7
    assert back["optimizer"]["state"][0]["exp_avg"].dtype == np.float64
    assert back["optimizer"]["param_groups"] == obj["optimizer"]["param_groups"]
    assert back["history"][0] == obj["history"][0]  # floats round-trip exactly
    assert np.isnan(back["history"][1]["loss"]) and back["history"][1]["acc"] == float("inf")
    assert back["pair"] == (1, "two", None) and isinstance(back["pair"], tuple)
    assert back["scalar"] == np.float32(2.5) and back["scalar"].dtype == np.float32
    assert back["zero_d"].shape == () and back["zero_d"] == 4
    assert back["labels"].tolist() == ["a", "bc"]
    assert back["empty"] == {}
    np.testing.assert_array_equal(back["a/b"], [0.0])
    np.testing.assert_array_equal(back["a"]["b"], [1.0])
    tc.set_rng_state(back["rng"])


def test_save_refuses_what_would_need_pickle(tmp_path):
    with pytest.raises(SerializationError, match="x/0.*dtype object"):
        tc.save({"x": [np.array([{}, 1], dtype=object)]}, tmp_path / "a.npz")
    with pytest.raises(SerializationError, match="type set"):
        tc.save({"x": {1, 2}}, tmp_path / "a.npz")
    with pytest.raises(SerializationError, match="dict keys must be str or int"):
        tc.save({(1, 2): 3}, tmp_path / "a.npz")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    tc.save({"v": np.ones(2)}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        tc.save({"v": np.zeros(2)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(tc.load(path)["v"], [1.0, 1.0])  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # and no temporary file is left


def test_plain_npz_loads_as_flat_state_dict(tmp_path):
    np.savez(tmp_path / "plain.npz", **{"0.weight": np.ones((3, 4), np.float32)})
    loaded = tc.load(tmp_path / "plain.npz")
    assert isinstance(loaded["0.weight"], tc.Tensor)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        tc.load("nope.npz")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped", "bad_meta", "pickled"])
def test_corrupt_files_name_the_file(tmp_path, damage):
    path = tmp_path / "ckpt.npz"
    tc.save(small_model().state_dict(), path)
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not a zip file at all")
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flipped":
        # Flip bytes inside the first member's data: the zip CRC check catches it.
        with zipfile.ZipFile(path) as z:
            info = z.infolist()[0]
        data = bytearray(raw)
        start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
        data[start] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "bad_meta":
        np.savez(path, **{META_KEY: np.frombuffer(b"{not json", dtype=np.uint8)})
    elif damage == "pickled":
        np.savez(path, x=np.array([{}, 1], dtype=object))
    with pytest.raises(SerializationError, match="ckpt.npz"):
        tc.load(path)


def test_newer_format_version_is_refused(tmp_path):
    meta = json.dumps({"format": "tinyconv", "version": 99, "tree": {"t": "v", "v": 1}}).encode()
    np.savez(tmp_path / "new.npz", **{META_KEY: np.frombuffer(meta, dtype=np.uint8)})
    with pytest.raises(SerializationError, match="newer tinyconv"):
        tc.load(tmp_path / "new.npz")


def _snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("2.bias"), r"Missing key\(s\) in state_dict: '2.bias'"),
    (lambda sd: sd.update({"3.weight": sd["2.weight"]}), r"Unexpected key\(s\) in state_dict: '3.weight'"),
    (lambda sd: sd.update({"0.weight": tc.tensor(np.zeros((4, 3), np.float32))}),
     r"size mismatch for 0.weight: copying a param with shape \(4, 3\)"),
    (lambda sd: sd.update({"2.bias": np.zeros(2, np.int64)}), "dtype mismatch for 2.bias: checkpoint has int64"),
])
def test_load_errors_name_the_key_and_leave_model_unchanged(tmp_path, edit, message):
    sd = {k: tc.tensor(v.numpy() + 1) for k, v in small_model().state_dict().items()}  # differs from a fresh model
    edit(sd)
    tc.save(sd, tmp_path / "bad.npz")
    model = small_model()
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match=message):
        model.load_state_dict(tc.load(tmp_path / "bad.npz"))
    for k, v in _snapshot(model).items():
        np.testing.assert_array_equal(v, before[k])


def test_tmp_files_live_next_to_the_target(tmp_path):
    sub = tmp_path / "deep" / "er"
    tc.save({"a": 1}, sub / "x.npz")  # creates folders
    assert tc.load(sub / "x.npz") == {"a": 1}
    assert os.listdir(sub) == ["x.npz"]


def test_a_write_killed_midway_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    """SIGKILL during tc.save (no ``finally`` runs): the old checkpoint survives; the stale temporary file is
    removed by the next save to the same path, while another live process's temporary is left alone."""
    import os
    import subprocess
    import sys

    path = tmp_path / "checkpoint.npz"
    tc.save({"v": np.ones(3)}, path)
    script = (
        "import os, signal, numpy as np, tinyconv as tc\n"
        "real = np.savez\n"
        "def dying(f, **kw):\n"
        "    f.write(b'PK' + bytes(1000)); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "np.savez = dying\n"
        f"tc.save({{'v': np.zeros(3)}}, {str(path)!r})\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert r.returncode == -9
    stale = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].startswith(".checkpoint.npz.")
    np.testing.assert_array_equal(tc.load(path)["v"], np.ones(3))  # the old file is intact
    live = tmp_path / f".checkpoint.npz.{os.getppid()}-abcdef12.tmp"  # a writer that still runs
    live.write_bytes(b"")
    tc.save({"v": np.full(3, 2.0)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint.npz", live.name])
    np.testing.assert_array_equal(tc.load(path)["v"], np.full(3, 2.0))


def test_every_load_failure_is_one_error_type(tmp_path):
    assert issubclass(tc.CheckpointError, ValueError) and tc.CheckpointError is SerializationError
    with pytest.raises(tc.CheckpointError, match="nope.npz"):
        tc.load(tmp_path / "nope.npz")
    with pytest.raises(tc.CheckpointError, match="is a folder"):
        tc.load(tmp_path)
    for tree in ({"t": "dict", "k": ["a"], "v": []}, {"t": "dict", "k": [["x"]], "v": [{"t": "v", "v": 1}]},
                 {"t": "list", "v": 3}, {"t": "float", "v": "abc"}, {"t": "v", "v": {"x": 1}}, [1, 2], 7,
                 {"t": "tensor", "a": 5}):
        meta = json.dumps({"format": "tinyconv", "version": 1, "tree": tree}).encode()
        np.savez(tmp_path / "t.npz", **{META_KEY: np.frombuffer(meta, dtype=np.uint8)})
        with pytest.raises(tc.CheckpointError, match="t.npz"):
            tc.load(tmp_path / "t.npz")
    np.savez(tmp_path / "m.npz", **{META_KEY: np.frombuffer(b'{"format": "tinyconv"}', dtype=np.uint8)})
    with pytest.raises(tc.CheckpointError, match="m.npz"):
        tc.load(tmp_path / "m.npz")
