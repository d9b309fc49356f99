"""Every third-party import that the library, the tests, the scripts the tests run and README's code make is
declared by an install step (setup.cfg's install_requires or an extra), so that a fresh machine that runs the
README's two commands has it. An import guarded by ``try: ... except ImportError`` or ``pytest.importorskip`` is
optional and allowed; the test below shows that the guard works for the optional packages.
"""
from __future__ import annotations

import ast
import configparser
import re
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml"}
#: the project's own modules: the package, and the helper modules beside the tests and benchmarks
FIRST_PARTY = {"tinyconv", "tinyconv_launcher"} | {
    p.stem if p.suffix == ".py" else p.name
    for folder in ("tests", "benchmarks") for p in ROOT.joinpath(folder).rglob("*")
    if (p.suffix == ".py" or p.is_dir()) and "__pycache__" not in p.parts}
#: never a dependency: the parity tests that import it are marked ``torch`` and skipped without it, and in the
#: course's code (tests/d2l_*) ``import torch`` resolves to tinyconv
NOT_A_DEPENDENCY = {"torch", "torchvision"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    """extra ('' for install_requires) -> the distributions it names."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    blobs = {"": cfg.get("options", "install_requires")}
    blobs.update(cfg.items("options.extras_require"))
    return {extra: {_norm(m) for m in re.findall(r"^\s*([A-Za-z0-9_.\-]+)", blob, re.M)}
            for extra, blob in blobs.items()}


def _unguarded_imports(source: str) -> set[str]:
    tree = ast.parse(source)
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                h.type is not None and re.search(r"ImportError|ModuleNotFoundError", ast.unparse(h.type))
                for h in node.handlers):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY | NOT_A_DEPENDENCY
            and n != "__future__"}


def _checked_sources() -> dict[str, str]:
    """path -> Python source: the package, the tests, the benchmark scripts the tests run, README's code."""
    files = [*ROOT.joinpath("tinyconv").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py")]
    test_text = "\n".join(p.read_text() for p in ROOT.joinpath("tests").rglob("test_*.py"))
    files += [p for p in ROOT.joinpath("benchmarks").glob("*.py") if p.name in test_text]
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in files}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)):
        sources[f"README.md block {i + 1}"] = textwrap.dedent(block)  # a block inside a list item is indented
    return sources


def test_every_import_is_declared():
    declared = set().union(*_declared().values())
    missing = {}
    for path, source in _checked_sources().items():
        for name in _third_party(_unguarded_imports(source)):
            if _norm(DISTRIBUTION.get(name, name)) not in declared:
                missing.setdefault(name, []).append(path)
    assert not missing, f"imported but declared by no install step (setup.cfg): {missing}"


def test_library_imports_only_runtime_dependencies():
    """What ``import tinyconv`` may need is in install_requires, not in an extra a user may not have."""
    runtime = _declared()[""]
    for path in ROOT.joinpath("tinyconv").rglob("*.py"):
        for name in _third_party(_unguarded_imports(path.read_text())):
            assert _norm(name) in runtime, f"{path.relative_to(ROOT)} imports {name}, not in install_requires"


def test_the_checker_sees_an_undeclared_import():
    """The scan is not vacuous: an unguarded import is found, a guarded one is not."""
    src = "import numpy\nimport somepkg.sub\ntry:\n    import optpkg\nexcept ImportError:\n    optpkg = None\n"
    assert _third_party(_unguarded_imports(src)) == {"numpy", "somepkg"}


@pytest.mark.parametrize("module", ["matplotlib"])
def test_optional_packages_are_optional(module, monkeypatch):
    """The plot extra is optional: training's plotting step is silent without matplotlib."""
    import tinyconv.train.reporting as reporting

    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # makes ``import matplotlib...`` raise ImportError
    history = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0, "train_acc": 0.5, "test_acc": 0.5, "lr": 1e-3}]
    assert reporting.plot_curves(history, ROOT / "no-such-dir" / "curves.png") is False
