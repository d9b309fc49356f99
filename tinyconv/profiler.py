"""A small built-in profiler: where does a training step spend its time?

::

    import tinyconv as tc

    with tc.profile(model) as prof:                 # model is optional: it adds per-layer scopes
        for x, y in batches:
            with tc.profiler.record("data loading"):
                x = tc.tensor(x)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            with tc.profiler.record("optimizer"):
                opt.step()
    print(prof.table(sort_by="total"))               # per op: calls, total / self / mean ms, % of wall time
    print(prof.table(group_by="scope"))              # per layer: conv1 forward, conv1 backward, ..., optimizer
    json.dump(prof.to_dict(), f)

What is timed (``time.perf_counter``):

* **ops** -- every :class:`~tinyconv.autograd.Function`'s ``forward`` (phase ``forward``) and, in
  ``Tensor.backward()``, every node's ``backward`` (phase ``backward``). The array work of the framework happens
  here. Each op is tagged with the *scope* it ran in: the innermost user region or module (when a model is given)
  that was open when its forward ran; its backward keeps that scope, so ``group_by="scope"`` splits the
  backward pass by layer too.
* **regions** -- ``with tc.profiler.record(name):`` blocks (cheap no-ops when no profiler is active).
* **modules** -- with ``profile(model)``, the forward of the model and of every sub-module, via forward
  (pre-)hooks that are removed again on exit. Hooked layers are never fused, so such a profile times a
  ``Sequential``'s ``Conv2d, ReLU, MaxPool2d`` one by one (the unfused reference path, see
  :func:`tinyconv.nn.set_fusion`); ``profile()`` without a model sees the fused node as one op.
* **engine** -- the whole ``backward()`` call; its *self* time (total minus the nodes' ``backward``) is the
  autograd engine's own overhead: graph sort, gradient accumulation, hooks.
* **compile** -- numba compiling a kernel (phase ``compile``, named by the kernel): the first call of a kernel on
  a cold numba cache, inside the op that called it. It is exclusive time like an op's and is taken out of that
  op's self time, so a first step's profile shows the compilation apart instead of as a very slow op. Loading a
  kernel from numba's cache is not a compilation and stays in the op.

Regions, modules and the engine are *inclusive*: their ``total`` contains the ops (and regions) run inside them.
Their ``self`` time excludes those, so e.g. a module's self time is the Python overhead of its ``forward`` (argument
checks, Tensor wrapping, graph recording) and the sum of all self times is the profiled wall time, minus
whatever ran outside every op and region ("untracked").

A ``Profile`` is an :class:`~tinyconv.autograd.Observer` of the engine, installed with
``tinyconv.autograd.set_observer`` while it is active; when no profiler is active the only cost is one ``is None``
test per op and per backward node; nothing else is installed. Profiling itself adds a few microseconds per op.
The profiler follows the thread that runs the graph; it is not meant for several threads at once.
"""
from __future__ import annotations

import threading
import time
import weakref
from contextlib import contextmanager

from . import autograd

__all__ = ["Profile", "profile", "record"]

_perf = time.perf_counter

# kinds of entries
OP, REGION, MODULE, ENGINE, COMPILE = "op", "region", "module", "engine", "compile"
EXCLUSIVE = (OP, COMPILE)  # kinds whose time is their own; the others contain what ran inside them
ENGINE_NAME = "autograd engine"
TOP_SCOPE = "(top level)"


class Profile(autograd.Observer):
    """Collects timings while active (use :func:`profile`); aggregates them per (kind, scope, name, phase).

    Parameters
    ----------
    model : Module, optional
        When given, the forward of this module and of each sub-module is timed (``kind == "module"``, named by
        dotted path and class, e.g. ``conv1 (Conv2d)``; the model itself by its class), and ops run inside
        a module are scoped to the innermost one.
    with_extra : bool
        Add a node's ``extra_repr()`` to the op name (e.g. ``Conv2d[kernel=numba]``) so variants are told apart.
    """

    def __init__(self, model=None, with_extra: bool = True):
        self.model = model
        self.with_extra = with_extra
        self.stats: dict[tuple, list] = {}  # key -> [count, total_s, self_s, min_s, max_s]
        self.wall_s = 0.0
        self._stack: list[list] = []  # one [child_seconds] per open op/region/module frame
        self._scopes: list[str] = [TOP_SCOPE]
        self._in_engine = False
        self._previous = None
        self._handles: list = []
        self._t0 = None
        self._active = False
        self._compiles = None  # the compile_events block while active
        self._compiling: list = []  # open compile frames: [frame, t0, depth] of the outermost compilation
        # (scope, name) of every node whose forward this profile timed, for its backward: kept here rather than
        # written onto the engine's nodes
        self._node_tags: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------------------------------ lifetime
    def __enter__(self) -> "Profile":
        if self._active:
            raise RuntimeError("this Profile is already active")
        self._previous = autograd.get_observer()
        self._stack, self._scopes, self._in_engine = [], [TOP_SCOPE], False
        if self.model is not None:
            self._install_module_hooks(self.model)
        self._active = True
        autograd.set_observer(self)
        self._listen_to_compiles()
        self._t0 = _perf()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s += _perf() - self._t0
        if self._compiles is not None:
            self._compiles.__exit__(None, None, None)
            self._compiles = None
        autograd.set_observer(self._previous)
        self._previous = None
        self._active = False
        for h in self._handles:
            h.remove()
        self._handles = []
        self._stack, self._scopes = [], [TOP_SCOPE]

    def reset(self) -> None:
        """Forget everything recorded so far (e.g. after warm-up steps); keeps profiling if active."""
        self.stats = {}
        self.wall_s = 0.0
        if self._active:
            self._t0 = _perf()

    # ------------------------------------------------------------------------------------------ recording
    def _add(self, key, dt: float, self_dt: float) -> None:
        s = self.stats.get(key)
        if s is None:
            self.stats[key] = [1, dt, self_dt, dt, dt]
        else:
            s[0] += 1
            s[1] += dt
            s[2] += self_dt
            if dt < s[3]:
                s[3] = dt
            if dt > s[4]:
                s[4] = dt

    def _op_name(self, node) -> str:
        name = type(node).__name__
        if self.with_extra:
            try:
                extra = node.extra_repr()
            except Exception:  # extra_repr may read attributes that forward did not set
                extra = ""
            if extra:
                name = f"{name}[{extra}]"
        return name

    def _timed(self, fn, *args):
        """Run ``fn(*args)`` as a frame; return (result, seconds, seconds spent in nested frames)."""
        stack = self._stack
        frame = [0.0]
        stack.append(frame)
        t0 = _perf()
        try:
            out = fn(*args)
        finally:
            dt = _perf() - t0
            stack.pop()
            if stack:
                stack[-1][0] += dt
        return out, dt, frame[0]

    # ------------------------------------------------------------------------ the engine's Observer callbacks
    def call_forward(self, cls, ctx, arrays, params):
        """Times ``cls.forward(ctx, *arrays, **params)`` for ``Function.apply``."""
        out, dt, child = self._timed(lambda: cls.forward(ctx, *arrays, **params))
        scope = self._scopes[-1]
        name = self._op_name(ctx)
        try:
            self._node_tags[ctx] = (scope, name)
        except TypeError:  # a Function with __slots__ and no weakref: its backward is reported at top level
            pass
        self._add((OP, scope, name, "forward"), dt, dt - child)
        return out

    def call_backward(self, node, grad):
        """Times ``node.backward(node, grad)`` for the backward loop."""
        out, dt, child = self._timed(node.backward, node, grad)
        scope, name = self._node_tags.get(node, (TOP_SCOPE, type(node).__name__))
        self._add((OP, scope, name, "backward"), dt, dt - child)
        return out

    def call_backward_pass(self, run, tensor, grad, retain_graph):
        """Times a whole ``backward()`` call as the engine entry (a backward started inside it, e.g. by a hook,
        is part of it)."""
        if self._in_engine:
            return run(tensor, grad, retain_graph)
        self._in_engine = True
        try:
            with self._frame(ENGINE, ENGINE_NAME, "backward", scope_name=ENGINE_NAME):
                return run(tensor, grad, retain_graph)
        finally:
            self._in_engine = False

    @contextmanager
    def _frame(self, kind: str, name: str, phase: str, scope_name: str | None = None):
        stack = self._stack
        frame = [0.0]
        stack.append(frame)
        self._scopes.append(scope_name or name)
        t0 = _perf()
        try:
            yield
        finally:
            dt = _perf() - t0
            self._scopes.pop()
            stack.pop()
            if stack:
                stack[-1][0] += dt
            self._add((kind, self._scopes[-1], name, phase), dt, dt - frame[0])

    def _listen_to_compiles(self) -> None:
        """Time numba's compilations (the outermost of nested ones) run by this thread as ``compile`` frames, while
        this profile is the one recording (a profile nested inside it records them instead)."""
        from .kernels.precompile import compile_events

        thread = threading.get_ident()

        def recording() -> bool:
            return threading.get_ident() == thread and autograd.get_observer() is self

        self._compiles = compile_events(lambda d: recording() and self._compile_started(),
                                        lambda d: recording() and self._compile_ended(d))
        self._compiles.__enter__()

    def _compile_started(self) -> None:
        if self._compiling:  # a kernel compiled as part of another: the outer compilation's time
            self._compiling.append(None)
            return
        frame = [0.0]
        self._stack.append(frame)
        self._compiling.append([frame, _perf(), len(self._stack)])

    def _compile_ended(self, dispatcher) -> None:
        if not self._compiling:
            return
        opened = self._compiling.pop()
        if opened is None:
            return
        frame, t0, depth = opened
        dt = _perf() - t0
        del self._stack[depth - 1:]
        if self._stack:
            self._stack[-1][0] += dt
        name = getattr(getattr(dispatcher, "py_func", None), "__name__", "numba kernel")
        self._add((COMPILE, self._scopes[-1], name, "compile"), dt, dt - frame[0])

    def _install_module_hooks(self, model) -> None:
        open_frames = {}

        for path, module in model.named_modules():
            label = f"{path} ({type(module).__name__})" if path else type(module).__name__

            def pre(mod, args, _label=label):
                frame = [0.0]
                self._stack.append(frame)
                self._scopes.append(_label)
                open_frames.setdefault(id(mod), []).append((frame, _perf(), len(self._stack)))

            def post(mod, args, out, _label=label):
                t1 = _perf()
                frames = open_frames.get(id(mod))
                if not frames:
                    return
                frame, t0, depth = frames.pop()
                dt = t1 - t0
                del self._stack[depth - 1:]  # also drops frames left open by an exception inside forward
                del self._scopes[depth:]
                if self._stack:
                    self._stack[-1][0] += dt
                self._add((MODULE, self._scopes[-1], _label, "forward"), dt, dt - frame[0])

            self._handles.append(module.register_forward_pre_hook(pre))
            self._handles.append(module.register_forward_hook(post))

    # ------------------------------------------------------------------------------------------ results
    def events(self) -> list[dict]:
        """One dict per (kind, scope, name, phase) with count and seconds (total, self, mean, min, max)."""
        out = []
        for (kind, scope, name, phase), (n, tot, slf, lo, hi) in self.stats.items():
            out.append(dict(kind=kind, scope=scope, name=name, phase=phase, count=n, total_s=tot, self_s=slf,
                            mean_s=tot / n, min_s=lo, max_s=hi))
        return out

    def _grouped(self, group_by: str) -> list[dict]:
        if group_by not in ("op", "scope", "scope_op"):
            raise ValueError(f"group_by must be 'op', 'scope' or 'scope_op', got {group_by!r}")
        rows: dict[tuple, dict] = {}
        for e in self.events():
            if e["kind"] == OP:
                label = {"op": e["name"], "scope": e["scope"], "scope_op": f"{e['scope']}/{e['name']}"}[group_by]
            else:
                label = e["name"]
            key = (e["kind"], label, e["phase"])
            r = rows.get(key)
            if r is None:
                rows[key] = dict(kind=e["kind"], name=label, phase=e["phase"], count=e["count"],
                                 total_s=e["total_s"], self_s=e["self_s"], min_s=e["min_s"], max_s=e["max_s"])
            else:
                r["count"] += e["count"]
                r["total_s"] += e["total_s"]
                r["self_s"] += e["self_s"]
                r["min_s"] = min(r["min_s"], e["min_s"])
                r["max_s"] = max(r["max_s"], e["max_s"])
        for r in rows.values():
            r["mean_s"] = r["total_s"] / r["count"]
        return list(rows.values())

    def summary(self) -> dict:
        """Wall time, time in ops (forward, backward), in numba's compilations, and outside every
        op/region/module ("untracked")."""
        fw = sum(s[2] for k, s in self.stats.items() if k[0] == OP and k[3] == "forward")
        bw = sum(s[2] for k, s in self.stats.items() if k[0] == OP and k[3] == "backward")
        compile_s = sum(s[2] for k, s in self.stats.items() if k[0] == COMPILE)
        inside = sum(s[2] for s in self.stats.values())
        wall = self.wall_s + (_perf() - self._t0 if self._active else 0.0)
        return dict(wall_s=wall, ops_forward_s=fw, ops_backward_s=bw, ops_s=fw + bw, compile_s=compile_s,
                    overhead_s=inside - fw - bw - compile_s, untracked_s=max(wall - inside, 0.0))

    def to_dict(self, group_by: str | None = None) -> dict:
        """Everything as plain JSON-able data: the summary and the events (raw, or grouped like ``table``)."""
        events = self.events() if group_by is None else self._grouped(group_by)
        return dict(summary=self.summary(), group_by=group_by, events=events)

    _SORT_KEYS = {"total": "total_s", "self": "self_s", "mean": "mean_s", "count": "count", "max": "max_s"}

    def table(self, sort_by: str = "total", group_by: str = "op", limit: int | None = None,
              per: int | None = None) -> str:
        """The aggregated timings as a text table (returned; ``print`` it).

        ``sort_by``: total | self | mean | count | max | name. ``group_by``: "op" (ops summed over scopes),
        "scope" (ops summed per layer/region: the per-layer split) or "scope_op". ``per``: also show ms per
        ``per`` units (e.g. the number of training steps profiled) in a "ms/step" column.
        """
        rows = self._grouped(group_by)
        if sort_by == "name":
            rows.sort(key=lambda r: (r["name"], r["phase"]))
        else:
            if sort_by not in self._SORT_KEYS:
                raise ValueError(f"sort_by must be one of {sorted(self._SORT_KEYS) + ['name']}, got {sort_by!r}")
            rows.sort(key=lambda r: r[self._SORT_KEYS[sort_by]], reverse=True)
        # ops first, then compilations (exclusive time), then the inclusive entries
        rows = ([r for r in rows if r["kind"] == OP] + [r for r in rows if r["kind"] == COMPILE]
                + [r for r in rows if r["kind"] not in EXCLUSIVE])
        if limit is not None:
            ops = [r for r in rows if r["kind"] == OP][:limit]
            rows = ops + [r for r in rows if r["kind"] != OP]
        summ = self.summary()
        wall = summ["wall_s"] or 1e-12
        head = ["kind", "scope" if group_by == "scope" else "name", "phase", "calls", "total ms", "self ms",
                "mean ms", "%wall"]
        if per:
            head.insert(5, "ms/step")
        table = []
        for r in rows:
            line = [r["kind"], r["name"], r["phase"], str(r["count"]), f"{r['total_s'] * 1e3:.2f}",
                    f"{r['self_s'] * 1e3:.2f}", f"{r['mean_s'] * 1e3:.3f}", f"{100 * r['self_s'] / wall:.1f}"]
            if per:
                line.insert(5, f"{r['total_s'] * 1e3 / per:.3f}")
            table.append(line)
        widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(head)]
        left = {0, 1, 2}

        def fmt(cells):
            return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        lines = [
            f"profile: wall {summ['wall_s'] * 1e3:.1f} ms; ops {summ['ops_s'] * 1e3:.1f} ms "
            f"(forward {summ['ops_forward_s'] * 1e3:.1f}, backward {summ['ops_backward_s'] * 1e3:.1f}); "
            + (f"numba compiling kernels {summ['compile_s'] * 1e3:.1f} ms; " if summ["compile_s"] else "")
            + f"self time of regions/modules/engine {summ['overhead_s'] * 1e3:.1f} ms; "
            f"untracked {summ['untracked_s'] * 1e3:.1f} ms",
            fmt(head),
            fmt(["-" * w for w in widths]),
        ]
        lines += [fmt(row) for row in table]
        lines.append("(ops and compile: exclusive time; region/module/engine: total is inclusive, self excludes the "
                     "ops and regions inside; %wall uses self time)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def profile(model=None, with_extra: bool = True) -> Profile:
    """Context manager that profiles everything run inside it: ``with tc.profile(model) as prof: ...``."""
    return Profile(model, with_extra=with_extra)


@contextmanager
def _record(prof, name):
    with prof._frame(REGION, name, "region"):
        yield


class _NullContext:
    __slots__ = ()

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NULL = _NullContext()


def record(name: str):
    """``with tc.profiler.record("data loading"):`` times a block as a named region (a no-op when not profiling).

    Ops run inside the block are scoped to it (see ``Profile.table(group_by="scope")``).
    """
    prof = autograd.get_observer()
    if not isinstance(prof, Profile):
        return _NULL
    return _record(prof, str(name))
