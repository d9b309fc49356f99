"""Shared helpers of the benchmark scripts: timing, thread control, memory peaks, machine description, tables.

Everything here works without PyTorch (``torch_or_none()`` returns None) and without threadpoolctl/matplotlib.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

# the benchmarks measure this checkout's tinyconv, whatever is installed
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# env vars that change how BLAS / OpenMP / numba behave: reported with every result
ENV_PATTERNS = ("OPENBLAS_", "GOTO", "OMP_", "MKL_", "NUMBA_", "BLIS_", "VECLIB_", "NUMEXPR_", "KMP_")
# the two that, set here, were seen to slow OpenBLAS down (see --blas-env-compare in bench_conv)
BLAS_TUNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _import_torch_early():
    """Import torch (when installed) before numba starts its OpenMP thread pool: with numba's 'omp' threading
    layer started first, PyTorch's CPU ops were measured 2-10x slower in the same process on this machine
    (Adam's step 0.8 -> 9 ms). Importing torch first avoids it; see benchmarks/README.md."""
    if os.environ.get("TINYCONV_BENCH_NO_TORCH"):
        return
    try:
        import torch  # noqa: F401
    except Exception:
        pass


_import_torch_early()

from tinyconv.kernels.blas import openblas  # noqa: E402  (numpy's OpenBLAS, when that is its BLAS)


def torch_or_none():
    """The torch module, or None when it is not installed (the torch columns are then left out)."""
    if os.environ.get("TINYCONV_BENCH_NO_TORCH"):
        return None
    try:
        import torch  # noqa: F401
    except Exception:
        return None
    return torch


# ----------------------------------------------------------------------------------------------------- BLAS
def blas_info() -> dict:
    """numpy's BLAS: build configuration and, for OpenBLAS, the core type it picked at run time and its threads."""
    info = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["name"] = blas.get("name")
        info["version"] = blas.get("version")
        info["build_config"] = " ".join(str(blas.get("openblas configuration", "")).split())
    except Exception as e:  # older numpy
        info["error"] = repr(e)
    lib = openblas()
    if lib is not None:
        info["library"] = os.path.basename(lib.path)
        try:
            f = lib.symbol("get_corename")
            f.restype = ctypes.c_char_p
            info["core"] = f().decode()
            f = lib.symbol("get_config")
            f.restype = ctypes.c_char_p
            info["runtime_config"] = f().decode()
            info["threads"] = lib.get_num_threads()
        except Exception as e:
            info["error"] = repr(e)
    try:
        import threadpoolctl

        info["threadpoolctl"] = threadpoolctl.threadpool_info()
    except Exception:
        pass
    return info


def set_blas_threads(n: int) -> bool:
    lib = openblas()
    if lib is not None:
        lib.set_num_threads(n)
        return True
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(int(n), user_api="blas")
        return True
    except Exception:
        return False


def set_threads(n: int | None, numba: bool = True) -> dict:
    """Use ``n`` threads everywhere (numba, numpy's BLAS, torch intra-op): the same count for all. Returns what was set."""
    n = int(n or default_threads())
    out = {"threads": n}
    if numba:  # False in a torch-only process: do not start numba's OpenMP pool there
        _set_numba_threads(n, out)
    out["blas"] = n if set_blas_threads(n) else "unchanged"
    torch = torch_or_none()
    if torch is not None:
        torch.set_num_threads(n)
        out["torch"] = torch.get_num_threads()
    return out


def _set_numba_threads(n: int, out: dict) -> None:
    try:  # start numba's pool the way tinyconv does (short OpenMP spin-wait), not with numba's defaults
        from tinyconv.kernels import threads as _tc_threads

        _tc_threads.ensure_thread_pool()
    except Exception:
        pass
    try:
        import numba

        n_numba = min(n, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(n_numba)
        out["numba"] = numba.get_num_threads()
        out["numba_threading_layer"] = numba.config.THREADING_LAYER
    except Exception as e:
        out["numba"] = repr(e)


# ---------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except Exception:
        return None


def machine_info() -> dict:
    """Everything that shapes the numbers: CPU, cores, library versions, BLAS, env vars that change BLAS/numba."""
    info = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": default_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "blas": blas_info(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PATTERNS)},
        "tinyconv_commit": git_commit(),
        "loadavg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        mem = open("/proc/meminfo").readline().split()
        info["memory_gib"] = round(int(mem[1]) / 2**20, 1)
    except Exception:
        pass
    try:
        import numba

        info["numba"] = numba.__version__
    except Exception:
        info["numba"] = None
    torch = torch_or_none()
    info["torch"] = None if torch is None else torch.__version__
    if torch is not None:
        try:
            info["torch_parallel"] = torch.__config__.parallel_info().splitlines()[:6]
        except Exception:
            pass
    try:
        import tinyconv

        info["tinyconv"] = getattr(tinyconv, "__version__", "?")
    except Exception:
        info["tinyconv"] = None
    return info


def describe_machine(info: dict, threads: dict) -> str:
    blas = info.get("blas", {})
    env = info.get("env", {})
    lines = [
        f"machine: {info['cpu']}, {info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs, "
        f"{info.get('memory_gib', '?')} GiB; {info['platform']}; load average {info.get('loadavg_1_5_15')}",
        f"python {info['python']}, numpy {info['numpy']}, numba {info['numba']}, torch {info['torch'] or '-'}, "
        f"tinyconv {info.get('tinyconv')} ({info.get('tinyconv_commit') or 'no git'})",
        f"BLAS: {blas.get('name')} {blas.get('version')}, core {blas.get('core', '?')}, "
        f"{blas.get('threads', '?')} threads",
        f"threads: {threads}",
        "BLAS/OpenMP/numba env: " + (", ".join(f"{k}={v}" for k, v in env.items()) or "(none set)"),
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ timing
def time_fn(fn, repeats: int = 5, warmup: int = 1, min_sample_s: float = 0.0, max_inner: int = 64) -> dict:
    """Median/min/max seconds of ``fn()`` over ``repeats`` samples after ``warmup`` calls.

    A sample runs ``fn`` ``inner`` times (chosen so a sample lasts at least ``min_sample_s``, for sub-millisecond
    calls) and counts the mean; ``gc`` is off while timing. (:func:`time_interleaved` with one callable.)
    """
    return time_interleaved([fn], repeats=repeats, warmup=warmup, min_sample_s=min_sample_s,
                            max_inner=max_inner)[0]


def time_interleaved(fns, repeats: int = 5, warmup: int = 1, min_sample_s: float = 0.0, max_inner: int = 64,
                     settle_s=None):
    """Like :func:`time_fn` for several callables at once, sampled round-robin (sample 1 of each, then sample 2
    of each, ...) so that a burst of load from other processes hits all of them alike. Returns one dict each.

    ``settle_s`` (one number per callable, or None): before each sample of that callable, call it untimed for
    that many seconds. OpenBLAS's worker threads busy-wait ~0.1 s after a multi-threaded product; sampled right
    after one, numba's or PyTorch's threads would lose a core to them and the slowdown would be charged to the
    wrong column. (Sleeping instead does not work on the reference machine: a vCPU that idles for 0.1 s comes
    back slowly, and the next sample ran 2-4x slower.)"""
    settle = list(settle_s) if settle_s is not None else [0.0] * len(fns)
    inners = []
    for fn in fns:
        for _ in range(warmup):
            fn()
        inner = 1
        if min_sample_s > 0:
            t0 = time.perf_counter()
            fn()
            one = time.perf_counter() - t0
            if one < min_sample_s:
                inner = int(min(max_inner, max(1, min_sample_s / max(one, 1e-7))))
        inners.append(inner)
    samples = [[] for _ in fns]
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(max(1, repeats)):
            for fn, inner, out, warm_s in zip(fns, inners, samples, settle):
                t_warm = time.perf_counter() + warm_s
                while time.perf_counter() < t_warm:
                    fn()
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                out.append((time.perf_counter() - t0) / inner)
    finally:
        if gc_was:
            gc.enable()
    return [{"median_s": statistics.median(s), "min_s": min(s), "max_s": max(s), "repeats": len(s), "inner": i}
            for s, i in zip(samples, inners)]


# ------------------------------------------------------------------------------------------------ memory
_memory_mode_set = False


def prepare_memory_measurement() -> None:
    """Make glibc return every large block to the OS on free (fixed mmap threshold), so a call's peak RSS rise is
    its real peak. Affects speed a little: call it after the timings, before ``peak_memory``."""
    global _memory_mode_set
    if _memory_mode_set:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD: blocks >= 256 KiB are mmap'ed and unmapped on free
        libc.mallopt(-1, 256 * 1024)  # M_TRIM_THRESHOLD
        _memory_mode_set = True
    except Exception:
        pass


def _status_kib(field: str) -> int | None:
    try:
        m = re.search(rf"{field}:\s+(\d+)", open("/proc/self/status").read())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def peak_memory(fn) -> dict:
    """Peak extra memory of one ``fn()`` call, two ways.

    * ``traced_mb``: peak of tracemalloc (numpy arrays and numba's NRT arrays are tracked; torch's are not),
      relative to the start of the call: everything the call allocates, the result included.
    * ``rss_mb``: rise of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) above the
      resident set before the call: every allocator (torch too), page-granular. None where unsupported.
    """
    gc.collect()
    rss = None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS")
        rss = True
    except OSError:
        before = None
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        result = fn()
        del result
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out = {"traced_mb": (peak - base) / 1e6}
    if rss:
        after = _status_kib("VmHWM")
        out["rss_mb"] = max(0, after - before) * 1024 / 1e6 if after is not None else None
    else:
        out["rss_mb"] = None
    return out


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (resource.getrusage; KiB on Linux)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


# ------------------------------------------------------------------------------------------------ output
def format_table(rows: list[dict], columns: list[tuple[str, str]], title: str | None = None) -> str:
    """``columns``: (key, header). Numbers are right-aligned; missing values print as '-'."""
    cells = []
    for r in rows:
        line = []
        for key, _ in columns:
            v = r.get(key)
            if v is None:
                s = "-"
            elif isinstance(v, float):
                s = fmt_num(v)
            else:
                s = str(v)
            line.append(s)
        cells.append(line)
    heads = [h for _, h in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    numeric = [all(_is_num(r.get(k)) for r in rows if r.get(k) is not None) for k, _ in columns]

    def fmt(line):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric))

    out = []
    if title:
        out.append(title)
    out.append(fmt(heads))
    out.append("  ".join("-" * w for w in widths))
    out.extend(fmt(c) for c in cells)
    return "\n".join(out)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fmt_num(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.2g}"


def write_json(path: str, payload: dict) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_csv(path: str, rows: list[dict]) -> None:
    import csv

    keys = []
    for r in rows:
        for k in r:
            if k not in keys and not isinstance(r[k], (dict, list)):
                keys.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def blas_env_stripped() -> dict:
    """A copy of os.environ without the BLAS tuning variables (for the 'both settings' comparison subprocess)."""
    env = dict(os.environ)
    for k in BLAS_TUNING_VARS:
        env.pop(k, None)
    return env
