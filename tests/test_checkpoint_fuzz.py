"""Fuzzing a real training checkpoint: random truncations, byte flips, missing and extra members, members of the
wrong dtype or shape, damaged metadata. ``tc.load``, ``load_checkpoint`` + ``Trainer.load_state_dict`` and
``tinyconv eval`` either give exactly the original state / output, or one ``tinyconv.CheckpointError`` (one line
from the CLI, exit status 1) naming the file; never another exception, never a partial load into a model."""
import io
import json
import zipfile
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import data_root  # noqa: F401  (generated full-size IDX files)

import tinyconv as tc
from tinyconv import cli
from tinyconv.train import load_checkpoint

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow])


@pytest.fixture(scope="module")
def real(data_root, tmp_path_factory):  # noqa: F811
    """A checkpoint written by ``tinyconv train`` (1 epoch, tiny), its bytes, its state and its eval output."""
    out = tmp_path_factory.mktemp("fuzz") / "run"
    args = ["--data", str(data_root), "--custom-data"]
    with redirect_stdout(io.StringIO()):
        assert cli.main(["train", *args, "--out", str(out), "--limit", "128", "--test-limit", "100", "--epochs",
                         "1", "--batch-size", "64", "--no-progress"]) == 0
    path = out / "checkpoint.npz"
    return {"bytes": path.read_bytes(), "state": tc.load(path), "eval": run_eval(path, data_root), "args": args}


def run_eval(path, data_root):  # noqa: F811
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli.main(["eval", str(path), "--data", str(data_root), "--custom-data", "--test-limit", "100"])
    # Timing and memory vary from run to run; everything else must be identical.
    lines = [line for line in out.getvalue().splitlines() if not line.startswith("peak memory")]
    lines = [line.split(", loss")[0] + line.split(", loss")[1].split(",")[0] if ", loss" in line else line
             for line in lines]
    return rc, lines, err.getvalue()


def same(a, b) -> bool:
    """Deep equality of two loaded states (arrays by value and shape)."""
    if isinstance(a, tc.Tensor) or isinstance(a, np.ndarray):
        if not isinstance(b, (tc.Tensor, np.ndarray)):
            return False
        a, b = np.asarray(getattr(a, "data", a)), np.asarray(getattr(b, "data", b))
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return type(a) is type(b) and a == b


def members(raw: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return {name[:-4]: np.load(z.open(name), allow_pickle=False) for name in z.namelist()}


def pack(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _json_paths(node, path=()):
    """Every (path, value) inside a JSON tree (dict keys and list indices)."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _json_paths(v, path + (i,))


@st.composite
def damaged(draw, raw: bytes):
    """(kind, bytes): one random damage of the checkpoint file ``raw``."""
    kind = draw(st.sampled_from(["truncate", "flip", "drop member", "extra member", "dtype", "shape",
                                 "meta drop key", "meta retype"]))
    if kind == "truncate":
        return kind, raw[:draw(st.integers(0, len(raw) - 1))]
    if kind == "flip":
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return kind, bytes(data)
    arrays = members(raw)
    names = sorted(arrays)
    if kind == "drop member":
        del arrays[draw(st.sampled_from(names))]
    elif kind == "extra member":
        arrays[draw(st.text("abcxyz/._", min_size=1, max_size=12))] = np.arange(draw(st.integers(0, 5)))
    elif kind in ("dtype", "shape"):
        name = draw(st.sampled_from([n for n in names if n != "__tinyconv__"]))
        a = arrays[name]
        if kind == "dtype":
            dtype = draw(st.sampled_from(["int8", "int64", "float64", "float16", "bool", "U3", "complex64"]))
            arrays[name] = a.astype(dtype)
        else:
            arrays[name] = draw(st.sampled_from([a.reshape(-1), a[None], np.zeros((2, 3)), np.zeros(0),
                                                 np.float32(1.5)]))
    else:
        meta = json.loads(arrays["__tinyconv__"].tobytes())
        spots = [(p, v) for p, v in _json_paths(meta) if p]
        path, value = draw(st.sampled_from(spots))
        parent = meta
        for key in path[:-1]:
            parent = parent[key]
        if kind == "meta drop key" and isinstance(parent, dict):
            del parent[path[-1]]
        else:  # a value of another JSON type
            parent[path[-1]] = ("x" if not isinstance(value, str) else 7) if not isinstance(value, (dict, list)) \
                else draw(st.sampled_from([None, 3, "x"]))
        arrays["__tinyconv__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return kind, pack(arrays)


@SETTINGS
@given(data=st.data())
def test_tc_load_and_resume_give_the_same_state_or_one_checkpoint_error(real, tmp_path_factory, data):
    kind, raw = data.draw(damaged(real["bytes"]))
    path = tmp_path_factory.mktemp("f") / "checkpoint.npz"
    path.write_bytes(raw)
    try:
        state = tc.load(path)
    except tc.CheckpointError as e:
        assert str(path) in str(e)
        return
    if kind in ("truncate", "flip"):  # byte damage that tc.load accepts must be harmless (zip fields it ignores)
        assert same(state, real["state"])
    # A fresh run built from the original config, then loaded: all or nothing.
    trainer = cli.build_run(dict(real["state"]["config"]), real["args"][1], progress=False, custom_data=True)
    before = {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}
    opt_before = trainer.optimizer.state_dict()
    try:
        trainer.load_state_dict(load_checkpoint(path), path)
    except tc.CheckpointError as e:
        assert str(path) in str(e)
        for k, v in trainer.model.state_dict().items():  # nothing half-loaded
            np.testing.assert_array_equal(v.numpy(), before[k])
        assert same(trainer.optimizer.state_dict(), opt_before)
        return
    expected = real["state"]
    for k, v in trainer.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), expected["model"][k].numpy())
    assert trainer.epoch == expected["epoch"] and trainer.batch == expected["batch"]
    assert same(trainer.history, expected["history"])


@SETTINGS
@given(data=st.data())
def test_tinyconv_eval_gives_the_same_output_or_one_line_and_exit_1(real, data_root, tmp_path_factory,  # noqa: F811
                                                                   data):
    kind, raw = data.draw(damaged(real["bytes"]))
    path = tmp_path_factory.mktemp("e") / "checkpoint.npz"
    path.write_bytes(raw)
    rc, lines, err = run_eval(path, data_root)
    if rc == 0:
        assert lines[1:] == real["eval"][1][1:]  # the first line names the file
    else:
        assert rc == 1, (kind, rc, err)
        assert err.startswith("tinyconv eval: error: ") and str(path) in err, err
        assert len(err.strip().splitlines()) == 1, err
