"""`animesr --help` and `--version` answer without importing torch (seconds saved on every call)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from animesr.cli import main
sys.argv = ["animesr", *{args!r}]
try:
    main()
except SystemExit:
    pass
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["upscale-image", "--help"], ["train", "--help"]])
def test_help_and_version_do_not_import_torch(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout or "animesr 0" in result.stdout
    assert result.stdout.strip().endswith("torch imported: False")


def test_public_api_still_loads_on_use() -> None:
    import animesr

    assert animesr.Upscaler.__name__ == "Upscaler"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        animesr.nothing  # noqa: B018
