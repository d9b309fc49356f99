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
ENV_PATTERNS = ("OPENBLAS_", "GOTO", "OMP_", "MKL_", "NUMBA_", "BLIS_", "VECLIB_", "NUMEXPR_", "KMP_",
                "ATEN_CPU_CAPABILITY", "ONEDNN_", "DNNL_")  # the last three: PyTorch's vector width
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
def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo_field(text: str, *names: str) -> str | None:
    """The first value of a ``name : value`` line of /proc/cpuinfo text, for the first of ``names`` present."""
    for name in names:
        m = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", text, re.M)
        if m and m.group(1).strip():
            return m.group(1).strip()
    return None


#: ARM's "CPU implementer" codes of /proc/cpuinfo (aarch64 Linux prints no model name)
ARM_IMPLEMENTERS = {"0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x46": "Fujitsu", "0x48": "HiSilicon",
                    "0x4e": "NVIDIA", "0x51": "Qualcomm", "0x61": "Apple", "0xc0": "Ampere"}


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo text (read from the file when None); on ARM, where Linux prints no
    model name, the implementer and part numbers."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    model = _cpuinfo_field(text, "model name", "Model name", "Hardware")
    if model:
        return model
    implementer = _cpuinfo_field(text, "CPU implementer")
    if implementer:
        part = _cpuinfo_field(text, "CPU part")
        return f"{ARM_IMPLEMENTERS.get(implementer.lower(), 'ARM implementer ' + implementer)}" + (
            f" part {part}" if part else "")
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The instruction-set flags of /proc/cpuinfo text: x86's ``flags`` line, ARM's ``Features`` line."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    return set((_cpuinfo_field(text, "flags", "Features") or "").split())


#: widest vector instruction set first; each is named by one flag of /proc/cpuinfo or one LLVM feature
VECTOR_WIDTHS = (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx"), ("sve", "sve"), ("neon", "asimd"),
                 ("neon", "neon"), ("sse", "sse2"))
#: LLVM CPU names -> the widest vectors that CPU has, for NUMBA_CPU_NAME set with empty NUMBA_CPU_FEATURES
_LLVM_CPU_WIDTHS = (("avx512", r"skylake-avx512|cascadelake|cooperlake|cannonlake|icelake|tigerlake|rocketlake|"
                               r"sapphirerapids|emeraldrapids|graniterapids|diamondrapids|znver[45]|x86-64-v4"),
                    ("avx2", r"haswell|broadwell|skylake|alderlake|raptorlake|meteorlake|arrowlake|lunarlake|"
                             r"znver[123]|x86-64-v3"),
                    ("avx", r"sandybridge|ivybridge|btver2|bdver"),
                    ("sse", r"x86-64|x86-64-v2|nehalem|westmere|core2|generic"))


def vector_width(features) -> str:
    """The widest vectors named by a set of flags: ``"avx512"``, ``"avx2"``, ``"avx"``, ``"sve"``, ``"neon"``,
    ``"sse"``, or ``"unknown"``. ``features`` is an iterable of names (/proc/cpuinfo's flags) or an LLVM feature
    string (``"+avx2,-avx512f,..."``, where only the ``+`` ones count)."""
    if isinstance(features, str):
        features = [f[1:] for f in features.split(",") if f.startswith("+")]
    have = {f.lower() for f in features}
    return next((width for width, flag in VECTOR_WIDTHS if flag in have), "unknown")


def numba_target() -> dict | None:
    """The CPU numba compiles for and its vector width: the host's, unless ``NUMBA_CPU_NAME`` /
    ``NUMBA_CPU_FEATURES`` force another (both recorded). None in a PyTorch worker (no numba there)."""
    if in_torch_worker():
        return None
    out = {"NUMBA_CPU_NAME": os.environ.get("NUMBA_CPU_NAME"),
           "NUMBA_CPU_FEATURES": os.environ.get("NUMBA_CPU_FEATURES")}
    try:
        from llvmlite import binding
        from numba.core import codegen, config
    except Exception as e:  # pragma: no cover - numba is a dependency
        return dict(out, error=repr(e))
    name = config.CPU_NAME or binding.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else codegen.get_host_cpu_features()
    width = vector_width(features)
    if not features and config.CPU_NAME:  # empty feature string: LLVM takes the named CPU's own features
        width = next((w for w, pat in _LLVM_CPU_WIDTHS if re.fullmatch(pat, name.lower())), "unknown")
    return dict(out, cpu_name=name, vector_width=width)


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", " ", text.lower())
    text = re.sub(r"@.*$|\b\d+-core\b|\bcpu\b|\bprocessor\b|\b(with|w/)\s.*$", " ", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40].strip("-") or "cpu"


def machine_slug(model: str, width: str, numba_width: str | None = None) -> str:
    """A short file-name-safe name of a machine: its CPU model and vector width, e.g. ``amd-epyc_avx512``; with
    ``_numba-<width>`` added when numba was made to compile for other vectors than the CPU has."""
    slug = f"{_slug(model)}_{width}"
    if numba_width and numba_width != width:
        slug += f"_numba-{numba_width}"
    return slug


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except Exception:
        return None


def git_dirty() -> bool | None:
    """Whether the code differs from the commit: a tracked Python file, setup.cfg or pyproject.toml changed (None
    without git). Documents and result files do not count."""
    try:
        p = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no", "--", "*.py",
                            "setup.cfg", "pyproject.toml"], capture_output=True, text=True, timeout=10)
        return bool(p.stdout.strip()) if p.returncode == 0 else None
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
    wrong column. (Sleeping instead does not work on a virtual machine whose idle vCPU comes back slowly: the
    next sample would be charged for the wake-up.)"""
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
    """A GitHub-markdown table (numbers right-aligned, ``fmt_num``; missing values '-').
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


# ------------------------------------------------------------------------------------------- result files
#: The benchmarks that save a result file, in the order the figures show them: name -> (title, target). The target
#: is the ratio tinyconv's time / PyTorch's that the project aims for (drawn as a dashed line), None for none.
BENCHMARKS = {
    "epoch": ("MNIST training run, whole process (bench_epoch.py)", 0.5),
    "lenet": ("LeNet training step (bench_lenet.py)", 0.5),
    "conv": ("convolution and pooling kernels (bench_conv.py)", 0.8),
    "resnet": ("ResNet training step (bench_resnet.py)", 0.8),
    "d2l_ch7": ("d2l chapter 7 networks, forward + backward (bench_d2l_ch7.py)", 1.0),
}
#: A headline row's own target where it differs from its benchmark's rows' (chapter 7: each network at most 1.0x,
#: the sum over them at most 0.8x).
HEADLINE_TARGETS = {"d2l_ch7": 0.8}
#: Where result files go: RESULTS_DIR/<benchmark>/<date>_<machine slug>_<commit>.json
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")
#: Environment variable naming another folder for them (the tests point it at a temporary one)
RESULTS_ENV = "TINYCONV_BENCH_RESULTS"
RESULT_SCHEMA = 1
RESULT_KEYS = ("schema", "benchmark", "date", "commit", "commit_dirty", "command", "quick", "machine", "versions",
               "rows", "details")
#: every row has these; a row may add others (group, kernel, headline, ratio_min, ratio_max, ...)
ROW_KEYS = ("what", "unit", "tinyconv_median", "tinyconv_min", "tinyconv_max", "torch_median", "torch_min",
            "torch_max", "ratio")
MACHINE_KEYS = ("slug", "cpu", "vector_width", "numba_target", "logical_cpus", "usable_cpus", "threads",
                "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "blas_core")


class ResultFileError(ValueError):
    """A result file that is not what ``save_result`` writes; the message starts with the file's path."""


def result_row(what: str, unit: str, tinyconv, torch=None, ratio="medians", **extra) -> dict:
    """One row of a result file. ``tinyconv`` and ``torch``: (median, min, max), a :func:`spread` dict, or None.
    ``ratio``: by default tinyconv's median over PyTorch's (None without both); None where no ratio means
    anything (an accuracy)."""
    def triple(v):
        if v is None:
            return (None, None, None)
        if isinstance(v, dict):
            return (v.get("median"), v.get("min"), v.get("max"))
        return tuple(v)

    (tm, tlo, thi), (pm, plo, phi) = triple(tinyconv), triple(torch)
    if ratio == "medians":
        ratio = tm / pm if tm is not None and pm else None
    row = dict(what=what, unit=unit, tinyconv_median=tm, tinyconv_min=tlo, tinyconv_max=thi, torch_median=pm,
               torch_min=plo, torch_max=phi, ratio=ratio)
    row.update(extra)
    return row


def result_machine(info: dict, threads, cpuinfo: str | None = None) -> dict:
    """The ``machine`` of a result file, from :func:`machine_info`'s ``info`` and the threads each framework used."""
    width = vector_width(cpu_flags(cpuinfo))
    target = numba_target()
    env = info.get("env", {})
    blas = info.get("blas", {})
    return {"slug": machine_slug(info["cpu"], width, (target or {}).get("vector_width")), "cpu": info["cpu"],
            "vector_width": width, "numba_target": target, "logical_cpus": info.get("logical_cpus"),
            "usable_cpus": info.get("usable_cpus"), "threads": threads,
            "OPENBLAS_CORETYPE": env.get("OPENBLAS_CORETYPE"), "OPENBLAS_L2_SIZE": env.get("OPENBLAS_L2_SIZE"),
            "blas_core": blas.get("core"), "memory_gib": info.get("memory_gib"), "platform": info.get("platform"),
            "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def save_result(benchmark: str, payload: dict, rows: list[dict], *, threads=None, torch_version: str | None = None,
                command: list[str] | None = None, results_dir: str | None = None, quick: bool = False,
                info: dict | None = None) -> str:
    """Write one benchmark run as ``results_dir/<benchmark>/<date>_<machine slug>_<commit>.json`` (the schema:
    ``RESULT_KEYS``, rows with ``ROW_KEYS``, the benchmark's whole payload under ``details``) and return its path.

    ``info``: :func:`machine_info` of this run (computed when None); ``command``: the argv (default sys.argv)."""
    import datetime

    if benchmark not in BENCHMARKS:
        raise ValueError(f"save_result: unknown benchmark {benchmark!r}; expected one of {sorted(BENCHMARKS)}")
    info = info or machine_info(torch_version)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    commit, dirty = git_commit(), git_dirty()
    blas = info.get("blas", {})
    result = {
        "schema": RESULT_SCHEMA, "benchmark": benchmark, "date": now.isoformat(), "commit": commit,
        "commit_dirty": dirty, "command": list(sys.argv if command is None else command), "quick": bool(quick),
        "machine": result_machine(info, threads if threads is not None else default_threads()),
        "versions": {"python": info.get("python"), "numpy": info.get("numpy"), "numba": info.get("numba"),
                     "torch": info.get("torch") or torch_version, "tinyconv": info.get("tinyconv"),
                     "blas": f"{blas.get('name')} {blas.get('runtime_version') or blas.get('version')}"},
        "rows": rows, "details": payload,
    }
    result = json.loads(json.dumps(result, default=_json_default))  # what a reader will get back
    validate_result(result, f"save_result({benchmark!r})")
    folder = os.path.join(results_dir or RESULTS_DIR, benchmark)
    os.makedirs(folder, exist_ok=True)
    stem = f"{now.strftime('%Y-%m-%dT%H%M%SZ')}_{result['machine']['slug']}_{commit or 'nogit'}" + (
        "-dirty" if dirty else "")
    path, n = os.path.join(folder, stem + ".json"), 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(folder, f"{stem}-{n}.json")
    write_json(path, result)
    return path


def add_result_arguments(ap) -> None:
    """``--no-save`` and ``--results-dir``: the options of every benchmark that saves a result file."""
    ap.add_argument("--no-save", action="store_true", help="do not write the result file")
    ap.add_argument("--results-dir", metavar="DIR",
                    help=f"folder for the result file (default: ${RESULTS_ENV}, else benchmarks/results; a --quick "
                         "run writes one only when this or the variable names a folder)")


def command(script: str, argv: list[str] | None = None) -> list[str]:
    """A benchmark's command line as a result file records it: the script relative to the repository, its
    arguments (``sys.argv[1:]`` when ``argv`` is None)."""
    return [os.path.relpath(os.path.abspath(script), REPO_ROOT), *(sys.argv[1:] if argv is None else argv)]


def save_if_asked(args, benchmark: str, payload: dict, rows: list[dict], **kw) -> str | None:
    """Save the result as ``args`` say (:func:`add_result_arguments`): a full run into ``--results-dir``,
    ``$TINYCONV_BENCH_RESULTS`` or benchmarks/results; a ``--quick`` run never into benchmarks/results."""
    where = args.results_dir or os.environ.get(RESULTS_ENV)
    quick = bool(getattr(args, "quick", False))
    if args.no_save or (quick and not where):
        return None
    path = save_result(benchmark, payload, rows, results_dir=where, quick=quick, **kw)
    print(f"result saved: {path}")
    return path


def validate_result(d, source: str) -> None:
    """Raise :class:`ResultFileError` naming ``source`` unless ``d`` has the schema ``save_result`` writes."""
    def bad(msg):
        raise ResultFileError(f"{source}: {msg}")

    if not isinstance(d, dict):
        bad(f"expected a JSON object with keys {list(RESULT_KEYS)}, got {type(d).__name__}")
    missing = [k for k in RESULT_KEYS if k not in d]
    if missing:
        bad(f"missing keys {missing} (a result file has {list(RESULT_KEYS)})")
    if d["schema"] != RESULT_SCHEMA:
        bad(f"schema {d['schema']!r}, this code reads schema {RESULT_SCHEMA}")
    if not isinstance(d["benchmark"], str) or not d["benchmark"]:
        bad(f"'benchmark' must be a name, got {d['benchmark']!r}")
    import datetime

    try:
        datetime.datetime.fromisoformat(d["date"])
    except (TypeError, ValueError):
        bad(f"'date' must be an ISO 8601 date and time, got {d['date']!r}")
    machine = d["machine"]
    if not isinstance(machine, dict) or [k for k in MACHINE_KEYS if k not in machine]:
        bad(f"'machine' must be an object with keys {list(MACHINE_KEYS)}, got {machine!r:.200}")
    if not isinstance(machine["slug"], str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", machine["slug"]):
        bad(f"machine 'slug' must be a lower-case file-name-safe name, got {machine['slug']!r}")
    if not isinstance(d["rows"], list):
        bad(f"'rows' must be a list of objects, got {type(d['rows']).__name__}")
    for i, row in enumerate(d["rows"]):
        if not isinstance(row, dict) or [k for k in ROW_KEYS if k not in row]:
            bad(f"row {i} must be an object with keys {list(ROW_KEYS)}, got {row!r:.200}")
        if not isinstance(row["what"], str) or not isinstance(row["unit"], str):
            bad(f"row {i}: 'what' and 'unit' must be strings, got {row['what']!r} and {row['unit']!r}")
        for k in ROW_KEYS[2:]:
            v = row[k]
            if v is not None and (not _is_num(v) or v != v):
                bad(f"row {i} ({row['what']}): {k!r} must be a number or null, got {v!r}")
        if row["ratio"] is not None and row["ratio"] <= 0:
            bad(f"row {i} ({row['what']}): 'ratio' must be positive, got {row['ratio']!r}")


def load_result(path: str) -> dict:
    """One result file, checked; :class:`ResultFileError` naming the file when it is not one."""
    try:
        with open(path) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise ResultFileError(f"{path}: not valid JSON ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultFileError(f"{path}: cannot be read ({e})") from None
    validate_result(d, path)
    return d


def load_results(root: str | None = None) -> list[tuple[str, dict]]:
    """(path, result) of every ``*.json`` under ``root`` (default: benchmarks/results), sorted by path."""
    root = root or RESULTS_DIR
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".json"))
    return [(p, load_result(p)) for p in paths]


def blas_env_stripped() -> dict:
    """A copy of os.environ without the BLAS tuning variables (for the 'both settings' comparison subprocess)."""
    env = dict(os.environ)
    for k in BLAS_TUNING_VARS:
        env.pop(k, None)
    return env
