"""OpenVINO: Intel's runtime, on the CPU (any x86/ARM) and on Intel GPUs (`--device gpu`).

The graph is the cached ONNX export, converted once to OpenVINO IR (cached beside it, keyed
by the OpenVINO version too); compiled blobs are cached by OpenVINO itself. Whole images and
batches in one graph; exact tiling through the stage graphs (staged.py).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from animesr.atomic import replaced_on_success
from animesr.checkpoint import LoadedModel
from animesr.errors import DeviceError, InputError
from animesr.inference.backends.base import Capabilities
from animesr.inference.backends.export import INPUT_NAME, cache_dir, cached_onnx
from animesr.inference.backends.staged import GraphRunner, RuntimeStages
from animesr.inference.tiling import TileCallback, staged_forward, trunk_tile

# precision setting -> (OpenVINO inference precision hint, our name); None: the device's default
_HINTS = {"exact": "f32", "fp32": "f32", "bf16": "bf16", "fp16": "f16", "fast": None}
_NAMES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}
_CAPABILITY = {"bf16": "BF16", "f16": "FP16"}


def openvino_target(device: str) -> str:
    """Our --device -> OpenVINO's: auto/cpu -> CPU, gpu/gpu.N -> GPU/GPU.N."""
    name = device.lower()
    if name in ("auto", "cpu"):
        return "CPU"
    if name == "gpu" or (name.startswith("gpu.") and name[4:].isdigit()):
        return name.upper()
    raise DeviceError(f"--backend openvino runs on cpu, gpu or gpu.N (Intel GPUs), not {device!r}")


class OpenVINOBackend:
    name = "openvino"
    device = torch.device("cpu")
    compiled = False
    capabilities = Capabilities(exact_tiling=True, batch=True, precisions=("float32", "bfloat16", "float16"))

    def __init__(self, loaded: LoadedModel, device: str, precision: str) -> None:
        import openvino as ov

        core = _core()
        self.target = openvino_target(device)
        if self.target not in core.available_devices:
            raise DeviceError(f"OpenVINO has no {self.target} device here (it has: "
                              f"{', '.join(core.available_devices) or 'none'})")
        hint = _hint(core, self.target, precision)
        core.set_property({"CACHE_DIR": str(cache_dir() / "openvino-blobs")})
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if hint == "f32":
            config["EXECUTION_MODE_HINT"] = "ACCURACY"
        self.precision = _NAMES[hint]
        self._ov, self._core, self._config, self._loaded = ov, core, config, loaded
        self._compile(cached_onnx(loaded))  # fails here, not on the first image, if the graph cannot compile
        self._whole: tuple[tuple[int, ...], GraphRunner] | None = None
        self._stages: RuntimeStages | None = None

    def _compile(self, onnx_path: Path, shapes: dict[str, tuple[int, ...]] | None = None, keep: bool = False):
        """A runner of the graph, compiled for these input shapes when given (static shapes run about
        7 % faster and keep one output buffer). Its outputs are the request's own buffers, overwritten
        by its next run, unless `keep` (a copy each)."""
        model = _cached_ir(self._ov, self._core, onnx_path)
        if shapes:
            model.reshape({name: list(shape) for name, shape in shapes.items()})
        request = self._core.compile_model(model, self.target, self._config).create_infer_request()
        outputs = range(len(request.model_outputs))

        def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
            request.infer(inputs, share_inputs=True)  # contiguous float32 arrays: read in place
            return [np.array(request.get_output_tensor(k).data, copy=keep) for k in outputs]

        return run

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Compiled for the shape of `x`, once per shape in a row (video frames: once)."""
        if self._whole is None or self._whole[0] != tuple(x.shape):
            self._whole = None  # its memory goes before the next shape's graph is compiled
            runner = self._compile(cached_onnx(self._loaded), {INPUT_NAME: tuple(x.shape)}, keep=True)
            self._whole = (tuple(x.shape), runner)
        pixels = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)
        return torch.from_numpy(self._whole[1]({INPUT_NAME: pixels})[0])

    def run_tiled(self, x: torch.Tensor, tile: int, on_tile: TileCallback | None) -> torch.Tensor:
        if self._stages is None:  # compiled on the first tiled image only
            self._stages = RuntimeStages(self._loaded, self._compile)
        with torch.inference_mode():
            return staged_forward(self._stages, x.float().contiguous(), tile, self.device, on_tile,
                                  trunk=trunk_tile(tile, self._loaded.scale))


@functools.cache
def _core():
    """One OpenVINO Core per process: creating a Core per model crashes the process (SIGSEGV) after
    a few dozen (seen here in the test suite; ultralytics/ultralytics#25864)."""
    import openvino as ov

    return ov.Core()


def _hint(core, target: str, precision: str) -> str:
    if precision == "auto":
        precision = "exact"
    if precision not in _HINTS:
        raise InputError(f"unknown precision {precision!r}")
    hint = _HINTS[precision]
    if hint is None:  # fast: the device's own default (bf16 on CPUs with it, f16 on GPUs)
        return core.get_property(target, "INFERENCE_PRECISION_HINT").get_type_name()
    capabilities = core.get_property(target, "OPTIMIZATION_CAPABILITIES")
    if hint in _CAPABILITY and _CAPABILITY[hint] not in capabilities:
        raise DeviceError(f"OpenVINO's {target} has no {_NAMES[hint]} here; use --precision fp32 or fast")
    return hint


def _cached_ir(ov, core, onnx_path: Path):
    xml = onnx_path.with_name(f"{onnx_path.stem}-openvino{ov.__version__.split('-')[0]}.xml")
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        model = core.read_model(str(onnx_path))
        with replaced_on_success(xml, ".xml") as temporary:
            ov.save_model(model, str(temporary), compress_to_fp16=False)
            temporary.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    return core.read_model(str(xml))
