"""Self-describing checkpoints: ours (.safetensors + metadata) and the A2N authors' (.pt).

Our metadata (all strings, as safetensors requires):
    format = "animesr", format_version, arch = "a2n", scale, channels, up_channels,
    blocks, value_range ("1" or "255": the input pixel range the weights expect),
    training (free-form JSON provenance).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from animesr.atomic import replaced_on_success
from animesr.errors import CheckpointError
from animesr.model import A2N, A2NConfig, from_authors_state_dict, is_authors_state_dict
from animesr.model.names import authors_scale_is_four

FORMAT_NAME = "animesr"
FORMAT_VERSION = 1
AUTHORS_VALUE_RANGE = 255.0


@dataclass(frozen=True)
class LoadedModel:
    """A network with the facts needed to feed it: its scale and the pixel range it expects."""

    model: A2N
    value_range: float
    source: str
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> int:
        return self.model.scale


def save_checkpoint(
    path: str | Path,
    model: A2N,
    value_range: float,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write atomically: a crash while saving keeps any previous file intact."""
    path = Path(path)
    c = model.config
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "arch": "a2n",
        "scale": str(c.scale),
        "channels": str(c.channels),
        "up_channels": str(c.up_channels),
        "blocks": str(c.blocks),
        "value_range": _format_range(value_range),
        "training": json.dumps(training or {}, sort_keys=True),
    }
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    with replaced_on_success(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
        os.chmod(temporary, 0o644)


def load_checkpoint(path: str | Path, scale: int | None = None) -> LoadedModel:
    """Load ours or the authors' weights onto the CPU in fp32.

    `scale` is required for the authors' files (their x2 and x3 files have the same keys);
    for ours it is checked against the stored scale when given.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    if _looks_like_safetensors(path):
        return _load_ours(path, scale)
    return _load_authors(path, scale)


def _format_range(value_range: float) -> str:
    if value_range not in (1.0, 255.0):
        raise CheckpointError(f"value range must be 1 or 255, not {value_range}")
    return str(int(value_range))


def _looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(9)
    # 8-byte little-endian header length, then a JSON object
    return len(head) == 9 and head[8:9] == b"{"


def _read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({error})") from None


def _load_ours(path: Path, scale: int | None) -> LoadedModel:
    meta = _read_metadata(path)
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path.name} is a safetensors file but not an animesr checkpoint")
    if not meta.get("format_version", "0").isdigit():
        raise CheckpointError(f"{path.name}: bad checkpoint format version {meta['format_version']!r}")
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} has checkpoint format {meta['format_version']}; "
            f"this animesr reads up to {FORMAT_VERSION}: upgrade animesr"
        )
    if meta.get("arch") != "a2n":
        raise CheckpointError(f"{path.name} holds architecture {meta.get('arch')!r}, not A2N")
    config, value_range, training = _described(meta, path)
    if scale is not None and scale != config.scale:
        raise CheckpointError(f"{path.name} is an x{config.scale} model, but --scale is {scale}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is truncated or damaged ({error})") from None
    model = _build(config, {k: v.float() for k, v in state.items()}, path)
    return LoadedModel(model=model, value_range=value_range, source=str(path), training=training)


def _described(meta: dict[str, str], path: Path) -> tuple[A2NConfig, float, dict]:
    """The architecture, value range and training record from our metadata, checked."""
    try:
        config = A2NConfig(scale=int(meta["scale"]), channels=int(meta["channels"]),
                           up_channels=int(meta["up_channels"]), blocks=int(meta["blocks"]))
        value_range = float(meta["value_range"])
        training = json.loads(meta.get("training", "{}"))
    except KeyError as missing:
        raise CheckpointError(f"{path.name}: the checkpoint metadata lacks {missing}") from None
    except ValueError as error:  # int("x"), an unsupported scale, bad JSON
        raise CheckpointError(f"{path.name}: bad checkpoint metadata ({error})") from None
    if value_range not in (1.0, 255.0):
        raise CheckpointError(f"{path.name}: value range {value_range:g} is not 1 or 255")
    return config, value_range, training


def _load_authors(path: Path, scale: int | None) -> LoadedModel:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged or foreign pickle
        raise CheckpointError(f"{path.name} is not a checkpoint animesr can read ({error})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not is_authors_state_dict(state):
        raise CheckpointError(f"{path.name} is not an A2N checkpoint (unknown tensor names)")
    is_four = authors_scale_is_four(state)
    if scale is None:
        if not is_four:
            raise CheckpointError(f"{path.name} is an authors' x2/x3 file: give the scale with --scale")
        scale = 4
    if is_four != (scale == 4):
        raise CheckpointError(
            f"{path.name} is an x{'4' if is_four else '2/x3'} model, but --scale is {scale}"
        )
    try:
        renamed = from_authors_state_dict(state)
    except KeyError as error:
        raise CheckpointError(f"{path.name} has an unexpected tensor {error}") from None
    model = _build(A2NConfig(scale=scale), {k: v.float() for k, v in renamed.items()}, path)
    return LoadedModel(model=model, value_range=AUTHORS_VALUE_RANGE, source=str(path))


def on_unit_range(loaded: LoadedModel) -> A2N:
    """The same function on [0, 1] pixels: M1(x) = M255(255 x) / 255. Only the head's weights
    see the input scale and only the tail's the output scale (the bilinear skip is linear)."""
    model = copy.deepcopy(loaded.model)
    factor = loaded.value_range
    with torch.no_grad():
        model.head.weight.mul_(factor)
        model.tail.weight.div_(factor)
        model.tail.bias.div_(factor)
    return model


def _build(config: A2NConfig, state: dict[str, torch.Tensor], path: Path) -> A2N:
    model = A2N(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path.name} does not match A2N x{config.scale}: {first}") from None
    return model.eval()
