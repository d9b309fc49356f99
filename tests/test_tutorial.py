"""Every code block of docs/tutorial.md runs, in order, in one namespace, and prints exactly what the page shows.

Format (see the top of the tutorial): a ```python block may be followed directly by an ```output block holding
what it prints; a python block without one must print nothing. Lines are compared after stripping trailing
spaces, and leading/trailing blank lines of a block are ignored.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest

import tinyconv as tc

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
_FENCE = re.compile(r"^```(\w*)\s*$")


def parse_blocks(text: str) -> list[dict]:
    """Fenced blocks as dicts {lang, code, line}; raises ValueError on an unclosed fence."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m:
            start, lang, body = i + 1, m.group(1), []
            i += 1
            while i < len(lines) and lines[i].rstrip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"unclosed ``` fence opened at line {start}")
            blocks.append({"lang": lang, "code": "\n".join(body) + "\n", "line": start})
        i += 1
    return blocks


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def run_blocks(blocks: list[dict], source: str = "tutorial.md") -> int:
    """Run the python blocks in one namespace; compare printed output. Returns the number of blocks run."""
    namespace = {"__name__": "__tutorial__"}
    ran = 0
    for k, block in enumerate(blocks):
        if block["lang"] != "python":
            continue
        following = blocks[k + 1] if k + 1 < len(blocks) else None
        expected = following["code"] if following is not None and following["lang"] == "output" else ""
        buf = io.StringIO()
        code = compile(block["code"], f"{source}:{block['line']}", "exec")
        with contextlib.redirect_stdout(buf):
            exec(code, namespace)
        ran += 1
        got = buf.getvalue()
        if _normalise(got) != _normalise(expected):
            diff = "\n".join(difflib.unified_diff(_normalise(expected).splitlines(), _normalise(got).splitlines(),
                                                  "page shows", "code prints", lineterm=""))
            raise AssertionError(f"{source}, python block at line {block['line']} printed something else:\n{diff}")
    return ran


@contextlib.contextmanager
def isolated_state():
    """The tutorial sets print options and seeds; the rest of the test suite must not notice."""
    rng = tc.get_rng_state()
    with np.printoptions():
        try:
            yield
        finally:
            tc.set_rng_state(rng)


def _warm_up_numba():
    from tinyconv import functional as F

    for dtype in (tc.float32, tc.float64):
        x = tc.zeros(1, 1, 4, 4, dtype=dtype, requires_grad=True)
        w = tc.zeros(1, 1, 3, 3, dtype=dtype, requires_grad=True)
        for stride in (1, 2):
            F.conv2d(x, w, stride=stride, padding=1, kernel="numba").sum().backward()
        F.max_pool2d(x, 2, kernel="numba").sum().backward()


def test_harness_catches_wrong_output_and_silent_blocks():
    good = "```python\nprint(1 + 1)\n```\n```output\n2\n```\n```python\nx = 3\n```\n"
    assert run_blocks(parse_blocks(good)) == 2
    with pytest.raises(AssertionError, match="line 1"):
        run_blocks(parse_blocks(good.replace("\n2\n", "\n3\n")))
    with pytest.raises(AssertionError):  # a block with no output block must print nothing
        run_blocks(parse_blocks(good.replace("x = 3", "print(x := 3)")))
    with pytest.raises(NameError):  # blocks share one namespace, in order
        run_blocks(parse_blocks("```python\nprint(y)\n```\n```python\ny = 1\n```\n"))
    with pytest.raises(ValueError, match="unclosed"):
        parse_blocks("```python\nprint(1)\n")


def test_tutorial_runs_and_prints_what_it_shows():
    text = TUTORIAL.read_text(encoding="utf-8")
    blocks = parse_blocks(text)
    n_python = sum(b["lang"] == "python" for b in blocks)
    assert n_python >= 20, "the tutorial should be mostly runnable code"
    for k, b in enumerate(blocks):  # an output block belongs to the python block just before it
        if b["lang"] == "output":
            assert k > 0 and blocks[k - 1]["lang"] == "python", f"output block at line {b['line']} follows no code"
    _warm_up_numba()  # a cold numba cache compiles for ~10 s per dtype: that is not the page's running time
    start = time.perf_counter()
    with isolated_state():
        assert run_blocks(blocks, "docs/tutorial.md") == n_python
    assert time.perf_counter() - start < 30


def test_tutorial_names_the_kernel_functions_it_explains():
    """The page ties the math to functions in tinyconv/kernels; those functions must exist under those names."""
    import importlib

    text = TUTORIAL.read_text(encoding="utf-8")
    refs = set(re.findall(r"`tinyconv\.kernels\.([\w.]+)\.(\w+)`", text))
    assert len(refs) >= 6
    for module, name in sorted(refs):
        mod = importlib.import_module(f"tinyconv.kernels.{module}")
        assert hasattr(mod, name), f"docs/tutorial.md names tinyconv.kernels.{module}.{name}, which does not exist"
