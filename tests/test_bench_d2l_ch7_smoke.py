"""benchmarks/bench_d2l_ch7.py runs end to end (``--quick``: channels / 16, batch 2) and writes what it promises."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_d2l_ch7_quick(tmp_path):
    out = tmp_path / "ch7.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_d2l_ch7.py"), "--quick",
                        "--json", str(out), "--results-dir", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "forward + backward" in p.stdout
    d = json.loads(out.read_text())
    assert d["batch"] == 2 and d["width"] == 16
    rows = {r["net"]: r for r in d["rows"]}
    assert set(rows) == {"alexnet", "vgg11", "nin", "googlenet", "resnet18", "densenet"}
    assert {r["side"] for r in d["rows"]} == {224, 96}
    for r in rows.values():
        tiny = r["tinyconv"]
        assert tiny["n"] == 1 and tiny["ms"] > 0 and tiny["first_step_s"] > 0
        assert 1.0 < tiny["check_loss"] < 5.0  # ten classes, untrained: about ln 10
        if "torch" in r:  # same weights and batch: the same eval-mode loss in both frameworks
            assert abs(r["torch"]["check_loss"] - tiny["check_loss"]) < 1e-3
            assert r["x_torch"] > 0
    # the result file (a quick run saves only into a folder it is given): one row per network and their sum
    saved = [json.loads(f.read_text()) for f in (tmp_path / "results" / "d2l_ch7").glob("*.json")]
    assert len(saved) == 1 and saved[0]["quick"] is True
    saved_rows = saved[0]["rows"]
    assert [r["net"] for r in saved_rows[:-1]] == list(rows) and saved_rows[-1]["headline"]
    assert saved_rows[-1]["tinyconv_median"] == sum(r["tinyconv"]["ms"] for r in d["rows"])


def test_bench_d2l_ch7_blas_env_compare(tmp_path):
    """--blas-env-compare adds a tinyconv column without OPENBLAS_CORETYPE (here set to a core OpenBLAS knows),
    in its own worker processes, with its rows in the result file."""
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", TINYCONV_BENCH_NO_TORCH="1")
    out = tmp_path / "ch7.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_d2l_ch7.py"), "--quick", "--nets",
                        "nin", "resnet18", "--blas-env-compare", "--json", str(out), "--results-dir",
                        str(tmp_path / "results")], capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
                       env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "OpenBLAS own" in p.stdout
    d = json.loads(out.read_text())
    assert d["blas_env_compare"] and d["blas_env"]["OPENBLAS_CORETYPE"] == "Haswell"
    for r in d["rows"]:
        assert r["tinyconv_blas_default"]["n"] == 1 and r["tinyconv_blas_default"]["ms"] > 0
        assert abs(r["tinyconv_blas_default"]["check_loss"] - r["tinyconv"]["check_loss"]) < 1e-3
    runs = d["runs"]["nin"]
    assert runs["tinyconv"][0]["blas_env"] == {**runs["tinyconv"][0]["blas_env"], "OPENBLAS_CORETYPE": "Haswell"}
    assert "OPENBLAS_CORETYPE" not in runs["tinyconv_blas_default"][0]["blas_env"]


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"), reason="without the JIT tune measures nothing")
def test_bench_d2l_ch7_kernel(tmp_path):
    """--kernel runs tinyconv's workers with that conv kernel (tune: it times the operations in the first step),
    says so, and saves nothing with the results (they are the default kernel's)."""
    env = dict(os.environ, TINYCONV_BENCH_NO_TORCH="1")
    out = tmp_path / "ch7.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_d2l_ch7.py"), "--quick", "--nets",
                        "nin", "--kernel", "tune", "--json", str(out), "--results-dir", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=600, cwd=str(tmp_path), env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "tinyconv's conv kernel: tune" in p.stdout and "not saved" in p.stdout
    d = json.loads(out.read_text())
    assert d["kernel"] == "tune"
    [run] = d["runs"]["nin"]["tinyconv"]
    assert run["kernel"] == "tune" and run["tune_picks"] >= 3 * 4  # NiN's convolutions, three operations each
    assert not (tmp_path / "results").exists()
