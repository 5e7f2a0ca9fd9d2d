"""Inference backends: reduced precision, the caller's model left alone, OpenVINO and ONNX Runtime
against torch float32, the export cache, `--backend auto`, and what happens when a runtime is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from animesr import Upscaler
from animesr.config import InferenceSettings
from animesr.errors import DeviceError, InputError
from animesr.inference.backends import installed
from animesr.inference.backends import choose
from conftest import smooth_image, tiny_loaded

TORCH_FP32 = InferenceSettings(device="cpu", backend="torch", precision="fp32")
RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(not installed(name), reason=f"{name} is not installed"))
            for name in ("openvino", "onnxruntime")]


@pytest.fixture(scope="module", autouse=True)
def module_cache(tmp_path_factory):
    """Exports go to a cache of this module's own (shared by its tests), never to the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANIMESR_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMESR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def levels(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference in 8-bit grey levels (16-bit values are divided by 257)."""
    unit = 257.0 if a.dtype == np.uint16 else 1.0
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / unit)


# ---- reduced precision on the CPU (torch) -----------------------------------------------------

@pytest.mark.parametrize("value_range", [1.0, 255.0])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_matches_float32(precision: str, dtype, value_range: float) -> None:
    # 16-bit pixels used to be cast to fp16 before scaling: 65535 -> inf, and A2N's pooling spread the
    # NaN over the whole picture (a black image). Scaling first keeps them finite.
    image = smooth_image(24, 20, dtype=dtype)
    reference = Upscaler(tiny_loaded(2, value_range), TORCH_FP32).upscale(image)
    settings = InferenceSettings(device="cpu", backend="torch", precision=precision)
    out = Upscaler(tiny_loaded(2, value_range), settings).upscale(image)
    assert out.mean() > 0.5 * reference.mean()  # not black
    # bf16 keeps 8 significant bits: above 128 its spacing is one grey level, so unrounded
    # 16-bit output can be up to two 8-bit levels off; fp16 (11 bits) and 8-bit output stay within one
    assert levels(out, reference) <= (2.0 if precision == "bf16" and dtype == np.uint16 else 1.0)


def test_the_loaded_model_is_never_changed() -> None:
    loaded = tiny_loaded(2)
    before = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}
    image = smooth_image(16, 16)
    first = Upscaler(loaded, TORCH_FP32)
    expected = first.upscale(image)
    Upscaler(loaded, InferenceSettings(device="cpu", backend="torch", precision="bf16"))  # used to turn it bf16
    for name, tensor in loaded.model.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, before[name]), name
        assert tensor.is_contiguous(), name  # not switched to channels-last either
    np.testing.assert_array_equal(first.upscale(image), expected)  # the first Upscaler is unaffected


# ---- other runtimes against torch float32 -------------------------------------------------------

@pytest.mark.parametrize("backend", RUNTIMES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_runtime_matches_torch_float32(backend: str, scale: int) -> None:
    image = smooth_image(21, 26, channels=4)
    reference = Upscaler(tiny_loaded(scale, 255.0), TORCH_FP32).upscale(image)
    upscaler = Upscaler(tiny_loaded(scale, 255.0), InferenceSettings(device="cpu", backend=backend))
    assert upscaler.backend.name == backend and upscaler.precision == "float32"
    out = upscaler.upscale(image)
    assert out.shape == reference.shape and levels(out, reference) <= 1.0
    frames = np.stack([smooth_image(9, 11, seed=i) for i in range(3)])  # a batch of video frames, other shape
    batch = upscaler.upscale_frames(frames)
    assert levels(batch, Upscaler(tiny_loaded(scale, 255.0), TORCH_FP32).upscale_frames(frames)) <= 1.0


@pytest.mark.parametrize("backend", RUNTIMES)
@pytest.mark.parametrize("scale", [2, 4])
def test_tiles_on_a_runtime_are_exact_and_run_on_its_stage_graphs(backend: str, scale: int, private_cache,
                                                                   monkeypatch) -> None:
    def no_torch_tiles(*args, **kwargs):
        raise AssertionError("tiled on torch")

    monkeypatch.setattr("animesr.inference.backends.torch_backend.tiled_forward", no_torch_tiles)
    image = smooth_image(70, 50)
    reference = Upscaler(tiny_loaded(scale), TORCH_FP32).upscale(image)
    whole = Upscaler(tiny_loaded(scale), InferenceSettings(device="cpu", backend=backend)).upscale(image)
    tiled_upscaler = Upscaler(tiny_loaded(scale), InferenceSettings(device="cpu", backend=backend, tile=32))
    tiles: list[int] = []
    tiled = tiled_upscaler.upscale(image, on_tile=lambda done, total: tiles.append(done))
    assert tiles and levels(tiled, whole) <= 1.0 and levels(tiled, reference) <= 1.0
    stages = {path.stem.rsplit("-", 1)[1] for path in (private_cache / "onnx").glob("*.onnx")}
    assert stages == {"full", "head", "last", "reconstruct"}  # the tiny model has one block: no middle ones


@pytest.mark.parametrize("backend", RUNTIMES)
def test_a_runtime_holds_one_stage_graph_at_a_time(backend: str, monkeypatch) -> None:
    """A compiled graph keeps its working memory at its largest tile: all of them held at once needed
    17 times one graph's memory (8 GB at 1920×1080 x2)."""
    import weakref

    from animesr.checkpoint import LoadedModel
    from animesr.model import A2N, A2NConfig

    torch.manual_seed(0)
    loaded = LoadedModel(model=A2N(A2NConfig(scale=2, channels=8, up_channels=8, blocks=3)).eval(),
                         value_range=1.0, source="tiny, three blocks")
    upscaler = Upscaler(loaded, InferenceSettings(device="cpu", backend=backend, tile=32))
    compile_graph, live, most = upscaler.backend._compile, weakref.WeakSet(), []

    class Runner:
        def __init__(self, path: Path, shapes) -> None:
            self.run, self.stage = compile_graph(path, shapes), path.stem.rsplit("-", 1)[1]

        def __call__(self, inputs):
            return self.run(inputs)

    def counted(path: Path, shapes) -> Runner:
        runner = Runner(path, shapes)
        live.add(runner)
        most.append(len(live))
        return runner

    monkeypatch.setattr(upscaler.backend, "_compile", counted)
    image = smooth_image(70, 50)
    tiled = upscaler.upscale(image)
    assert len(most) == 5 and max(most) == 1  # head, block0, block1, last, reconstruct: each compiled alone
    assert levels(tiled, Upscaler(loaded, TORCH_FP32).upscale(image)) <= 1.0


@pytest.mark.parametrize("backend", RUNTIMES)
def test_export_is_cached_per_weights(backend: str, private_cache, monkeypatch) -> None:
    from animesr.inference.backends import export

    Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", backend=backend))
    onnx_files = sorted((private_cache / "onnx").glob("*-full.onnx"))
    assert len(onnx_files) == 1

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although cached")

    monkeypatch.setattr(export, "export_onnx", no_export)
    Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", backend=backend))  # same weights: from the cache
    with pytest.raises(AssertionError, match="exported again"):
        Upscaler(tiny_loaded(2, seed=1), InferenceSettings(device="cpu", backend=backend))  # other weights


def test_onnxruntime_refuses_reduced_precision() -> None:
    if not installed("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    with pytest.raises(InputError, match="float32 only"):
        Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", backend="onnxruntime", precision="fast"))


# ---- choosing ---------------------------------------------------------------------------------------

def test_auto_takes_the_measured_cpu_order_among_the_installed(monkeypatch) -> None:
    monkeypatch.setattr(choose, "installed", lambda name: name == "torch")
    assert Upscaler(tiny_loaded(2), InferenceSettings(device="cpu")).backend.name == "torch"
    if installed("onnxruntime"):
        monkeypatch.setattr(choose, "installed", lambda name: name in ("torch", "onnxruntime"))
        assert Upscaler(tiny_loaded(2), InferenceSettings(device="cpu")).backend.name == "onnxruntime"
    if installed("openvino"):
        monkeypatch.setattr(choose, "installed", installed)
        assert Upscaler(tiny_loaded(2), InferenceSettings(device="cpu")).backend.name == "openvino"


def test_auto_falls_back_to_torch_when_a_runtime_cannot_serve_the_settings(monkeypatch) -> None:
    monkeypatch.setattr(choose, "installed", lambda name: True)

    def broken(name, loaded, settings):
        if name != "torch":
            raise DeviceError(f"{name} cannot")
        return real(name, loaded, settings)

    real = choose._open
    monkeypatch.setattr(choose, "_open", broken)
    assert Upscaler(tiny_loaded(2), InferenceSettings(device="cpu")).backend.name == "torch"


def test_an_absent_runtime_asked_for_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(choose, "installed", lambda name: name == "torch")
    with pytest.raises(DeviceError, match=r'pip install "animesr\[openvino\]"'):
        Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", backend="openvino"))


def test_unknown_backend_and_precision_are_refused() -> None:
    with pytest.raises(ValueError, match="--backend"):
        InferenceSettings(backend="tensorflow")
    with pytest.raises(ValueError, match="--precision"):
        InferenceSettings(precision="int4")


# ---- the command line -----------------------------------------------------------------------------

def _cli(*args):
    from typer.testing import CliRunner

    from animesr.cli import _register, app
    from conftest import handled

    _register()
    result = CliRunner().invoke(app, [str(a) for a in args])
    result.flat = " ".join(result.output.split())
    assert handled(result), repr(result.exception)
    return result


@pytest.fixture
def tiny_x2_file(tmp_path):
    from animesr import save_checkpoint
    from conftest import tiny_model

    path = tmp_path / "tiny_x2.safetensors"
    save_checkpoint(path, tiny_model(2), value_range=255.0)
    return path


def test_first_line_names_the_backend_and_bad_options_are_one_line(tmp_path, tiny_x2_file, monkeypatch) -> None:
    from animesr.imaging import write_image

    write_image(tmp_path / "a.png", smooth_image(12, 16))
    common = [tmp_path / "a.png", "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2_file]
    result = _cli("upscale-image", *common, "--backend", "torch")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith("backend torch on cpu, float32")
    assert _cli("upscale-image", *common, "--backend", "tensorflow").exit_code == InputError.exit_code
    assert _cli("upscale-image", *common, "--precision", "int4").exit_code == InputError.exit_code
    monkeypatch.setattr(choose, "installed", lambda name: name == "torch")
    absent = _cli("upscale-image", *common, "--backend", "onnxruntime", "--overwrite")
    assert absent.exit_code == DeviceError.exit_code and 'pip install "animesr[onnxruntime]"' in absent.flat
    assert "Traceback" not in absent.output


def test_export_writes_a_self_describing_onnx_that_matches_torch(tmp_path, tiny_x2_file) -> None:
    if not installed("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnx
    import onnxruntime

    target = tmp_path / "model.onnx"
    result = _cli("export", tiny_x2_file, "-o", target)
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert meta["scale"] == "2" and meta["value_range"] == "255"
    x = torch.rand(2, 3, 13, 17) * 255
    from animesr import load_checkpoint

    with torch.no_grad():
        expected = load_checkpoint(tiny_x2_file).model(x).numpy()
    got = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-3
    assert _cli("export", tiny_x2_file, "-o", tmp_path / "model.txt").exit_code == InputError.exit_code
    assert _cli("export", tmp_path / "missing.safetensors", "-o", tmp_path / "new.onnx").exit_code == 4
    written = target.read_bytes()
    again = _cli("export", tiny_x2_file, "-o", target, "--scale", "2")
    assert again.exit_code == 3 and "--overwrite" in again.flat and target.read_bytes() == written
    assert _cli("export", tiny_x2_file, "-o", target, "--overwrite").exit_code == 0


@pytest.mark.parametrize("scale", ["0", "7"])
def test_export_checks_the_scale_before_reading_the_model(tmp_path, tiny_x2_file, scale: str) -> None:
    """The authors' .pt with --scale 7 was a ValueError traceback; ours exited 4, not 2."""
    for model in (tiny_x2_file, tmp_path / "missing.pt"):
        result = _cli("export", model, "-o", tmp_path / "m.onnx", "--scale", scale)
        assert result.exit_code == 2 and "--scale must be 2, 3 or 4" in result.flat


# ---- exactness on real pictures, with real weights --------------------------------------------------

@pytest.fixture(scope="module")
def real_crop() -> np.ndarray:
    from conftest import SHARED

    from animesr.imaging import read_image

    path = SHARED / "data" / "anime" / "val" / "peppercarrot_ep02_p3.jpg"
    if not path.is_file():
        pytest.skip(f"needs {path} (the read-only ../shared folder beside the checkout), which is absent")
    image = read_image(path)
    return np.ascontiguousarray(image[200:296, 300:420, :3])  # 96×120, lines and flat colour


def _real_model(scale: int):
    from conftest import OFFICIAL

    from animesr import load_checkpoint
    from animesr.pretrained import shipped_model_path

    path = shipped_model_path(4) if scale == 4 else OFFICIAL / f"aan_x{scale}.pt"  # ours at x4, the authors' else
    if not path.is_file():
        pytest.skip(f"needs {path}, which is absent")
    return load_checkpoint(path, scale=scale)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_exact_mode_matches_torch_float32_on_a_real_picture(scale: int, real_crop) -> None:
    runtimes = [name for name in ("openvino", "onnxruntime") if installed(name)]
    if not runtimes:
        pytest.skip("neither openvino nor onnxruntime is installed")
    loaded = _real_model(scale)
    reference = Upscaler(loaded, TORCH_FP32).upscale(real_crop)
    for backend in runtimes:
        out = Upscaler(loaded, InferenceSettings(device="cpu", backend=backend, precision="exact")).upscale(real_crop)
        assert levels(out, reference) <= 1.0, backend
        assert np.mean(out != reference) < 0.01, backend  # and almost every pixel identical
        if scale == 2:  # exact tiling through the runtime's stage graphs, with the authors' weights
            tiled = Upscaler(loaded, InferenceSettings(device="cpu", backend=backend, tile=40)).upscale(real_crop)
            assert levels(tiled, reference) <= 1.0, backend


def test_openvino_upscalers_share_one_core_and_many_load_in_one_process(tmp_path) -> None:
    # A new ov.Core per model crashed the process (SIGSEGV) after a few dozen models: one Core is shared.
    if not installed("openvino"):
        pytest.skip("openvino is not installed")
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from conftest import tiny_loaded, smooth_image\n"
        "from animesr import Upscaler\n"
        "from animesr.config import InferenceSettings\n"
        "ups = [Upscaler(tiny_loaded(2, seed=i % 3), InferenceSettings(device='cpu', backend='openvino'))\n"
        "       for i in range(60)]\n"
        "assert len({id(u.backend._core) for u in ups}) == 1\n"
        "print(sum(int(u.upscale(smooth_image(8, 8)).sum() > 0) for u in ups))\n"
    )
    tests = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, "-c", script], cwd=tests, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ANIMESR_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(tests)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "60"


def test_compiled_torch_gives_the_eager_picture_and_says_so() -> None:
    from animesr.inference.backends.base import describe

    loaded = tiny_loaded(2)
    frames = np.stack([smooth_image(24, 20, seed=s) for s in range(2)])
    eager = Upscaler(loaded, TORCH_FP32).upscale_frames(frames)
    compiled = Upscaler(loaded, InferenceSettings(device="cpu", backend="auto", precision="fp32", compile=True))
    assert compiled.backend.name == "torch" and describe(compiled.backend).endswith("float32, compiled")
    assert compiled._auto_tile(torch.zeros(1, 3, 432, 576)) is None  # a frame runs whole, in the compiled graph
    assert levels(compiled.upscale_frames(frames), eager) <= 1.0
    assert levels(compiled.upscale_frames(frames[::-1].copy()), eager[::-1]) <= 1.0  # the compiled graph again


def test_compile_is_refused_for_the_onnx_runtimes() -> None:
    for backend in ("openvino", "onnxruntime"):
        with pytest.raises(ValueError, match="--compile"):
            InferenceSettings(backend=backend, compile=True)
