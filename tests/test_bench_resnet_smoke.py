"""benchmarks/bench_resnet.py runs end to end (``--quick``) in a subprocess and writes what it promises."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_resnet_quick(tmp_path):
    out = tmp_path / "resnet.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_resnet.py"), "--quick", "--synthetic",
                        "--json", str(out), "--results-dir", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "training step" in p.stdout and "BN fwd+bwd" in p.stdout
    d = json.loads(out.read_text())
    rows = {r["framework"]: r for r in d["rows"]}
    assert "tinyconv" in rows and d["data"] == "random" and d["batch"] == 8
    tiny = rows["tinyconv"]
    assert tiny["steps"] == 2 and 0 < tiny["step_min_ms"] <= tiny["step_ms"] <= tiny["step_max_ms"]
    assert tiny["bn_ms"] > 0 and tiny["first_step_s"] > 0 and 1.0 < tiny["first_loss"] < 5.0
    if "torch" in rows:  # when this interpreter has torch: same weights and batch give the same first loss
        assert abs(rows["torch"]["first_loss"] - tiny["first_loss"]) < 1e-4
        assert "step_x_torch" in tiny
    # the result file (a quick run saves only into a folder it is given)
    saved = [json.loads(f.read_text()) for f in (tmp_path / "results" / "resnet").glob("*.json")]
    assert len(saved) == 1 and saved[0]["quick"] is True and saved[0]["details"]["rows"] == d["rows"]
    step = saved[0]["rows"][0]
    assert step["what"] == "training step" and step["headline"] and step["tinyconv_median"] == tiny["step_ms"]
    assert (step["ratio"] is not None) == ("torch" in rows)
