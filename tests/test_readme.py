"""The README's Usage snippets run, each as a program in an empty directory.

A snippet is a ```python block right after an HTML comment ``<!-- snippet: NAME -->``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPET = re.compile(r"<!-- snippet: ([\w-]+) -->\n```python\n(.*?)\n```\n", re.S)
EXPECTED = ["runtime-store", "agents-session", "async-log"]


def snippets() -> dict[str, str]:
    found = SNIPPET.findall(README.read_text(encoding="utf-8"))
    names = [name for name, _ in found]
    assert len(set(names)) == len(names), f"snippet names repeat: {names}"
    return dict(found)


def test_the_usage_snippets_are_all_there() -> None:
    assert list(snippets()) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_snippet_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = snippets()[name]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{name}", "exec"), {"__name__": "__main__"})
    assert any(tmp_path.glob("*.db")), "the snippet wrote no store"
