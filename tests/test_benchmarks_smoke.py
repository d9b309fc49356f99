"""The benchmark scripts run end to end (``--quick``: tiny sizes, 1-2 repeats) and write the fields they promise.

Each runs in a subprocess with this interpreter, as a user would run it; with or without PyTorch installed.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except Exception:
    HAVE_TORCH = False


def _run(script, tmp_path, *extra):
    out = tmp_path / "out.json"
    p = subprocess.run([sys.executable, os.path.join(BENCH, script), "--quick", "--json", str(out), *extra],
                       capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout, json.loads(out.read_text())


def _machine_ok(d):
    m = d["machine"]
    for key in ("cpu", "logical_cpus", "numpy", "numba", "blas", "env", "python"):
        assert key in m
    assert ("torch" in m) and (m["torch"] is not None) == HAVE_TORCH


def test_bench_conv_quick(tmp_path):
    stdout, d = _run("bench_conv.py", tmp_path, "--csv", str(tmp_path / "conv.csv"))
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


def test_bench_lenet_quick(tmp_path):
    stdout, d = _run("bench_lenet.py", tmp_path)
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
    split = d["split"]["tinyconv[default]"]
    what = " ".join(s["what"] for s in split)
    for scope in ("conv1 (Conv2d) backward", "conv2 (Conv2d) forward", "pool1", "fc1", "loss", "optimizer",
                  "data loading", "autograd engine"):
        assert scope in what, scope
    assert d["peak_rss_mb"] > 0


def test_bench_startup_quick(tmp_path):
    stdout, d = _run("bench_startup.py", tmp_path)
    modes = {r["mode"]: r for r in d["startup"]}
    assert {"nojit", "warm"} <= set(modes), d["notes"]
    for r in modes.values():
        assert 0 < r["imported_s"] <= r["model_ready_s"] <= r["first_step_s"] <= r["second_step_s"]
    assert "1st step done s" in stdout
