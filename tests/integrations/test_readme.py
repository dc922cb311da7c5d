"""The README and docs/ say what the code does: their snippets run, and their links
lead somewhere.

A snippet is a ```python block right after an HTML comment ``<!-- snippet: NAME -->``;
each runs as a program in an empty directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"<!-- snippet: ([\w-]+) -->\n```python\n(.*?)\n```\n", re.S)
EXPECTED = ["runtime-store", "agents-session", "async-log", "langgraph-saver"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def snippets() -> dict[str, str]:
    found = [m for page in PAGES for m in SNIPPET.findall(page.read_text(encoding="utf-8"))]
    names = [name for name, _ in found]
    assert len(set(names)) == len(names), f"snippet names repeat: {names}"
    return dict(found)


def test_the_usage_snippets_are_all_there() -> None:
    assert sorted(snippets()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_snippet_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = snippets()[name]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{name} snippet", "exec"), {"__name__": "__main__"})
    assert any(tmp_path.glob("*.db")), "the snippet wrote no store"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_lead_somewhere(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name} links to {target}, which is not there"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name} links to {target}: no such heading"


def test_the_readme_starts_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S)
    assert blocks[:2] == [
        "python -m pip install . && python -m eventlog demo",
        "python -m pip install -e '.[test]' && python -m pytest",
    ]
