"""Every relative link in the hand-written Markdown resolves: the file exists and so does its #anchor."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

from training.model_card import is_relative, markdown_links

REPO = Path(__file__).resolve().parent.parent


DOCS = sorted({
    REPO / "README.md", REPO / "model_card.md", *(REPO / "docs").glob("*.md"),
    *(REPO / "space").glob("*.md"), *(REPO / "benchmarks").glob("*.md"),
})
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            slug, n = github_slug(match.group(2)), 1
            while slug in found:  # GitHub numbers repeated headings: x, x-1, x-2
                slug, n = f"{github_slug(match.group(2))}-{n}", n + 1
            found.add(slug)
    return frozenset(found)


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    problems = []
    for _, _, target, _ in markdown_links(path.read_text(encoding="utf-8")):
        if target.startswith("#"):
            file, anchor = path, target[1:]
        elif is_relative(target):
            name, _, anchor = target.partition("#")
            file = (root / name.lstrip("/")) if name.startswith("/") else (path.parent / unquote(name))
            if not file.exists():
                problems.append(f"{target}: no such file")
                continue
        else:
            continue  # http(s), mailto: not checked here
        if anchor and file.suffix == ".md" and anchor not in anchors(file.resolve()):
            where = file.resolve().relative_to(root.resolve())
            problems.append(f"{target}: no heading with anchor #{anchor} in {where}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_the_checker_catches_dead_links(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Section `two`, again\n\n## Section `two`, again\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#section-two-again-1) [ok](#page) [web](https://example.org/missing)\n"
        "[file](gone.md) [anchor](other.md#nope) [self](#nope)\n```\n[code](gone.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "gone.md: no such file",
        "other.md#nope: no heading with anchor #nope in other.md",
        "#nope: no heading with anchor #nope in page.md",
    ]
