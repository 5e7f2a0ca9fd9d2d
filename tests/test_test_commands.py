"""Both ways of running the tests collect the whole suite: `python -m pytest` (the README's, which
puts the current folder on sys.path) and plain `pytest` (which does not)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _collect(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*command, "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("how", ["pytest", "python -m pytest"])
def test_the_whole_suite_collects(how: str) -> None:
    if how == "pytest":
        script = shutil.which("pytest", path=str(Path(sys.executable).parent))
        if script:
            command = [script]
        elif sys.version_info >= (3, 11):  # -P: the current folder stays off sys.path, as for the script
            command = [sys.executable, "-P", "-m", "pytest"]
        else:
            pytest.skip(f"no pytest script beside {sys.executable}")
    else:
        command = [sys.executable, "-m", "pytest"]
    result = _collect(command)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error" not in result.stdout.lower().split("\n")[-2], result.stdout[-3000:]
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(collected) > 100 and any("test_test_commands.py" in line for line in collected)
