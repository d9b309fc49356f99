"""benchmarks/bench_cpu.py runs end to end (--quick) in a subprocess and reports what it promises."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_cpu_quick_compares_two_trees(tmp_path):
    out = tmp_path / "cpu.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_cpu.py"), "--quick", "--tree", ROOT,
                        "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["threads"] == 1 and len(res["rows"]) == 2
    for row in res["rows"]:
        assert row["tree"] == ROOT and row["processes"] == 1
        assert row["thread_ms"] > 0 and row["process_ms"] > 0 and row["calls_per_step"] > 100
        assert row["thread_ms_range"][0] <= row["thread_ms"] <= row["thread_ms_range"][1]
    assert "main thread ms" in p.stdout
