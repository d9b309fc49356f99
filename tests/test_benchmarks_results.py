"""Benchmark results as data: ``benchmarks/common.py`` saves one file per run in a fixed schema, knows the machine
(CPU model, vector width of the CPU and of numba's target) from /proc/cpuinfo text, and
``benchmarks/plot_results.py`` draws the files as figures. Nothing here times anything or writes into
benchmarks/results."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import common  # noqa: E402
import plot_results  # noqa: E402

# /proc/cpuinfo of three machines (shortened to the lines that matter)
HASWELL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 popcnt aes xsave avx f16c rdrand avx2 bmi2
"""
XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
"""
GRAVITON3 = GRAVITON.replace("asimddp", "asimddp sve sve2").replace("0xd0c", "0xd40")


def _rows():
    return [common.result_row("training step", "ms", (4.0, 3.5, 5.0), (8.0, 7.0, 9.0), headline=True,
                              ratio_min=0.4, ratio_max=0.7),
            common.result_row("batch norm", "ms", {"median": 3.0, "min": 2.0, "max": 4.0, "n": 5}, (2.0, 2.0, 2.5)),
            common.result_row("test accuracy", "%", (98.0, 98.0, 98.0), (98.2, 98.2, 98.2), ratio=None),
            common.result_row("no torch here", "ms", (1.0, 1.0, 1.0))]


def _info(cpu="Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"):
    """A machine_info-shaped description, without looking at this machine."""
    return {"cpu": cpu, "logical_cpus": 4, "usable_cpus": 2, "platform": "Linux", "python": "3.11.7",
            "numpy": "2.0.0", "numba": "0.60.0", "torch": None, "tinyconv": "0.1.0", "memory_gib": 16.0,
            "blas": {"name": "scipy-openblas", "version": "0.3.27", "core": "SkylakeX"},
            "env": {"OPENBLAS_CORETYPE": "Haswell"}}


# ------------------------------------------------------------------------------------------- the machine
@pytest.mark.parametrize("text, model, width", [
    (HASWELL, "Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz", "avx2"),
    (XEON, "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "avx512"),
    (GRAVITON, "ARM part 0xd0c", "neon"),
    (GRAVITON3, "ARM part 0xd40", "sve"),
    ("processor\t: 0\nflags\t\t: fpu sse sse2\n", None, "sse"),
], ids=["avx2", "avx512", "arm-neon", "arm-sve", "sse-only"])
def test_cpu_model_and_vector_width_from_cpuinfo_text(text, model, width):
    assert common.vector_width(common.cpu_flags(text)) == width
    if model is not None:
        assert common.cpu_model(text) == model


def test_vector_width_of_an_llvm_feature_string_counts_only_enabled_features():
    assert common.vector_width("+sse2,+avx,+avx2,-avx512f,-avx512bw") == "avx2"
    assert common.vector_width("+avx512f,+avx2") == "avx512"
    assert common.vector_width("+neon,+fp-armv8") == "neon"
    assert common.vector_width("") == "unknown"


def test_machine_slug():
    assert common.machine_slug("AMD EPYC", "avx512") == "amd-epyc_avx512"
    assert common.machine_slug(common.cpu_model(XEON), "avx512") == "intel-xeon-platinum-8375c_avx512"
    assert common.machine_slug(common.cpu_model(HASWELL), "avx2") == "intel-core-i7-4770_avx2"
    assert common.machine_slug("AMD EPYC 9R14 96-Core Processor", "avx512") == "amd-epyc-9r14_avx512"
    assert common.machine_slug(common.cpu_model(GRAVITON), "neon") == "arm-part-0xd0c_neon"
    # numba made to compile for narrower vectors than the CPU has: another machine as far as results go
    assert common.machine_slug("AMD EPYC", "avx512", "avx2") == "amd-epyc_avx512_numba-avx2"
    assert common.machine_slug("AMD EPYC", "avx512", "avx512") == "amd-epyc_avx512"


def test_numba_target_follows_numba_cpu_name_and_features():
    """NUMBA_CPU_NAME / NUMBA_CPU_FEATURES are recorded and change the width numba targets (and the slug)."""
    code = ("import json, common; t = common.numba_target(); "
            f"m = common.result_machine({_info()!r}, 2, {XEON!r}); print(json.dumps([t, m['slug']]))")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="+avx,+avx2,+fma,-avx512f")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                       cwd=ROOT / "benchmarks")
    assert p.returncode == 0, p.stderr
    target, slug = json.loads(p.stdout.strip().splitlines()[-1])
    assert target == {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,-avx512f",
                      "cpu_name": "haswell", "vector_width": "avx2"}
    assert slug == "intel-xeon-platinum-8375c_avx512_numba-avx2"


# --------------------------------------------------------------------------------------------- saving
def test_save_result_round_trip(tmp_path):
    payload = {"rows": [{"anything": 1}], "notes": ["a note"], "nested": {"x": [1.5, None]}}
    path = common.save_result("resnet", payload, _rows(), threads=2, torch_version="2.13.0+cpu",
                              command=["benchmarks/bench_resnet.py", "--rounds", "2"], results_dir=str(tmp_path),
                              info=_info())
    p = Path(path)
    assert p.parent == tmp_path / "resnet"
    d = common.load_result(path)
    assert list(d) == list(common.RESULT_KEYS)
    assert p.name.startswith(d["date"][:10]) and f"_{d['machine']['slug']}_" in p.name and p.suffix == ".json"
    assert d["schema"] == common.RESULT_SCHEMA and d["benchmark"] == "resnet" and d["quick"] is False
    assert d["command"] == ["benchmarks/bench_resnet.py", "--rounds", "2"]
    assert d["commit"] == common.git_commit() and d["commit_dirty"] in (True, False, None)
    m = d["machine"]
    assert set(common.MACHINE_KEYS) <= set(m)
    assert m["cpu"] == _info()["cpu"] and m["threads"] == 2 and m["usable_cpus"] == 2
    assert m["OPENBLAS_CORETYPE"] == "Haswell" and m["OPENBLAS_L2_SIZE"] is None and m["blas_core"] == "SkylakeX"
    assert m["slug"].startswith("intel-xeon-platinum-8375c_") and len(m["loadavg_1_5_15"]) == 3
    assert d["versions"]["torch"] == "2.13.0+cpu" and d["versions"]["numba"] == "0.60.0"
    assert d["rows"] == _rows() and d["details"] == payload
    step, bn, acc, alone = d["rows"]
    assert step["ratio"] == 0.5 and bn["ratio"] == 1.5 and acc["ratio"] is None and alone["ratio"] is None
    assert alone["torch_median"] is None and bn["tinyconv_min"] == 2.0
    # a second run in the same second gets its own file
    again = common.save_result("resnet", payload, _rows(), results_dir=str(tmp_path), info=_info())
    assert again != path and len(list((tmp_path / "resnet").iterdir())) == 2


def test_save_result_refuses_what_a_reader_could_not_read(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        common.save_result("nope", {}, _rows(), results_dir=str(tmp_path), info=_info())
    bad = _rows() + [common.result_row("broken", "ms", (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), ratio=float("nan"))]
    with pytest.raises(common.ResultFileError, match="row 4 .broken.: 'ratio' must be a number or null"):
        common.save_result("conv", {}, bad, results_dir=str(tmp_path), info=_info())
    assert not list(tmp_path.iterdir())


def _args(**kw):
    return argparse.Namespace(**{"no_save": False, "results_dir": None, "quick": False, **kw})


def test_only_full_runs_save_into_the_default_folder(tmp_path, monkeypatch):
    """--quick never writes into benchmarks/results (here a stand-in), only into a folder it is given."""
    default = tmp_path / "default"
    monkeypatch.setattr(common, "RESULTS_DIR", str(default))
    monkeypatch.delenv(common.RESULTS_ENV, raising=False)
    save = lambda args: common.save_if_asked(args, "lenet", {}, _rows(), info=_info())  # noqa: E731
    assert save(_args(quick=True)) is None and not default.exists()
    assert save(_args(no_save=True)) is None and not default.exists()
    assert Path(save(_args())).parent == default / "lenet"
    given = tmp_path / "given"
    path = save(_args(quick=True, results_dir=str(given)))
    assert Path(path).parent == given / "lenet" and common.load_result(path)["quick"] is True
    monkeypatch.setenv(common.RESULTS_ENV, str(tmp_path / "env"))
    assert Path(save(_args(quick=True))).parent == tmp_path / "env" / "lenet"
    assert save(_args(quick=True, no_save=True)) is None
    assert len(list((default / "lenet").iterdir())) == 1


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"schema": 1, "benchmark": "conv"}', "missing keys"),
    ("[1, 2]", "expected a JSON object"),
], ids=["not-json", "missing-keys", "a-list"])
def test_a_malformed_result_file_is_named(tmp_path, content, message):
    path = tmp_path / "conv" / "broken.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(common.ResultFileError, match=message) as e:
        common.load_results(str(tmp_path))
    assert str(e.value).startswith(str(path))


def test_a_row_of_the_wrong_shape_is_named(tmp_path):
    path = common.save_result("conv", {}, _rows(), results_dir=str(tmp_path), info=_info())
    d = json.loads(Path(path).read_text())
    d["rows"][1]["ratio"] = "fast"
    Path(path).write_text(json.dumps(d))
    with pytest.raises(common.ResultFileError, match=r"row 1 \(batch norm\): 'ratio' must be a number or null, "
                                                     r"got 'fast'") as e:
        common.load_result(path)
    assert str(e.value).startswith(path)


# ------------------------------------------------------------------------------------------------ figures
def _synthetic_results(root: Path):
    """Two machines, two benchmarks, plus an older result and a quick one that the figures must not show."""
    older = common.save_result("lenet", {}, [common.result_row("training step, tinyconv[default]", "ms", (9.0, 9, 9),
                                                               (3.0, 3, 3), headline=True)],
                               results_dir=str(root), info=_info("AMD EPYC"))
    d = json.loads(Path(older).read_text())
    d["date"] = "2020-01-01T00:00:00+00:00"
    Path(older).write_text(json.dumps(d))
    for cpu, r in (("AMD EPYC", 0.7), ("Intel(R) Xeon(R) Processor", 1.2)):
        common.save_result("lenet", {}, [common.result_row("training step, tinyconv[default]", "ms", (r, r, r),
                                                           (1.0, 1, 1), headline=True, ratio_min=r * 0.9,
                                                           ratio_max=r * 1.1),
                                         common.result_row("training step, tinyconv[im2col]", "ms", (3 * r, 3, 3),
                                                           (1.0, 1, 1))],
                           results_dir=str(root), info=_info(cpu))
        common.save_result("conv", {}, [common.result_row("lenet.conv2 fwd+bwd", "ms", (2 * r, 1, 3), (2.0, 2, 2)),
                                        common.result_row("geometric mean", "ratio", None, ratio=r, headline=True)],
                           results_dir=str(root), info=_info(cpu))
    common.save_result("conv", {}, [common.result_row("lenet.conv2 fwd+bwd", "ms", (50.0, 50, 50), (1.0, 1, 1))],
                       results_dir=str(root), quick=True, info=_info("AMD EPYC"))
    return older


def test_newest_result_per_machine_without_quick_runs(tmp_path):
    older = _synthetic_results(tmp_path)
    newest = plot_results.newest_per_machine(common.load_results(str(tmp_path)))
    assert set(newest) == {"lenet", "conv"}
    assert len(newest["lenet"]) == 2 and len(newest["conv"]) == 2
    assert older not in {path for path, _ in newest["lenet"].values()}
    assert all(not res["quick"] for m in newest.values() for _, res in m.values())
    with_quick = plot_results.newest_per_machine(common.load_results(str(tmp_path)), include_quick=True)
    assert [r["rows"][0]["ratio"] for _, r in with_quick["conv"].values()].count(50.0) == 1


def test_plot_results_draws_every_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _synthetic_results(tmp_path / "results")
    out = tmp_path / "figures"
    assert plot_results.main(["--results", str(tmp_path / "results"), "--out", str(out), "--format", "png,svg"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["conv.png", "conv.svg", "lenet.png", "lenet.svg",
                                                     "overview.png", "overview.svg"]
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "lenet.png" in capsys.readouterr().out


def test_a_benchmark_figure_names_what_a_reader_needs():
    """Title with the benchmark's name, one labelled row per measurement, machines, 1.0 and the target in the
    legend, a bar of the right length for every machine's ratio."""
    pytest.importorskip("matplotlib")
    res = {}
    for slug, r in (("amd-epyc_avx512", 0.7), ("intel-xeon_avx2", 1.2)):
        rows = [common.result_row("step", "ms", (r, r, r), (1.0, 1, 1), headline=True),
                common.result_row("batch norm", "ms", (2 * r, 1, 3), (1.0, 1, 1))]
        res[slug] = (f"{slug}.json", {"benchmark": "resnet", "date": "2026-01-02T00:00:00+00:00", "commit": "abc1234",
                                      "commit_dirty": False, "quick": False, "rows": rows,
                                      "machine": {"slug": slug, "cpu": "CPU " + slug, "threads": 2, "usable_cpus": 2},
                                      "versions": {"torch": "2.13.0"}})
    fig = plot_results.benchmark_figure("resnet", res)
    ax = fig.axes[0]
    assert "ResNet training step (bench_resnet.py)" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["step", "batch norm"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "PyTorch (1.0×)" in legend and "target (0.8×)" in legend
    assert any(t.startswith("amd-epyc_avx512: CPU amd-epyc_avx512, 2 threads; commit abc1234") for t in legend)
    widths = sorted(round(p.get_width(), 6) for p in ax.patches)
    assert widths == [0.7, 1.2, 1.4, 2.4]
    assert ax.get_xscale() == "log"


def test_plot_results_names_a_malformed_file(tmp_path, capsys):
    _synthetic_results(tmp_path)
    broken = tmp_path / "conv" / "zz-broken.json"
    broken.write_text('{"schema": 1}')
    assert plot_results.main(["--results", str(tmp_path), "--out", str(tmp_path / "figures")]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "missing keys" in err
    assert not (tmp_path / "figures").exists()


def test_plot_results_without_matplotlib_says_how_to_get_it(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit, match=r'pip install -e "\.\[plot\]"'):
        plot_results.benchmark_figure("conv", {})


def test_plot_results_with_nothing_to_draw_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no result with a ratio to PyTorch"):
        plot_results.draw_all(str(tmp_path))
