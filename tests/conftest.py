"""Shared fixtures: the ../shared folder (skipped when absent), tiny models, generated images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from animesr.checkpoint import LoadedModel, load_checkpoint
from animesr.model import A2N, A2NConfig

# ANIMESR_SHARED points elsewhere, e.g. from a git worktree whose parent folder has no shared/
SHARED = Path(os.environ.get("ANIMESR_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
OFFICIAL = SHARED / "fixtures" / "a2n-official"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the read-only ../shared folder beside the checkout), which is absent")
    return path


@pytest.fixture(scope="session", autouse=True)
def session_export_cache(tmp_path_factory):
    """ONNX/OpenVINO exports made by the tests (and the commands they start) go to a cache of the
    session's own, never to the user's ~/.cache/animesr."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANIMESR_CACHE", str(tmp_path_factory.mktemp("animesr-cache")))
        yield


@pytest.fixture(scope="session")
def shared() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def official_dir() -> Path:
    return _need(OFFICIAL)


@pytest.fixture(scope="session")
def authors_x2(official_dir: Path) -> Path:
    return _need(official_dir / "aan_x2.pt")


@pytest.fixture(scope="session")
def authors_x3(official_dir: Path) -> Path:
    return _need(official_dir / "aan_x3.pt")


@pytest.fixture(scope="session")
def set5_dir(official_dir: Path) -> Path:
    return _need(official_dir / "set5")


@pytest.fixture(scope="session")
def anime_val_dir(shared: Path) -> Path:
    return _need(shared / "data" / "anime" / "val")


def handled(result) -> bool:
    """A CliRunner result that ended by our own exit (typer.Exit), not an uncaught exception:
    CliRunner catches exceptions, so their tracebacks never show up in its output."""
    return result.exception is None or isinstance(result.exception, SystemExit)


def tiny_model(scale: int, seed: int = 0) -> A2N:
    """A2N with 8 channels and one block: the same code paths in milliseconds."""
    torch.manual_seed(seed)
    model = A2N(A2NConfig(scale=scale, channels=8, up_channels=8, blocks=1)).eval()
    # Make the ADM weights matter: random init gives near-equal (a, b) at temperature 30.
    with torch.no_grad():
        for block in model.blocks:
            for layer in block.adm:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.mul_(200.0)
    return model


def tiny_loaded(scale: int, value_range: float = 1.0, seed: int = 0) -> LoadedModel:
    return LoadedModel(model=tiny_model(scale, seed), value_range=value_range, source="tiny")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def smooth_image(height: int, width: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A picture-like image (gradients and edges, not white noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = []
    for c in range(channels):
        fx, fy, phase = rng.uniform(0.02, 0.2, 2).tolist() + [rng.uniform(0, 6.28)]
        plane = 0.5 + 0.35 * np.sin(fx * x + fy * y + phase) + 0.1 * ((x // 7 + y // 5) % 2)
        planes.append(plane)
    image = np.clip(np.stack(planes, axis=2), 0, 1)
    maximum = np.iinfo(dtype).max
    return (image * maximum + 0.5).astype(dtype)


@pytest.fixture(scope="session")
def authors_x2_loaded(authors_x2: Path) -> LoadedModel:
    return load_checkpoint(authors_x2, scale=2)


def small_dataset(folder: Path, images: int = 2, size: tuple[int, int] = (80, 96), crop: int = 32,
                  scales: tuple[int, ...] = (2,)) -> Path:
    """An animesr HDF5 dataset cut from generated pictures, for training and sampling tests."""
    from animesr.config import PrepareSettings
    from animesr.data.prepare import prepare_dataset
    from animesr.imaging import write_image

    for seed in range(images):
        write_image(folder / f"{seed}.png", smooth_image(*size, seed=seed))
    out = folder / "d.h5"
    prepare_dataset(PrepareSettings((folder,), out, crop=crop, stride=crop // 2, scales=scales))
    return out


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mount a small tmpfs (a real full disk, or a real read-only file system) under tmp_path:
    `tmpfs("2m")`, `tmpfs("1m", read_only=True)`. Needs root; skips where mounting is not allowed."""
    import subprocess

    mounted: list[Path] = []

    def mount(size: str, read_only: bool = False) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        try:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                    capture_output=True, text=True)
        except OSError as error:  # no mount command
            pytest.skip(f"cannot mount a tmpfs here ({error})")
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def dies_with_pytest(command: list[str]) -> list[str]:
    """`command`, started so that the kernel kills it when this test process dies, even when pytest
    itself is killed (a CI timeout) before a test's own clean-up can run: children started in a new
    session are otherwise left running."""
    from animesr.video.ffmpeg import die_with_parent

    return [*die_with_parent(), *command]
