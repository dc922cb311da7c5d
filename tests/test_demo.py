"""The demo runs through the real entry points and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_through_python_m(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    out = subprocess.run(
        [sys.executable, "-m", "eventlog", "demo", "--path", str(db), "--entries", "80"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    assert "SQLITE_TOOBIG" in out  # the one-JSON-row store fails under the same limit
    assert "identical to what was saved" in out
    assert "largest cell" in out and db.exists()


def test_demo_output_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -m eventlog demo --path {tmp_path / 'd.db'} --entries 40 | head -1"
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in res.stderr
