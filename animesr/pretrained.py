"""The shipped models in models/ and how a command picks its model."""

from __future__ import annotations

import os
from pathlib import Path

from animesr.checkpoint import LoadedModel, load_checkpoint
from animesr.errors import CheckpointError

MODELS_ENV = "ANIMESR_MODELS"


def models_dir() -> Path:
    """$ANIMESR_MODELS, else the repository's models/ beside the package (editable install)."""
    override = os.environ.get(MODELS_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[1] / "models"


def shipped_model_path(scale: int) -> Path:
    return models_dir() / f"a2n-anime-x{scale}.safetensors"


def resolve_model(model: Path | None, scale: int) -> LoadedModel:
    """Load `model` (ours or the authors'), or the shipped model for `scale`."""
    if model is not None:
        return load_checkpoint(model, scale=scale)
    path = shipped_model_path(scale)
    if not path.is_file():
        raise CheckpointError(
            f"no x{scale} model ships with animesr (looked for {path}); pass one with --model PATH"
        )
    return load_checkpoint(path, scale=scale)
