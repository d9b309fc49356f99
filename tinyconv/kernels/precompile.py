"""Compile the numba kernels a computation will call before it runs, shared out between processes (the cold start).

A first run on a cold numba cache compiles every kernel it meets, one after the other, on one core (numba holds
one compiler lock per process). Most of that time is LLVM's; several processes compile different kernels at once,
and each kernel lands in numba's on-disk cache, where the other processes load it in milliseconds. Three steps:

* :func:`record` runs a function (a *dry run*: e.g. one training step on a copy of the model) with every
  tinyconv kernel replaced by a recorder that notes which kernel was called with which argument types and
  returns at once, so nothing compiles and nothing is computed. The dry run's own numbers are garbage by
  design: it must run on copies, and its only product is the list of :class:`KernelCall`.
* :func:`missing` keeps the calls that numba's cache cannot answer (a warm cache: none, and nothing else happens).
* :func:`compile_ahead` starts ``python -m tinyconv.kernels.precompile`` helpers and compiles alongside them:
  every process walks the same list, costliest first, and takes the next call nobody has claimed yet (a claim is
  a file created exclusively), so the processes end within about one call of each other whatever each call
  really costs; then it waits for the helpers.

Kernels are compiled for exactly the argument types the real run will pass, so the run itself only loads them.
Results do not depend on any of this: the same kernels run, compiled by the same compiler for the same CPU.
"""
from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

__all__ = ["KernelCall", "Report", "record", "missing", "by_cost", "claim_and_compile", "compile_calls", "compile_ahead",
           "default_processes", "compile_events", "recording"]


@dataclass(frozen=True)
class KernelCall:
    """One kernel and the numba types of its arguments: ``getattr(import_module(module), name)`` compiled for
    ``signature``."""

    module: str
    name: str
    signature: tuple

    def dispatcher(self):
        return getattr(importlib.import_module(self.module), self.name)


@contextmanager
def compile_events(on_start, on_end):
    """Inside the block, ``on_start(dispatcher)`` and ``on_end(dispatcher)`` around each numba compilation, in the
    thread that compiles (a kernel compiled as part of another nests: start, start, end, end), through numba's
    event API; loading a kernel from numba's cache is not a compilation. Nothing where numba has no such API."""
    try:
        from numba.core import event
    except ImportError:  # pragma: no cover - numba is a dependency; its event API is internal-ish
        yield
        return

    class _Listener(event.Listener):  # numba insists on its own base class
        def on_start(self, ev):
            on_start(ev.data.get("dispatcher"))

        def on_end(self, ev):
            on_end(ev.data.get("dispatcher"))

    with event.install_listener("numba:compile", _Listener()):
        yield


def _dispatchers() -> list:
    """``(module, attribute, dispatcher)`` for every numba dispatcher bound at module level in tinyconv."""
    from numba.core.dispatcher import Dispatcher

    found = []
    for mname, mod in list(sys.modules.items()):
        if mod is None or not (mname == "tinyconv" or mname.startswith("tinyconv.")):
            continue
        for attr, value in list(vars(mod).items()):
            if isinstance(value, Dispatcher):
                found.append((mname, attr, value))
    return found


class _Recorder:
    """Stands in for a dispatcher during :func:`record`: notes the call's argument types, computes nothing."""

    def __init__(self, dispatcher, calls: list):
        self.dispatcher, self.calls = dispatcher, calls

    def __call__(self, *args, **kwargs):
        from numba import typeof

        if kwargs:
            raise TypeError("precompile.record: tinyconv's kernels are called with positional arguments only")
        self.calls.append((self.dispatcher, tuple(typeof(a) for a in args)))


_recording = threading.local()


def recording() -> bool:
    """Whether this thread is inside :func:`record` (its kernels compute nothing: nothing may be measured)."""
    return getattr(_recording, "depth", 0) > 0


def record(fn) -> list[KernelCall]:
    """Run ``fn()`` with tinyconv's kernels replaced by recorders; return the calls it made, first ones first,
    each (kernel, argument types) once. ``fn`` must work on copies: every array a kernel would have written keeps
    what it held (``np.empty``'s garbage), so whatever ``fn`` computes is meaningless. Floating-point warnings from
    that garbage are silenced; kernels called from Python with a result are not supported (none is)."""
    calls, patched, recorders = [], [], {}
    for mname, attr, disp in _dispatchers():
        rec = recorders.setdefault(id(disp), _Recorder(disp, calls))
        setattr(sys.modules[mname], attr, rec)
        patched.append((mname, attr, disp))
    _recording.depth = getattr(_recording, "depth", 0) + 1
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    finally:
        _recording.depth -= 1
        for mname, attr, disp in patched:
            setattr(sys.modules[mname], attr, disp)
    out, seen = [], set()
    for disp, sig in calls:
        call = KernelCall(disp.py_func.__module__, disp.py_func.__name__, sig)
        if call not in seen:
            seen.add(call)
            out.append(call)
    return out


def missing(calls) -> list[KernelCall]:
    """The calls that are neither compiled in this process nor in numba's on-disk cache."""
    out = []
    for call in calls:
        disp = call.dispatcher()
        if disp.overloads.get(call.signature) is not None:
            continue
        try:
            cached = disp._cache.load_overload(call.signature, disp.targetctx)
        except Exception:  # numba's cache API is internal: when it changes, treat the call as missing
            cached = None
        if cached is None:
            out.append(call)
    return out


def _code_size(disp, seen: set) -> int:
    """Bytecode size of a kernel and of the kernels it calls (compiled with it), each once."""
    from numba.core.dispatcher import Dispatcher

    if id(disp) in seen:
        return 0
    seen.add(id(disp))
    code = disp.py_func.__code__
    return len(code.co_code) + sum(_code_size(g, seen) for name in code.co_names
                                   if isinstance(g := disp.py_func.__globals__.get(name), Dispatcher))


def _cost(call: KernelCall) -> float:
    """A rough compile time in seconds: a fixed part (larger for a parallel kernel, whose loops numba turns into a
    thread pool's tasks) and a part that grows with the code, callees included. Only the claiming order
    uses it."""
    disp = call.dispatcher()
    fixed = 0.3 if disp.targetoptions.get("parallel") else 0.05
    return fixed + 5e-4 * _code_size(disp, set())


def by_cost(calls) -> list[KernelCall]:
    """``calls`` costliest first (by :func:`_cost`; ties in recording order): the order every process claims them
    in, so that the long compilations start first and the last ones to finish are short."""
    return [c for _, _, c in sorted(((_cost(c), -k, c) for k, c in enumerate(calls)), reverse=True)]


def claim_and_compile(calls, claims: str) -> list[KernelCall]:
    """Compile, in order, each of ``calls`` that no other process has claimed, and return those. A claim on call
    ``i`` is creating the file ``claims/i`` exclusively, which exactly one process can do."""
    mine = []
    for i, call in enumerate(calls):
        try:
            os.close(os.open(os.path.join(claims, str(i)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        call.dispatcher().compile(call.signature)
        mine.append(call)
    return mine


def compile_calls(calls) -> None:
    """Compile (or load from the cache) every call, in this process."""
    for call in calls:
        call.dispatcher().compile(call.signature)


@dataclass
class Report:
    """What :func:`compile_ahead` did: kernels compiled here and in the helper process, and the wall time."""

    here: int = 0
    helper: int = 0
    seconds: float = 0.0
    helper_error: str | None = None
    helper_calls: list = field(default_factory=list)  # what the helpers compiled (this process loads them)


def default_processes() -> int:
    """How many processes :func:`compile_ahead` uses: the cores this process may run on, at most 4 (each helper
    pays an interpreter start and tinyconv's import first)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def compile_ahead(calls, processes: int | None = None) -> Report:
    """Compile the ``calls`` that numba's cache lacks, ``processes`` (default :func:`default_processes`) at a
    time: this process and ``processes - 1`` helpers (``python -m tinyconv.kernels.precompile``) each take the
    next unclaimed call, costliest first (:func:`claim_and_compile`). A helper that fails only costs time: what it
    never claimed this process compiles, and what it claimed and left compiles on its first call, as without any
    of this."""
    t0 = time.perf_counter()
    processes = default_processes() if processes is None else processes
    todo = missing(calls)
    report = Report()
    if len(todo) < 2 or processes < 2:
        compile_calls(todo)
        report.here, report.seconds = len(todo), time.perf_counter() - t0
        return report
    todo = by_cost(todo)
    # the helper imports this tinyconv, wherever the parent found it
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    helpers = []
    with tempfile.TemporaryDirectory(prefix="tinyconv-claims-") as claims:
        try:
            for _ in range(processes - 1):
                err = tempfile.TemporaryFile()
                p = subprocess.Popen([sys.executable, "-m", "tinyconv.kernels.precompile"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=err, env=env)
                helpers.append((p, err))
                p.stdin.write(pickle.dumps((todo, claims)))  # between our own processes: not a file anyone reads
                p.stdin.close()
            mine = claim_and_compile(todo, claims)
            report.here = len(mine)
            failed = False
            for p, err in helpers:
                if p.wait() != 0:
                    failed = True
                    err.seek(0)
                    lines = err.read().decode(errors="replace").strip().splitlines()
                    report.helper_error = lines[-1] if lines else f"exit status {p.returncode}"
            if not failed:
                report.helper_calls = [c for c in todo if c not in mine]
                report.helper = len(report.helper_calls)
        finally:
            for p, err in helpers:
                if p.poll() is None:  # interrupted while a helper still compiles: its work is of no use to anyone
                    p.kill()
                    p.wait()
                err.close()
    report.seconds = time.perf_counter() - t0
    return report


def main() -> int:
    """The helper process: claim and compile calls of the pickled ``(calls, claims folder)`` on stdin."""
    calls, claims = pickle.loads(sys.stdin.buffer.read())
    claim_and_compile(calls, claims)
    return 0


if __name__ == "__main__":
    sys.exit(main())
