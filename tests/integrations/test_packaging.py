"""What a user installs: the wheel carries the package's data files and marks the
package as typed (PEP 561), so type checkers read eventlog's annotations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _source_copy(dest: Path) -> Path:
    """The tracked sources only, so nothing built in place reaches the wheel."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def test_the_wheel_is_typed_and_complete(tmp_path: Path) -> None:
    src = _source_copy(tmp_path / "src")
    out = tmp_path / "dist"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = out.glob("eventlog-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "eventlog/py.typed" in names
    assert "eventlog/viewer.html" in names
    assert "eventlog/sessions.html" in names  # eventlog serve's first page
    assert "eventlog/__init__.py" in names
