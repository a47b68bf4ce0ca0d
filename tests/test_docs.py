"""The docs a newcomer reads hold together: links and anchors resolve, the README lists every stage, the
architecture page names every module, and no package file is empty (DVC warns about each one it hashes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stylepipe.stagetable import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def _prose(page: Path) -> str:
    """The page without its code blocks (a `[x](y)` in code is no link)."""
    return FENCE.sub("", page.read_text())


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, spaces to dashes."""
    slugs: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _prose(page), re.M):
        text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        candidate, n = slug, 1
        while candidate in slugs:
            candidate, n = f"{slug}-{n}", n + 1
        slugs.add(candidate)
    return slugs


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{page.name}:\n  " + "\n  ".join(broken)


def test_the_link_checker_sees_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Two words\n\n[ok](#two-words) [bad](#three) [gone](b.md)\n")
    page = tmp_path / "a.md"
    assert anchors(page) == {"title", "two-words"}
    assert relative_links(page) == ["#two-words", "#three", "b.md"]


def test_the_readme_lists_every_stage_of_the_stage_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in STAGE_NAMES if f"| `{name}` |" not in readme]
    assert not missing, f"README.md's stage table lacks {missing}"


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 160


def test_architecture_names_every_module() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    package = ROOT / "src" / "stylepipe"
    modules = [p.relative_to(package).as_posix() for p in sorted(package.rglob("*.py")) if p.name != "__init__.py"]
    missing = [m for m in modules if f"`{m}`" not in text]
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}"


def test_no_package_file_is_empty() -> None:
    empty = [p.relative_to(ROOT).as_posix() for p in (ROOT / "src").rglob("*.py") if p.stat().st_size == 0]
    assert not empty, f"empty files (DVC warns about each in every stage's deps; give them a docstring): {empty}"
