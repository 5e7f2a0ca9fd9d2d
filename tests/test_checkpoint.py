"""Checkpoints: our safetensors format, the authors' .pt, the value range, and clear errors."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import safe_open, save_file

from animesr import Upscaler, load_checkpoint, save_checkpoint
from animesr.checkpoint import FORMAT_VERSION, LoadedModel, on_unit_range
from animesr.config import InferenceSettings
from animesr.errors import CheckpointError
from animesr.imaging import downscale, read_image
from animesr.model import A2N
from animesr.pretrained import MODELS_ENV, resolve_model
from animesr.training.metrics import psnr_y
from conftest import smooth_image, tiny_model

CPU = InferenceSettings(device="cpu")


def _forward(model: A2N, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    model = tiny_model(3)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, value_range=1.0, training={"iters": 10})
    loaded = load_checkpoint(path)
    assert loaded.scale == 3 and loaded.value_range == 1.0
    assert loaded.model.config == model.config
    assert loaded.training == {"iters": 10}
    x = torch.rand(1, 3, 11, 13)
    assert torch.equal(_forward(loaded.model, x), _forward(model, x))
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file left behind"


def test_metadata_fields_are_present(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    provenance = {"data": "anime.h5", "iters": 3000, "seed": 0}
    save_checkpoint(path, tiny_model(4), value_range=255.0, training=provenance)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "animesr"
    assert meta["format_version"] == str(FORMAT_VERSION)
    assert meta["arch"] == "a2n"
    assert (meta["scale"], meta["channels"], meta["up_channels"], meta["blocks"]) == ("4", "8", "8", "1")
    assert meta["value_range"] == "255"
    assert json.loads(meta["training"]) == provenance


def test_fp16_checkpoint_loads_as_fp32(tmp_path: Path) -> None:
    path = tmp_path / "half.safetensors"
    save_checkpoint(path, tiny_model(2), value_range=1.0, dtype=torch.float16)
    loaded = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


def test_value_range_must_be_1_or_255(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="value range"):
        save_checkpoint(tmp_path / "m.safetensors", tiny_model(2), value_range=100.0)


# ---- the value range is honoured --------------------------------------------------------------

def test_equivalent_255_and_1_models_give_the_same_image_tiny(tmp_path: Path) -> None:
    model_255 = tiny_model(2)
    save_checkpoint(tmp_path / "r255.safetensors", model_255, value_range=255.0)
    save_checkpoint(tmp_path / "r1.safetensors", on_unit_range(LoadedModel(model_255, 255.0, "r255")), value_range=1.0)
    image = smooth_image(24, 20)
    a = Upscaler(load_checkpoint(tmp_path / "r255.safetensors"), CPU).upscale(image)
    b = Upscaler(load_checkpoint(tmp_path / "r1.safetensors"), CPU).upscale(image)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.slow
def test_authors_weights_load_as_range_255_and_the_range_matters(tmp_path: Path, authors_x2: Path,
                                                                  set5_dir: Path) -> None:
    authors = load_checkpoint(authors_x2, scale=2)
    assert authors.value_range == 255.0 and authors.scale == 2
    hr = read_image(set5_dir / "butterfly.png")[64:160, 64:160]
    image = downscale(hr, 2)
    reference = Upscaler(authors, CPU).upscale(image)

    unit = tmp_path / "x2_unit.safetensors"
    save_checkpoint(unit, on_unit_range(authors), value_range=1.0)
    same = Upscaler(load_checkpoint(unit), CPU).upscale(image)
    assert np.abs(same.astype(int) - reference.astype(int)).max() <= 1

    # the trap: the authors' weights fed [0, 1] pixels give a much worse picture
    wrong = Upscaler(LoadedModel(load_checkpoint(authors_x2, scale=2).model, 1.0, "wrong"), CPU).upscale(image)
    assert psnr_y(reference, hr, border=2) > 34.0
    assert psnr_y(wrong, hr, border=2) < psnr_y(reference, hr, border=2) - 5.0


# ---- scale -----------------------------------------------------------------------------------

def test_a_range_255_model_becomes_the_same_function_on_range_1() -> None:
    model = tiny_model(4, seed=3)
    x = torch.rand(1, 3, 12, 10)
    unit = on_unit_range(LoadedModel(model=model, value_range=255.0, source="t"))
    with torch.no_grad():
        expected = model(x * 255) / 255
        assert torch.allclose(unit(x), expected, atol=1e-5)
        assert not torch.allclose(model(x), expected, atol=1e-3)  # the conversion did something
    assert on_unit_range(LoadedModel(model=model, value_range=1.0, source="t")).head.weight.equal(model.head.weight)


def test_scale_mismatch_with_ours_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x2.safetensors"
    save_checkpoint(path, tiny_model(2), value_range=1.0)
    with pytest.raises(CheckpointError, match=r"x2 model, but --scale is 3"):
        load_checkpoint(path, scale=3)
    assert load_checkpoint(path, scale=2).scale == 2


def test_authors_scale_comes_from_the_caller(authors_x2: Path) -> None:
    with pytest.raises(CheckpointError, match="give the scale"):
        load_checkpoint(authors_x2)
    with pytest.raises(CheckpointError, match="--scale is 4"):
        load_checkpoint(authors_x2, scale=4)
    assert load_checkpoint(authors_x2, scale=3).scale == 3  # x2 and x3 files share their keys


def test_resolve_model_names_the_missing_shipped_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match=r"no clean x3 model ships with animesr.*--model PATH"):
        resolve_model(None, 3)
    save_checkpoint(tmp_path / "a2n-anime-x3.safetensors", tiny_model(3), value_range=1.0)
    assert resolve_model(None, 3).scale == 3


# ---- files that are not our checkpoints --------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="random.pt is not a checkpoint"):
        load_checkpoint(path, scale=2)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.safetensors"):
        load_checkpoint(path, scale=2)


def test_a_png_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    Image.fromarray(smooth_image(16, 16)).save(path)
    with pytest.raises(CheckpointError, match="picture.png is not a checkpoint"):
        load_checkpoint(path, scale=2)


def test_safetensors_of_another_model(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(4, 3, 3, 3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not an animesr checkpoint"):
        load_checkpoint(path, scale=2)
    plain = tmp_path / "plain.safetensors"
    save_file({"conv.weight": torch.zeros(4, 3, 3, 3)}, str(plain))
    with pytest.raises(CheckpointError, match="not an animesr checkpoint"):
        load_checkpoint(plain)


def test_our_format_with_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "esrgan.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": "animesr", "format_version": "1",
                                                       "arch": "rrdbnet", "scale": "4"})
    with pytest.raises(CheckpointError, match="architecture 'rrdbnet', not A2N"):
        load_checkpoint(path)


def test_our_format_with_wrong_tensors(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, tiny_model(2), value_range=1.0)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    meta["channels"] = "16"  # metadata says 16 channels, tensors have 8
    tensors = load_checkpoint(path).model.state_dict()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="does not match A2N x2"):
        load_checkpoint(path)


def test_newer_format_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, tiny_model(2), value_range=1.0)
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["format_version"] = str(FORMAT_VERSION + 1)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="upgrade animesr"):
        load_checkpoint(path)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("scale", None, "lacks 'scale'"),
    ("channels", "forty", "bad checkpoint metadata"),
    ("scale", "8", "bad checkpoint metadata"),
    ("value_range", "100", "value range 100 is not 1 or 255"),
    ("training", "{not json", "bad checkpoint metadata"),
    ("format_version", "v2", "bad checkpoint format version"),
])
def test_damaged_metadata_is_a_checkpoint_error(tmp_path: Path, key: str, value: str | None, message: str) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, tiny_model(2), value_range=1.0)
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_pickle_of_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"body.0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not an A2N checkpoint"):
        load_checkpoint(path, scale=2)


def test_truncated_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_checkpoint(path, tiny_model(2), value_range=1.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.safetensors is (truncated or damaged|not a readable safetensors file)"):
        load_checkpoint(path)


def test_truncated_authors_checkpoint(tmp_path: Path, authors_x2: Path) -> None:
    path = tmp_path / "aan_x2_cut.pt"
    data = authors_x2.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="aan_x2_cut.pt is not a checkpoint animesr can read"):
        load_checkpoint(path, scale=2)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickles_with_code_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"AAB_trunk.0.ADM.0.weight": _Exploit(marker)}, path)
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(_Exploit(marker)))
    for candidate in (path, plain):
        with pytest.raises(CheckpointError):
            load_checkpoint(candidate, scale=2)
    assert not marker.exists(), "loading a checkpoint ran code from the pickle"
