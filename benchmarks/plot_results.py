"""Draw the saved benchmark results as figures: tinyconv's time over PyTorch's, per benchmark, per machine.

    python benchmarks/plot_results.py                     # benchmarks/results/*/*.json -> benchmarks/results/figures/
    python benchmarks/plot_results.py --results DIR --out DIR --format png,svg

Reads every result file under ``--results`` (what ``common.save_result`` writes; a file that is not one stops the
script with its path named), keeps the newest result of each benchmark on each machine (a machine is its slug:
CPU model and vector width), and draws

* ``<benchmark>.png``: one horizontal bar per row of the result and machine, the ratio tinyconv / PyTorch on a
  log scale (below 1: tinyconv is faster), with the spread of the ratio where the benchmark measured one, a line at
  1.0 and the benchmark's target (``common.BENCHMARKS``) as a dashed line;
* ``overview.png``: the headline row of every benchmark (the train seconds per epoch, the default LeNet step, the
  geometric mean of the convolutions, the ResNet step, the sum over chapter 7's networks), per machine, each with
  its target (``common.HEADLINE_TARGETS`` where a headline's differs from its rows').

The names are stable, so READMEs link them. ``--quick`` results (smoke runs) are left out unless
``--include-quick``. Needs matplotlib: ``pip install -e ".[plot]"``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402  (imports neither tinyconv nor torch)

FIGURES_DIR = os.path.join(common.RESULTS_DIR, "figures")
#: candidate ticks of the log-scaled ratio axis
XLABEL = "tinyconv / PyTorch, each row in its unit (log scale; below 1.0×: tinyconv faster or smaller)"
TICKS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)


def _figure_class():
    """matplotlib's Figure (drawn with the Agg canvas, no display needed), or SystemExit saying how to get it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit('plot_results.py needs matplotlib, which is not installed: pip install -e ".[plot]"') from None
    return Figure


def newest_per_machine(results, include_quick: bool = False) -> dict:
    """{benchmark: {machine slug: (path, result)}}: the newest result (by its date) of each benchmark on each
    machine among those with at least one ratio; ``--quick`` results only when ``include_quick``."""
    out: dict = {}
    for path, res in results:
        if (res["quick"] and not include_quick) or not any(r["ratio"] for r in res["rows"]):
            continue
        slot = out.setdefault(res["benchmark"], {})
        slug = res["machine"]["slug"]
        if slug not in slot or _date(res) > _date(slot[slug][1]):
            slot[slug] = (path, res)
    return out


def _date(res) -> datetime.datetime:
    d = datetime.datetime.fromisoformat(res["date"])
    return d if d.tzinfo else d.replace(tzinfo=datetime.timezone.utc)


def _ordered(benchmarks) -> list[str]:
    known = [b for b in common.BENCHMARKS if b in benchmarks]
    return known + sorted(b for b in benchmarks if b not in common.BENCHMARKS)


def _machine_label(res) -> str:
    m, v = res["machine"], res["versions"]
    commit = (res["commit"] or "no git") + (" + changes" if res["commit_dirty"] else "")
    return f"{m['slug']}: {m['cpu']}, {_threads(res)}; commit {commit}, {res['date'][:10]}; torch {v.get('torch') or '-'}"


def _threads(res):
    t = res["machine"]["threads"]
    n = t.get("threads") if isinstance(t, dict) else t
    return f"{n} thread{'' if n == 1 else 's'}"


def _ratio_axis(ax, values, targets) -> None:
    """Log-scaled x axis spanning ``values`` (ratios), 1.0 and the targets, ticks labelled '0.8×'."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    span = [v for v in values if v] + [1.0] + [t for t in targets if t]
    lo, hi = min(span) / 1.35, max(span) * 1.6  # room on the right for the value labels
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [t for t in TICKS if lo <= t <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(True, axis="x", alpha=0.3)


def _bars(ax, labels, series) -> list[float]:
    """Grouped horizontal bars: ``series`` is [(legend label, {row label: row})], one colour each. Returns every
    ratio drawn (for the axis range)."""
    n = len(series)
    height = 0.8 / max(1, n)
    drawn = []
    colours = [f"C{i % 10}" for i in range(n)]
    for i, (name, rows) in enumerate(series):
        for y, label in enumerate(labels):
            r = rows.get(label)
            if not r or not r["ratio"]:
                continue
            pos = y - 0.4 + height * (i + 0.5)
            ax.barh(pos, r["ratio"], height=height * 0.9, color=colours[i], label=name if name else None)
            name = None  # one legend entry per machine
            lo, hi = r.get("ratio_min"), r.get("ratio_max")
            if lo and hi and lo <= r["ratio"] <= hi:
                ax.errorbar(r["ratio"], pos, xerr=[[r["ratio"] - lo], [hi - r["ratio"]]], fmt="none",
                            ecolor="black", elinewidth=0.8, capsize=2)
                drawn += [lo, hi]
            ax.annotate(f"{r['ratio']:.2f}×" + r.get("_note", ""), (max(r["ratio"], hi or 0), pos), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8,
                        bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.8))
            drawn.append(r["ratio"])
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=9)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first row on top
    ax.axvline(1.0, color="black", linewidth=1.2, label="PyTorch (1.0×)")
    return drawn


def _save(fig, out_dir, stem, formats) -> list[str]:
    paths = []
    for fmt in formats:
        path = os.path.join(out_dir, f"{stem}.{fmt}")
        # no creation date in the file: the same results give the same figure
        metadata = {"Date": None} if fmt in ("svg", "pdf") else None
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    return paths


def benchmark_figure(benchmark: str, machines: dict):
    """The figure of one benchmark: every row with a ratio, one bar per machine (``machines``: {slug: (path,
    result)})."""
    Figure = _figure_class()
    title, target = common.BENCHMARKS.get(benchmark, (benchmark, None))
    entries = [machines[s] for s in sorted(machines)]
    newest = max(entries, key=lambda e: _date(e[1]))[1]
    labels = []
    for res in [newest] + [e[1] for e in entries]:
        labels += [r["what"] for r in res["rows"] if r["ratio"] and r["what"] not in labels]
    series = [(_machine_label(res), {r["what"]: r for r in res["rows"]}) for _, res in entries]
    rows_h = len(labels) * max(0.32, 0.22 * len(entries)) + 1.8
    fig = Figure(figsize=(11, rows_h + 0.3 * len(entries)))
    ax = fig.add_subplot()
    drawn = _bars(ax, labels, series)
    if target:
        ax.axvline(target, color="red", linestyle="--", linewidth=1.2, label=f"target ({target:g}×)")
    _ratio_axis(ax, drawn, [target])
    ax.set_xlabel(XLABEL)
    ax.set_title(f"{title}: tinyconv / PyTorch, per machine", fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09 - 0.25 / rows_h), fontsize=8, frameon=False)
    return fig


def overview_figure(newest: dict):
    """The overview: each benchmark's headline row, one bar per machine, each with its target; None when no
    result has a headline row with a ratio."""
    Figure = _figure_class()
    benchmarks = _ordered(newest)
    labels, per_machine, targets = [], {}, []
    for b in benchmarks:
        title, target = common.BENCHMARKS.get(b, (b, None))
        target = common.HEADLINE_TARGETS.get(b, target)
        heads = {}
        for slug, (_, res) in newest[b].items():
            head = next((r for r in res["rows"] if r.get("headline") and r["ratio"]), None)
            if head:
                heads[slug] = (head, res)
        if not heads:
            continue
        what = next(iter(heads.values()))[0]["what"]
        label = f"{title}\n{what}"
        labels.append(label)
        targets.append(target)
        for slug, (head, res) in heads.items():  # each bar says which run it is: results differ in both
            note = f"  {_threads(res)}, {res['commit'] or 'no git'}{'+' if res['commit_dirty'] else ''}"
            per_machine.setdefault(slug, (res, {}))[1][label] = dict(head, _note=note)
    if not labels:
        return None
    series = [(f"{slug}: {per_machine[slug][0]['machine']['cpu']}", per_machine[slug][1]) for slug in sorted(per_machine)]
    fig = Figure(figsize=(11, len(labels) * max(0.7, 0.3 * len(series)) + 2.0))
    ax = fig.add_subplot()
    drawn = _bars(ax, labels, series)
    ax.set_ylim(len(labels) - 0.5, -0.8)  # room above the first row for its target's label
    first = True
    for y, t in enumerate(targets):
        if t:
            ax.vlines(t, y - 0.45, y + 0.45, colors="red", linestyles="--", linewidth=1.2,
                      label="target" if first else None)
            ax.annotate(f"target {t:g}×", (t, y - 0.45), xytext=(3, 1), textcoords="offset points", color="red",
                        fontsize=7, va="bottom")
            first = False
    _ratio_axis(ax, drawn, targets)
    ax.set_xlabel(XLABEL)
    ax.set_title("tinyconv against PyTorch: each benchmark's headline, newest result per machine", fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)
    return fig


def draw_all(results_dir: str | None = None, out_dir: str | None = None, formats=("png",),
             include_quick: bool = False) -> list[str]:
    """Read every result under ``results_dir`` and draw every figure into ``out_dir``; the paths written."""
    results = common.load_results(results_dir)
    newest = newest_per_machine(results, include_quick)
    if not newest:
        raise SystemExit(f"plot_results.py: no result with a ratio to PyTorch under {results_dir or common.RESULTS_DIR} "
                         f"({len(results)} files read): run a benchmark with --torch-python first")
    out_dir = out_dir or (os.path.join(results_dir, "figures") if results_dir else FIGURES_DIR)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for b in _ordered(newest):
        paths += _save(benchmark_figure(b, newest[b]), out_dir, b, formats)
    overview = overview_figure(newest)
    if overview is not None:
        paths += _save(overview, out_dir, "overview", formats)
    return paths


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", metavar="DIR", help="folder of result files (default: benchmarks/results)")
    ap.add_argument("--out", metavar="DIR", help="folder for the figures (default: RESULTS/figures)")
    ap.add_argument("--format", default="png", help="comma-separated file formats (default: png; e.g. png,svg)")
    ap.add_argument("--include-quick", action="store_true", help="draw --quick (smoke-test) results too")
    args = ap.parse_args(argv)
    args.formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in args.formats if f not in ("png", "svg", "pdf")]
    if bad or not args.formats:
        ap.error(f"--format: expected png, svg or pdf (comma-separated), got {args.format!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        paths = draw_all(args.results, args.out, args.formats, args.include_quick)
    except common.ResultFileError as e:
        print(f"plot_results.py: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(os.path.relpath(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
