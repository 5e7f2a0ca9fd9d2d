"""A normal (non-editable) install carries the shipped models: build a wheel from a copy of the
sources, install it into a folder of its own (no dependencies: the running environment's are
used), and load the default x2 and x4 models from there, away from the checkout."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "animesr", "models")

CHECK = """
import json
import animesr
from animesr.pretrained import models_dir, resolve_model
print(json.dumps({"package": animesr.__file__, "models": str(models_dir()),
                  "scales": [resolve_model(None, s).model.config.scale for s in (2, 4)]}))
"""


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=900, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


def _builds_wheels_here() -> bool:
    """The environment's setuptools can build a wheel itself (no isolated build environment)."""
    return (importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
            or importlib.util.find_spec("wheel") is not None)


@pytest.mark.slow
def test_a_built_wheel_finds_the_shipped_models(tmp_path: Path) -> None:
    if not all((ROOT / name).exists() for name in SOURCES):
        pytest.skip("not a source checkout")
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        kwargs = {"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")} if (ROOT / name).is_dir() else {}
        copy(ROOT / name, source / name, **kwargs)

    isolation = ["--no-build-isolation"] if _builds_wheels_here() else []
    _pip("wheel", "--no-deps", *isolation, "-w", str(tmp_path / "dist"), str(source), cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("animesr-*.whl"))
    _pip("install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel), cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("ANIMESR_MODELS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(tmp_path / "site")  # the wheel's copy, not the checkout
    assert Path(found["models"]) == tmp_path / "site" / "animesr" / "shipped_models"
    assert found["scales"] == [2, 4]
    assert (tmp_path / "site" / "animesr" / "shipped_models" / "README.md").is_file()  # the card travels too
