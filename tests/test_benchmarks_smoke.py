"""The benchmark scripts run end to end (``--quick``: tiny sizes, 1-2 repeats) and write the fields they promise.

Each runs in a subprocess with this interpreter, as a user would run it. PyTorch columns appear when this
interpreter can import torch (the benchmarks then use it for their separate torch processes); the tests never
import torch themselves. ``TINYCONV_BENCH_TORCH_PYTHON`` is removed from their environment, except in the
``torch``-marked test, which runs only when it names an interpreter with PyTorch. ``TINYCONV_BENCH_RESULTS``
points at the test's temporary folder, so the result files of the benchmarks that save one land there (marked
quick), never in benchmarks/results.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
HAVE_TORCH = importlib.util.find_spec("torch") is not None
TORCH_PYTHON = os.environ.get("TINYCONV_BENCH_TORCH_PYTHON")


def _env(tmp_path, torch_python=None):
    env = {k: v for k, v in os.environ.items() if k != "TINYCONV_BENCH_TORCH_PYTHON"}
    if torch_python:
        env["TINYCONV_BENCH_TORCH_PYTHON"] = torch_python
    env["TINYCONV_BENCH_RESULTS"] = str(tmp_path / "results")
    return env


def _repo_results():
    return sorted(p for p in Path(BENCH, "results").rglob("*") if p.is_file())


def _run(script, tmp_path, *extra, torch_python=None, timeout=120):
    out = tmp_path / "out.json"
    before = _repo_results()
    p = subprocess.run([sys.executable, os.path.join(BENCH, script), "--quick", "--json", str(out), *extra],
                       capture_output=True, text=True, timeout=timeout, cwd=str(tmp_path),
                       env=_env(tmp_path, torch_python))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert _repo_results() == before, "a --quick run wrote into benchmarks/results"
    return p.stdout, json.loads(out.read_text())


def _saved(tmp_path, benchmark):
    """The one result file the run saved (into $TINYCONV_BENCH_RESULTS), read back through the schema check."""
    files = sorted((tmp_path / "results").rglob("*.json"))
    assert [f.parent.name for f in files] == [benchmark], files
    sys.path.insert(0, BENCH)
    try:
        import common
    finally:
        sys.path.remove(BENCH)
    d = common.load_result(str(files[0]))
    assert d["benchmark"] == benchmark and d["quick"] is True and d["rows"]
    assert (d["versions"]["torch"] is not None) == HAVE_TORCH
    assert all((r["ratio"] is not None) == HAVE_TORCH for r in d["rows"] if r["unit"] != "%")
    return d


def _machine_ok(d):
    m = d["machine"]
    for key in ("cpu", "logical_cpus", "numpy", "numba", "blas", "env", "python"):
        assert key in m
    assert ("torch" in m) and (m["torch"] is not None) == HAVE_TORCH


def test_bench_conv_quick(tmp_path):
    stdout, d = _run("bench_conv.py", tmp_path, "--csv", str(tmp_path / "conv.csv"), "--markdown",
                     str(tmp_path / "conv.md"))
    _machine_ok(d)
    assert "convolution" in stdout and "GFLOP/s" in stdout and "x fastest" in stdout
    assert d["threads"]["threads"] >= 1
    rows = d["conv"]
    kernels = {r["kernel"] for r in rows}
    assert {"direct", "im2col", "numba"} <= kernels
    assert ("torch" in kernels) == HAVE_TORCH
    assert {r["config"] for r in rows} == {"lenet.conv1", "lenet.conv2"}
    assert {r["phase"] for r in rows if r["config"] == "lenet.conv1"} == {"fwd", "bwd", "fwd+bwd", "fwd+wgrad"}
    for r in rows:
        for key in ("ms", "min_ms", "max_ms", "ms_full", "gflops", "x_fastest", "x_torch", "peak_mb",
                    "scratch_mb", "batch"):
            assert key in r, key
        assert r["min_ms"] <= r["ms"] <= r["max_ms"] and r["gflops"] > 0 and r["x_fastest"] >= 1.0 - 1e-9
    pool = d["pool"]
    assert {r["op"] for r in pool} == {"max", "avg"}
    assert {"numpy", "numba"} <= {r["kernel"] for r in pool}
    assert not [n for n in d["notes"] if "rel. error" in n or "unavailable" in n], d["notes"]
    assert (tmp_path / "conv.csv").read_text().startswith("config,")
    md = (tmp_path / "conv.md").read_text()
    assert "| convolution | phase |" in md and "| 4x1x12x12 -> 3, 5x5 p2 | fwd+bwd |" in md and "Reproduce:" in md
    saved = _saved(tmp_path, "conv")
    what = [r["what"] for r in saved["rows"]]
    assert "lenet.conv1 (4x1x12x12→3, 5x5 p2) fwd+bwd" in what and "lenet.conv1 (4x1x12x12→3, 5x5 p2) fwd+wgrad" in what
    assert {r["group"] for r in saved["rows"]} >= {"convolution", "through autograd", "pooling 2x2"}
    auto = next(r for r in rows if r["config"] == "lenet.conv2" and r["kernel"] == "auto" and r["phase"] == "fwd+bwd")
    mine = next(r for r in saved["rows"] if r.get("config") == "lenet.conv2" and r.get("phase") == "fwd+bwd")
    assert mine["kernel"] == "auto" and mine["tinyconv_median"] == auto["ms_full"]
    assert saved["command"][:2] == ["benchmarks/bench_conv.py", "--quick"]


def test_bench_lenet_quick(tmp_path):
    stdout, d = _run("bench_lenet.py", tmp_path, "--markdown", str(tmp_path / "lenet.md"))
    _machine_ok(d)
    assert "images/s" in stdout and "split by layer/op" in stdout
    rows = {r["variant"]: r for r in d["lenet"]}
    assert {"tinyconv[default]", "tinyconv[im2col]", "tinyconv[numba]"} <= set(rows)
    assert ("torch" in rows) == HAVE_TORCH
    for r in rows.values():
        for key in ("step_ms", "images_per_s", "first_step_ms", "x_torch", "forward_ms", "backward_ms",
                    "optimizer_ms", "data_ms", "last_loss"):
            assert key in r, key
        assert r["step_ms"] > 0 and r["images_per_s"] > 0
    for name, r in rows.items():
        if name != "torch":
            assert r["torch_in_process"] is False, name  # tinyconv is never timed with torch in its process
            assert r["minflt_per_step"] >= 0
    split = d["split"]["tinyconv[default]"]
    what = " ".join(s["what"] for s in split)
    for scope in ("conv1 (Conv2d) backward", "conv2 (Conv2d) forward", "pool1", "fc1", "loss", "optimizer",
                  "data loading", "autograd engine"):
        assert scope in what, scope
    assert d["peak_rss_mb"] > 0
    md = (tmp_path / "lenet.md").read_text()
    assert "| tinyconv[default] |" in md and "minor page faults/step" in md
    saved = _saved(tmp_path, "lenet")
    steps = {r["kernel"]: r for r in saved["rows"]}
    assert set(steps) == {"default", "im2col", "numba", "direct"} and steps["default"]["headline"]
    assert steps["default"]["tinyconv_median"] == rows["tinyconv[default]"]["step_ms"]


def test_bench_fusion_quick(tmp_path):
    out, d = _run("bench_fusion.py", tmp_path)
    _machine_ok(d)
    assert [r["layer"] for r in d["results"]] == ["conv1+relu+pool", "conv2+relu+pool"]
    for r in d["results"]:
        for key in ("fused_forward_min_ms", "unfused_forward_min_ms", "fused_backward_min_ms",
                    "unfused_backward_min_ms", "fused_total_median_ms", "unfused_total_median_ms"):
            assert r[key] > 0, key
        assert r["fused_over_unfused"] == r["fused_total_median_ms"] / r["unfused_total_median_ms"]
    assert "fused / unfused" in out
    assert not (tmp_path / "results").exists()  # tinyconv against itself: no result file


def test_bench_startup_quick(tmp_path):
    stdout, d = _run("bench_startup.py", tmp_path)
    modes = {r["mode"]: r for r in d["startup"]}
    assert {"nojit", "warm"} <= set(modes), d["notes"]
    for r in modes.values():
        assert 0 < r["imported_s"] <= r["model_ready_s"] <= r["first_step_s"] <= r["second_step_s"]
    assert "1st step done s" in stdout


def test_bench_epoch_quick(tmp_path):
    """tinyconv train (and the PyTorch script, when torch is importable) on generated MNIST-sized data."""
    stdout, d = _run("bench_epoch.py", tmp_path, "--markdown", str(tmp_path / "epoch.md"))
    assert "train s/epoch" in stdout and "| tinyconv | PyTorch |" in stdout
    assert not [n for n in d["notes"] if "exited" in n or "could not read" in n], d["notes"]
    tc_runs = [r for r in d["runs"]["tinyconv"] if r["ok"]]
    assert len(tc_runs) == 1 and len(tc_runs[0]["history"]) == 1
    run = tc_runs[0]
    assert run["history"][0]["train_seconds"] > 0 and run["peak_rss_mb"] > 0 and run["minflt"] > 0
    assert 0 < run["user_s"] + run["sys_s"]
    rows = {r["metric"]: r for r in d["epoch"]}
    assert rows["epoch_s"]["tinyconv"] == run["history"][0]["train_seconds"]
    assert (rows["epoch_s"]["torch"] is not None) == HAVE_TORCH
    assert (rows["epoch_s"].get("ratio") is not None) == HAVE_TORCH
    md = (tmp_path / "epoch.md").read_text()
    assert md.startswith("`tinyconv train --epochs 1 --augment 0`") and "Reproduce: `python benchmarks/bench_epoch.py" in md
    saved = _saved(tmp_path, "epoch")
    first = saved["rows"][0]
    assert first["headline"] and first["unit"] == "s" and first["tinyconv_median"] == rows["epoch_s"]["tinyconv"]


def test_torch_lenet_reads_the_same_batches_as_tinyconv(tmp_path):
    """The PyTorch script's NumPy batches are tinyconv.data.DataLoader's, bit for bit (without importing torch)."""
    sys.path.insert(0, BENCH)
    try:
        import torch_lenet
    finally:
        sys.path.remove(BENCH)
    from tinyconv.data import DataLoader

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=300, dtype=np.uint8)
    loader = DataLoader((images, labels), batch_size=128, shuffle=True, seed=5)
    for epoch in range(2):
        ours = list(torch_lenet.batches(images, labels, 128, 5, epoch))
        theirs = list(loader)
        assert len(ours) == len(theirs) == 3
        for (x1, y1), (x2, y2) in zip(ours, theirs):
            assert x1.dtype == x2.dtype == np.float32 and y1.dtype == y2.dtype == np.int64
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    assert "torch" not in sys.modules or HAVE_TORCH


@pytest.mark.torch
@pytest.mark.skipif(not TORCH_PYTHON, reason="TINYCONV_BENCH_TORCH_PYTHON does not name an interpreter with PyTorch")
def test_bench_lenet_quick_with_torch_worker(tmp_path):
    """The torch row comes from torch_lenet.py in PyTorch's interpreter, from the same initial weights and data."""
    _, d = _run("bench_lenet.py", tmp_path, "--kernels", "default", "--no-memory", torch_python=TORCH_PYTHON)
    rows = {r["variant"]: r for r in d["lenet"]}
    assert set(rows) == {"tinyconv[default]", "torch"}, d["notes"]
    assert d["machine"]["torch"]
    assert abs(rows["torch"]["first_loss"] - rows["tinyconv[default]"]["first_loss"]) < 1e-4
    assert rows["tinyconv[default]"]["torch_in_process"] is False


@pytest.mark.torch
@pytest.mark.skipif(not TORCH_PYTHON, reason="TINYCONV_BENCH_TORCH_PYTHON does not name an interpreter with PyTorch")
def test_bench_conv_quick_torch_columns_from_worker_processes(tmp_path):
    """bench_conv's torch rows come from two worker processes, and their outputs agree with tinyconv's."""
    _, d = _run("bench_conv.py", tmp_path, "--kernels", "numba", "--no-memory", torch_python=TORCH_PYTHON)
    torch_rows = [r for r in d["conv"] if r["kernel"] == "torch"]
    assert torch_rows and all(r["processes"] == 2 for r in torch_rows)
    assert all(r["x_torch"] is not None for r in d["conv"])
    assert not [n for n in d["notes"] if "rel. error" in n or "failed" in n], d["notes"]
    assert d["machine"]["torch"] and d["threads"].get("torch")


@pytest.mark.torch
@pytest.mark.skipif(not TORCH_PYTHON, reason="TINYCONV_BENCH_TORCH_PYTHON does not name an interpreter with PyTorch")
def test_bench_epoch_quick_with_torch(tmp_path):
    """Both training processes run on the same generated data and the table carries their ratio."""
    _, d = _run("bench_epoch.py", tmp_path, torch_python=TORCH_PYTHON, timeout=300)
    assert [r["ok"] for r in d["runs"]["tinyconv"]] == [True] and [r["ok"] for r in d["runs"]["torch"]] == [True]
    rows = {r["metric"]: r for r in d["epoch"]}
    assert rows["epoch_s"]["ratio"] > 0 and rows["peak_rss_mb"]["torch"] > 0
    assert d["machine"]["torch"] and "PyTorch 2" in d["markdown"]
