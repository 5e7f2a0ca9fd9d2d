"""The shipped models, by name, and how a command picks its model. They live in the repository's
models/ (a checkout, an editable install) and travel in a wheel as `animesr/shipped_models/`
(setup.py).

Two kinds ship per scale: `clean` (trained on bicubic down-scaling) and `real` (fine-tuned
from `clean` on realistically degraded inputs: blur, noise, JPEG/WebP and video codecs).
`--denoise S` interpolates their weights, (1 − S)·clean + S·real: both start from the same
weights, so every point between them is a working network.
"""

from __future__ import annotations

import os
from pathlib import Path

from animesr.errors import CheckpointError, UsageError

MODELS_ENV = "ANIMESR_MODELS"
MODEL_NAMES = ("clean", "real")
DEFAULT_MODEL = "clean"
_PACKAGED = Path(__file__).resolve().parent / "shipped_models"  # an installed wheel
_CHECKOUT = Path(__file__).resolve().parents[1] / "models"  # a checkout or an editable install


def models_dir() -> Path:
    """$ANIMESR_MODELS, else the models installed with the package, else the repository's models/."""
    override = os.environ.get(MODELS_ENV)
    if override:
        return Path(override)
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def shipped_model_path(scale: int, name: str = DEFAULT_MODEL) -> Path:
    stem = "a2n-anime" if name == "clean" else f"a2n-anime-{name}"
    return models_dir() / f"{stem}-x{scale}.safetensors"


def model_choice(value: str | None, option: str = "--model") -> str | Path | None:
    """--model as given: a shipped model's name, a file path, or None (the default model)."""
    if value is None or value in MODEL_NAMES:
        return value
    if not value.strip():
        raise UsageError(f"{option} must be {', '.join(MODEL_NAMES)} or a model file, not an empty name")
    return Path(value)


def check_model_choice(model: str | Path | None, scale: int, denoise: float | None) -> None:
    """What can be known before any work: a --denoise in range, with both shipped models there."""
    if denoise is None:
        return
    if not 0.0 <= denoise <= 1.0:
        raise UsageError(f"--denoise must be between 0 and 1, not {denoise}")
    if model is not None:
        raise UsageError("--denoise mixes the shipped clean and real models; leave out --model")
    for name in MODEL_NAMES:
        if not shipped_model_path(scale, name).is_file():
            raise CheckpointError(f"--denoise needs the {name} x{scale} model, which does not ship "
                                  f"(looked for {shipped_model_path(scale, name)})")


def resolve_model(model: str | Path | None, scale: int, denoise: float | None = None):
    """Load `model` (a path to ours or the authors', or a shipped model's name), the default
    shipped model for `scale`, or with `denoise` the mix of the shipped clean and real models."""
    from animesr.checkpoint import load_checkpoint

    check_model_choice(model, scale, denoise)
    if denoise is not None:
        return _interpolated(scale, denoise)
    if isinstance(model, Path):
        return load_checkpoint(model, scale=scale)
    path = shipped_model_path(scale, model or DEFAULT_MODEL)
    if not path.is_file():
        raise CheckpointError(
            f"no {model or DEFAULT_MODEL} x{scale} model ships with animesr (looked for {path}); "
            "pass one with --model PATH"
        )
    return load_checkpoint(path, scale=scale)


def _interpolated(scale: int, denoise: float):
    import torch

    from animesr.checkpoint import LoadedModel, load_checkpoint

    clean, real = (load_checkpoint(shipped_model_path(scale, name), scale=scale) for name in MODEL_NAMES)
    if clean.model.config != real.model.config or clean.value_range != real.value_range:
        raise CheckpointError(f"the clean and real x{scale} models differ in shape or value range; "
                              "they cannot be mixed")
    real_weights = real.model.state_dict()
    with torch.no_grad():
        mixed = {k: torch.lerp(v, real_weights[k], denoise) if v.is_floating_point() else v
                 for k, v in clean.model.state_dict().items()}
    clean.model.load_state_dict(mixed)
    return LoadedModel(model=clean.model, value_range=clean.value_range,
                       source=f"denoise {denoise:g} (clean/real x{scale})",
                       training={"denoise": denoise, "clean": clean.training, "real": real.training})
