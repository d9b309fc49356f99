"""Shared helpers of the benchmark scripts: timing, thread control, memory peaks, machine description, tables.

Everything here works without PyTorch and without threadpoolctl/matplotlib. Importing this module imports
neither torch nor tinyconv/numba: processes that time tinyconv never hold PyTorch, and PyTorch worker processes
(``$TINYCONV_BENCH_TORCH_WORKER`` set) never hold tinyconv or numba.
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


#: Set in the PyTorch worker processes: there ``common`` never imports tinyconv or numba (lazy imports below).
TORCH_WORKER_ENV = "TINYCONV_BENCH_TORCH_WORKER"
#: Python interpreters that have the peers installed (each in its own environment); see benchmarks/README.md.
PEER_PYTHON_ENV = {"torch": "TINYCONV_BENCH_TORCH_PYTHON", "jax": "TINYCONV_BENCH_JAX_PYTHON",
                   "chainer": "TINYCONV_BENCH_CHAINER_PYTHON", "tinygrad": "TINYCONV_BENCH_TINYGRAD_PYTHON"}
#: The module each peer's interpreter must import.
PEER_MODULE = {"torch": "torch", "jax": "jax", "chainer": "chainer", "tinygrad": "tinygrad"}


def in_torch_worker() -> bool:
    return bool(os.environ.get(TORCH_WORKER_ENV))


def openblas():
    """threadpoolctl's controller of numpy's OpenBLAS (tinyconv.kernels.blas.openblas), or None; None in a PyTorch
    worker (no tinyconv there)."""
    if in_torch_worker():
        return None
    try:
        from tinyconv.kernels.blas import openblas as _openblas
    except Exception:
        return None
    return _openblas()


def torch_or_none():
    """The torch module if this process imported it (only PyTorch worker processes do), else None.

    The benchmarks never import torch into a process that times tinyconv: with both in one process, numba's
    OpenMP threads, OpenBLAS's and PyTorch's compete, and PyTorch's allocations raise glibc's malloc thresholds,
    which made tinyconv look faster than any user sees it."""
    return sys.modules.get("torch")


_peer_cache: dict = {}


def peer_python(peer: str, explicit: str | None = None) -> tuple[str | None, str]:
    """(interpreter, version) of a peer framework, or (None, why not).

    Looked up in order: ``explicit`` (a command-line flag), ``$TINYCONV_BENCH_<PEER>_PYTHON``, this interpreter.
    The check runs in a subprocess, so this process never imports the peer."""
    candidates = [c for c in (explicit, os.environ.get(PEER_PYTHON_ENV[peer])) if c] or [sys.executable]
    py = candidates[0]
    key = (peer, py)
    if key not in _peer_cache:
        mod = PEER_MODULE[peer]
        try:
            check = (f"import {mod}, importlib.metadata as m; "
                     f"print(getattr({mod}, '__version__', None) or m.version({mod!r}))")
            p = subprocess.run([py, "-c", check], capture_output=True,
                               text=True, timeout=120, env=peer_env())
            if p.returncode == 0:
                _peer_cache[key] = (py, p.stdout.strip().splitlines()[-1])
            else:
                why = (p.stderr.strip().splitlines() or ["?"])[-1]
                _peer_cache[key] = (None, f"{mod} not importable with {py} ({why}); set "
                                          f"{PEER_PYTHON_ENV[peer]} or pass --{peer}-python")
        except Exception as e:
            _peer_cache[key] = (None, f"{py}: {type(e).__name__}: {e}")
    return _peer_cache[key]


def peer_env(**extra) -> dict:
    """Environment of a peer worker: no tinyconv on the path, marked as a torch/peer worker."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env[TORCH_WORKER_ENV] = "1"
    env.update(extra)
    return env


def tinyconv_env(**extra) -> dict:
    """Environment of a tinyconv worker: this checkout first on the path, never marked as a torch worker."""
    env = {k: v for k, v in os.environ.items() if k != TORCH_WORKER_ENV}
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def run_process(cmd, env=None, cwd=None, timeout: float | None = None) -> dict:
    """Run ``cmd`` to its end and measure it from outside: wall seconds, and from ``wait4`` the child's own CPU
    seconds (user, sys), peak RSS and page faults. Minor page faults do not depend on the machine's load: they
    count fresh pages the process had the kernel map in (glibc returning freed memory costs them again)."""
    import tempfile
    import threading

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        timer = None
        if timeout:
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            if timer is not None:
                timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    scale = 1024 if sys.platform != "darwin" else 1
    return {"rc": proc.returncode, "stdout": stdout, "stderr": stderr, "wall_s": wall, "user_s": ru.ru_utime,
            "sys_s": ru.ru_stime, "peak_rss_mb": ru.ru_maxrss * scale / 2**20, "minflt": ru.ru_minflt,
            "majflt": ru.ru_majflt, "timed_out": timeout is not None and proc.returncode == -9 and wall >= timeout}


def load_note() -> str | None:
    """A warning when other processes keep the CPUs busy (1-minute load average above half the usable CPUs):
    wall-clock timings taken now say more about the neighbours than about the code."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cpus = default_threads()
    if load > 0.5 * cpus:
        return (f"load average {load:.1f} on {cpus} usable CPUs at the start: other processes are running, so the "
                f"timings are not representative (page faults, peak RSS and losses still are)")
    return None


def spread(values) -> dict:
    """median, min, max and count of a list of numbers (None when empty)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


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
        info["library"] = os.path.basename(lib.filepath)
        info["core"] = lib.architecture
        info["runtime_version"] = lib.version
        info["threads"] = lib.get_num_threads()
    try:
        import threadpoolctl

        info["threadpoolctl"] = threadpoolctl.threadpool_info() if not in_torch_worker() else None
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


def machine_info(torch_version: str | None = None) -> dict:
    """Everything that shapes the numbers: CPU, cores, library versions, BLAS, env vars that change BLAS/numba.
    ``torch_version``: PyTorch's version as its worker interpreter reported it (this process has no torch)."""
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
    if in_torch_worker():
        info["numba"] = None
    else:
        try:
            import numba

            info["numba"] = numba.__version__
        except Exception:
            info["numba"] = None
    torch = torch_or_none()
    info["torch"] = torch.__version__ if torch is not None else torch_version
    if torch is not None:
        try:
            info["torch_parallel"] = torch.__config__.parallel_info().splitlines()[:6]
        except Exception:
            pass
    if in_torch_worker():
        info["tinyconv"] = None
    else:
        try:
            import tinyconv

            info["tinyconv"] = getattr(tinyconv, "__version__", "?")
            info["malloc"] = _malloc_tuning()
        except Exception:
            info["tinyconv"] = None
    return info


def _malloc_tuning():
    try:
        from tinyconv import memory

        return memory.malloc_tuning()
    except Exception:  # a tinyconv without the module
        return None


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


def markdown_table(rows: list[dict], columns: list[tuple[str, str]], title: str | None = None) -> str:
    """A GitHub-markdown table (numbers right-aligned, ``fmt_num``; missing values '-'), for the READMEs.
    A cell may be a ready string (e.g. "1.23 (1.20–1.31)")."""
    def num(v):
        return _is_num(v) or isinstance(v, str) and re.match(r"^-?[\d.]+(×)?( \(.*\))?$", v) is not None

    numeric = [all(num(r.get(k)) for r in rows if r.get(k) is not None) and any(r.get(k) is not None for r in rows)
               for k, _ in columns]
    out = [title, ""] if title else []
    out.append("| " + " | ".join(h for _, h in columns) + " |")
    out.append("| " + " | ".join("---:" if n else "---" for n in numeric) + " |")
    for r in rows:
        cells = []
        for k, _ in columns:
            v = r.get(k)
            cells.append("-" if v is None else fmt_num(v) if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def with_spread(median, lo, hi, suffix: str = "") -> str | None:
    """'median (lo–hi)' with fmt_num, or just the median when there is no spread."""
    if median is None:
        return None
    s = fmt_num(median) + suffix
    if lo is not None and hi is not None and (lo != median or hi != median):
        s += f" ({fmt_num(lo)}–{fmt_num(hi)}{suffix})"
    return s


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
