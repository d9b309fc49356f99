"""The documents a learner reads hold together: every relative link in README.md, docs/ and benchmarks/README.md
points at a file (or folder) that exists, every #anchor at a heading of its page; and none of them, nor the
library's and benchmarks' docstrings and comments, tells how the code came to be (issue numbers, "superseded"
tables) or points outside the repository (git log is the history)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto: ... : not checked offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n[ok](page.md) [anchor](#title) [gone](missing.md) [bad](#nowhere)\n")
    found = [t for t in LINK.findall(page.read_text())]
    assert found == ["page.md", "#title", "missing.md", "#nowhere"]
    assert _anchors(page) == {"title"}


HISTORY = re.compile(r"[Ii]ssue [0-9]+|[Ss]uperseded|\.\./shared")


def test_no_history_and_no_paths_outside_the_repository():
    files = [*PAGES, *ROOT.joinpath("tinyconv").rglob("*.py"), *ROOT.joinpath("benchmarks").glob("*.py"),
             ROOT / "tinyconv_launcher.py"]
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()[:80]}" for p in files
            for i, line in enumerate(p.read_text().splitlines(), 1) if HISTORY.search(line)]
    assert not hits, "\n".join(hits)


def test_readme_is_a_first_page():
    """A first page, not a manual: short, with the backward-pass material near the top."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 170, len(lines)
    assert any("backward pass" in line.lower() for line in lines[:80] if line.startswith("#"))
