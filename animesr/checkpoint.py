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
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from animesr.atomic import replaced_on_success, require_folder_for
from animesr.errors import CheckpointError, InputError, OutputError
from animesr.model import A2N, A2NConfig, from_authors_state_dict, is_authors_state_dict
from animesr.model.names import authors_scale_is_four

FORMAT_NAME = "animesr"
FORMAT_VERSION = 1
AUTHORS_VALUE_RANGE = 255.0

# What a checkpoint may describe: A2N has 40/24/16; the ADM's hidden layer needs channels ≥ its
# reduction (4). The upper bounds are far above any A2N variant and keep a forged file from
# asking for a terabyte model or a hundred million blocks before its tensors are even looked at.
SHAPE_LIMITS = {"channels": (4, 1024), "up_channels": (1, 1024), "blocks": (1, 256)}


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

    @property
    def label(self) -> str:
        """The file name of a model read from a file, else its description (a --denoise mix)."""
        path = Path(self.source)
        return path.name if path.is_file() else self.source


def save_checkpoint(
    path: str | Path,
    model: A2N,
    value_range: float,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write atomically: a crash while saving keeps any previous file intact."""
    path = Path(path)
    if not isinstance(model, A2N):
        raise InputError(f"save_checkpoint takes an A2N network, not {type(model).__name__}"
                         f"{' (pass loaded.model)' if isinstance(model, LoadedModel) else ''}")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    require_folder_for(path)
    try:
        training_text = json.dumps(training or {}, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise InputError(f"the training record must be plain JSON: {error}") from None
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
        "training": training_text,
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
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a model file")
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
    _check_layout(_header_layout(path), config, path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is truncated or damaged ({error})") from None
    model = _build(config, {k: v.float() for k, v in state.items()}, path)
    return LoadedModel(model=model, value_range=value_range, source=str(path), training=training)


def training_record(path: str | Path) -> dict[str, Any]:
    """The `training` provenance of one of our checkpoints, read from its header without its weights."""
    path = Path(path)
    return _described(_read_metadata(path), path)[2]


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
    for name, (low, high) in SHAPE_LIMITS.items():
        value = getattr(config, name)
        if not low <= value <= high:
            raise CheckpointError(f"{path.name}: bad checkpoint metadata ({name} = {value}; "
                                  f"A2N allows {low} to {high})")
    if value_range not in (1.0, 255.0):
        raise CheckpointError(f"{path.name}: value range {value_range:g} is not 1 or 255")
    return config, value_range, training


def _load_authors(path: Path, scale: int | None) -> LoadedModel:
    state = _torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise CheckpointError(f"{path.name} is not an A2N checkpoint (not a table of named tensors)")
    if not is_authors_state_dict(state):
        raise CheckpointError(f"{path.name} is not an A2N checkpoint (unknown tensor names)")
    not_tensor = next((key for key, value in state.items() if not isinstance(value, torch.Tensor)), None)
    if not_tensor is not None:
        raise CheckpointError(f"{path.name}: {not_tensor} is a {type(state[not_tensor]).__name__}, not a tensor")
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
    config = A2NConfig(scale=scale)
    _check_layout({k: (tuple(v.shape), v.is_floating_point()) for k, v in renamed.items()}, config, path)
    model = _build(config, {k: v.float() for k, v in renamed.items()}, path)
    return LoadedModel(model=model, value_range=AUTHORS_VALUE_RANGE, source=str(path))


def _torch_load(path: Path) -> Any:
    """torch.load without trusting the file: weights only (no code runs), and no storage
    larger than the file. A zip-format file is memory-mapped, so its storages are views of
    the file; a legacy file is censused first, since torch allocates what it claims."""
    is_zip = zipfile.is_zipfile(path)
    with path.open("rb") as f:
        is_pickle = f.read(1) == b"\x80"  # a pickle's protocol mark: torch's legacy format
    if not is_zip and not is_pickle:
        raise CheckpointError(f"{path.name} is not a model file (neither an animesr .safetensors nor a PyTorch .pt)")
    if not is_zip:
        claimed = _legacy_storage_elements(path)
        size = path.stat().st_size
        if claimed > size:
            raise CheckpointError(f"{path.name} claims {claimed:,} tensor elements in a {size:,}-byte file: "
                                  "it is damaged or forged")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as error:  # torch raises many types for a damaged or foreign pickle
        raise CheckpointError(f"{path.name} is not a checkpoint animesr can read ({error})") from None


class _Anything:
    """Stands for every class and function a pickle names: accepts any construction or state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _StorageCensus(pickle.Unpickler):
    """Reads a legacy torch pickle building nothing real (every global is `_Anything`, so no
    code of the file runs) and records the element count each storage claims."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.elements: dict[Any, int] = {}

    def find_class(self, module: str, name: str) -> type:
        return _Anything

    def persistent_load(self, pid: Any) -> _Anything:
        # ("storage", storage type, key, location, element count, view)
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            count = pid[4]
            if not isinstance(count, int) or count < 0:
                raise pickle.UnpicklingError(f"bad storage size {count!r}")
            self.elements[str(pid[2])] = count
        return _Anything()


def _legacy_storage_elements(path: Path) -> int:
    """The total element count the storages of a legacy (non-zip) torch file claim."""
    try:
        with path.open("rb") as f:
            for _ in range(3):  # magic number, protocol version, system information
                _StorageCensus(f).load()
            census = _StorageCensus(f)
            census.load()
    except Exception as error:  # noqa: BLE001 - whatever the bytes are, they are not a torch file
        raise CheckpointError(f"{path.name} is not a checkpoint animesr can read ({error})") from None
    return sum(census.elements.values())


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


def _header_layout(path: Path) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Name -> (shape, is floating point) of every tensor, from the header alone."""
    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {key: f.get_slice(key) for key in f.keys()}
            return {key: (tuple(s.get_shape()), s.get_dtype() in _FLOAT_DTYPES) for key, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is truncated or damaged ({error})") from None


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def _expected_layout(config: A2NConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = A2N(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _check_layout(found: dict[str, tuple[tuple[int, ...], bool]], config: A2NConfig, path: Path) -> None:
    """Every tensor of A2N(config), each of its shape and floating point, nothing else:
    checked before any tensor is converted, so a forged size never reaches an allocation."""
    expected = _expected_layout(config)
    mismatch = f"{path.name} does not match A2N x{config.scale}"
    missing = sorted(expected.keys() - found.keys())
    if missing:
        raise CheckpointError(f"{mismatch}: it lacks {missing[0]}")
    extra = sorted(found.keys() - expected.keys())
    if extra:
        raise CheckpointError(f"{mismatch}: it has an unexpected tensor {extra[0]}")
    for key, (shape, floating) in found.items():
        if shape != expected[key]:
            raise CheckpointError(f"{mismatch}: {key} has shape {list(shape)}, A2N's is {list(expected[key])}")
        if not floating:
            raise CheckpointError(f"{mismatch}: {key} does not hold floating-point weights")


def _build(config: A2NConfig, state: dict[str, torch.Tensor], path: Path) -> A2N:
    damaged = next((key for key, value in state.items() if not torch.isfinite(value).all()), None)
    if damaged is not None:
        raise CheckpointError(f"{path.name}: {damaged} holds NaN or infinite weights; the model is damaged")
    model = A2N(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path.name} does not match A2N x{config.scale}: {first}") from None
    return model.eval()
