"""ONNX export of a loaded A2N, cached on disk.

The graph takes `image` (N×3×H×W float32, in the model's own value range: see
`LoadedModel.value_range`) and gives `upscaled` (N×3×sH×sW); batch, height and width are
dynamic. Exported once per weights, opset and exporter version, under the cache folder
($ANIMESR_CACHE, else ~/.cache/animesr), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch

from animesr.atomic import replaced_on_success
from animesr.checkpoint import LoadedModel
from animesr.errors import OutputError

CACHE_ENV = "ANIMESR_CACHE"
OPSET = 18
SHAPE_POLICY = "dynamic-nhw"  # one graph serves every batch and image size
INPUT_NAME, OUTPUT_NAME = "image", "upscaled"


def cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "animesr"


def weights_digest(loaded: LoadedModel) -> str:
    """SHA-256 of the network: its shape and every tensor's name and fp32 bytes."""
    digest = hashlib.sha256(json.dumps(loaded.model.config.__dict__, sort_keys=True).encode())
    for name, tensor in loaded.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_onnx(loaded: LoadedModel, stage: str = "full") -> Path:
    """The ONNX file of this network (or of one of its tiling stages, see staged.py) in the cache,
    exported now when missing."""
    key = f"{weights_digest(loaded)[:24]}-opset{OPSET}-{SHAPE_POLICY}-torch{torch.__version__.split('+')[0]}"
    path = cache_dir() / "onnx" / f"a2n-x{loaded.scale}-{key}-{stage}.onnx"
    if not path.is_file():
        if stage == "full":
            export_onnx(loaded, path)
        else:
            from animesr.inference.backends.staged import export_stage

            export_stage(loaded, stage, path)
    return path


def export_onnx(loaded: LoadedModel, path: Path) -> None:
    """Write the whole network's ONNX graph to `path` (atomically; folders created)."""
    example = torch.rand(1, 3, 32, 32) * loaded.value_range
    export_module(float32_copy(loaded), (example,), [INPUT_NAME], [OUTPUT_NAME], path, loaded=loaded)


_INPUT_AXES = {4: {0: "n", 2: "h", 3: "w"}, 2: {0: "n"}}
_OUTPUT_AXES = {4: {0: "n", 2: "sh", 3: "sw"}, 2: {0: "n"}}
_MASK_AXES = {"rows": "h", "cols": "w"}  # 1-D inputs: masks along the height or width of the 4-D input


def export_module(module: torch.nn.Module, examples: tuple[torch.Tensor, ...], input_names: list[str],
                  output_names: list[str], path: Path, loaded: LoadedModel | None = None) -> None:
    """One ONNX graph, N×C×H×W inputs dynamic in N, H and W (2-D inputs in N; 1-D inputs are
    masks along H or W, by their name: rows or cols)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {path.parent}: {error.strerror or error}") from None
    with torch.no_grad():
        outputs = module(*examples)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    axes = {name: _INPUT_AXES.get(x.dim(), {0: _MASK_AXES.get(name, name)}) for name, x in zip(input_names, examples)}
    axes |= {name: _OUTPUT_AXES[y.dim()] for name, y in zip(output_names, outputs)}
    try:
        with replaced_on_success(path, ".onnx") as temporary, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(module, examples, str(temporary), opset_version=OPSET, dynamo=False,
                              input_names=input_names, output_names=output_names, dynamic_axes=axes)
            if loaded is not None:
                _describe(temporary, loaded)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


def float32_copy(loaded: LoadedModel) -> torch.nn.Module:
    import copy

    return copy.deepcopy(loaded.model).to("cpu", torch.float32, memory_format=torch.contiguous_format).eval()


def _describe(path: Path, loaded: LoadedModel) -> None:
    """Self-describing like our checkpoints: the scale and the input value range in the file's metadata."""
    import onnx

    graph = onnx.load(str(path))
    for key, value in (("format", "animesr-a2n"), ("scale", str(loaded.scale)),
                       ("value_range", f"{loaded.value_range:g}"), ("source", loaded.label)):
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))

