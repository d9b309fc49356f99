"""tinyconv.memory: the malloc thresholds set at import, the ways to opt out, and that they keep freed blocks.

Each case runs in a fresh interpreter (the setting is process-wide and made at import). The page-fault checks
count minor faults (getrusage), which do not depend on the machine's load.
"""
import json
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Six 2.4 MB arrays allocated, written and freed, ten times over (what a LeNet step does with its activations):
# minor page faults per round.
PROBE = r"""
import json, resource, sys
import numpy as np
import tinyconv
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def one_round():
    arrays = [np.ones(600_000, dtype=np.float32) for _ in range(6)]
    del arrays
for _ in range(3):
    one_round()
f0 = faults()
for _ in range(10):
    one_round()
print(json.dumps({"tuning": tinyconv.memory.malloc_tuning(), "faults_per_round": (faults() - f0) / 10,
                  "released": tinyconv.memory.release()}))
"""


def probe(**env_changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TINYCONV_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                        "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES")}
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(env_changes)
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the tuning applies to glibc's malloc on Linux only")
def test_import_sets_the_thresholds_and_freed_blocks_are_reused():
    r = probe()
    t = r["tuning"]
    assert t["applied"] is True and t["reason"] == "set at import"
    assert t["mmap_threshold"] == 32 * 2**20 and t["trim_threshold"] == 64 * 2**20
    assert r["faults_per_round"] < 50  # 6 x 2.4 MB re-faulted would be ~3,500


@pytest.mark.skipif(not GLIBC, reason="the tuning applies to glibc's malloc on Linux only")
@pytest.mark.parametrize("value", ["0", "off", "default"])
def test_opt_out_keeps_glibc_defaults(value):
    r = probe(TINYCONV_MALLOC=value)
    t = r["tuning"]
    assert t["applied"] is False and f"TINYCONV_MALLOC={value}" in t["reason"]
    assert t["mmap_threshold"] is None and t["trim_threshold"] is None
    assert r["faults_per_round"] > 1000  # glibc's defaults give the pages back: the probe's reason to exist


@pytest.mark.skipif(not GLIBC, reason="the tuning applies to glibc's malloc on Linux only")
@pytest.mark.parametrize("name,value", [("MALLOC_TRIM_THRESHOLD_", "1048576"),
                                        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")])
def test_users_own_malloc_settings_win(name, value):
    t = probe(**{name: value})["tuning"]
    assert t["applied"] is False and name in t["reason"]


def test_report_and_release_work_in_this_process():
    import tinyconv

    t = tinyconv.memory.malloc_tuning()
    assert set(t) == {"applied", "reason", "mmap_threshold", "trim_threshold"}
    assert isinstance(tinyconv.memory.release(), bool)
    assert tinyconv.memory.tune_malloc() == t  # once per process: a second call changes nothing
