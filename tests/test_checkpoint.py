"""Checkpoints: our safetensors format, the authors' .pt, the value range, and clear errors."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
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
from animesr.model import A2N, A2NConfig, from_authors_state_dict
from animesr.model import names
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
    with pytest.raises(CheckpointError, match="random.pt is not a model file"):
        load_checkpoint(path, scale=2)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.safetensors"):
        load_checkpoint(path, scale=2)


def test_a_png_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    Image.fromarray(smooth_image(16, 16)).save(path)
    with pytest.raises(CheckpointError, match="picture.png is not a model file"):
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
    # forged shapes: a traceback, a terabyte model and a hundred million blocks before the fix
    ("channels", "-8", "channels = -8; A2N allows 4 to 1024"),
    ("channels", str(10**6), "channels = 1000000; A2N allows"),
    ("up_channels", "0", "up_channels = 0; A2N allows"),
    ("blocks", str(10**8), "blocks = 100000000; A2N allows"),
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


# ---- forged and damaged weights ----------------------------------------------------------------

def _authors_state(scale: int) -> dict[str, torch.Tensor]:
    """A state dict under the authors' names, as their .pt files hold it."""
    top = {ours: theirs for theirs, ours in names._TOP_LEVEL.items()}
    part = {ours: theirs for theirs, ours in names._BLOCK_PARTS.items()}
    state = {}
    for key, value in A2N(A2NConfig(scale=scale)).state_dict().items():
        block = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if block:
            index, name, kind = block.groups()
            state[f"AAB_trunk.{index}.{part.get(name, name)}.{kind}"] = value
        else:
            base, kind = key.rsplit(".", 1)
            state[f"{top[base]}.{kind}"] = value
    assert from_authors_state_dict(state).keys() == A2N(A2NConfig(scale=scale)).state_dict().keys()
    return state


def _save_ours_with(path: Path, change) -> None:
    save_checkpoint(path, tiny_model(2), value_range=1.0)
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path: Path, bad: float) -> None:
    ours = tmp_path / "m.safetensors"
    _save_ours_with(ours, lambda tensors: tensors["tail.weight"].view(-1).__setitem__(5, bad))
    with pytest.raises(CheckpointError, match="m.safetensors: tail.weight holds NaN or infinite weights"):
        load_checkpoint(ours)
    authors = _authors_state(2)
    authors["HRconv1.bias"][0] = bad
    torch.save(authors, tmp_path / "aan.pt")
    with pytest.raises(CheckpointError, match="aan.pt: upsample.0.refine.bias holds NaN or infinite"):
        load_checkpoint(tmp_path / "aan.pt", scale=2)


def test_integer_tensors_are_not_weights(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    _save_ours_with(path, lambda tensors: tensors.update({"head.bias": tensors["head.bias"].to(torch.int32)}))
    with pytest.raises(CheckpointError, match="head.bias does not hold floating-point weights"):
        load_checkpoint(path)


def test_a_tensor_of_another_shape_is_refused_before_it_is_read(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "m.safetensors"
    _save_ours_with(path, lambda tensors: tensors.update({"tail.weight": torch.zeros(3, 8, 5, 5)}))
    monkeypatch.setattr("animesr.checkpoint.load_file", lambda *a, **k: pytest.fail("tensors were read"))
    with pytest.raises(CheckpointError, match=r"does not match A2N x2: tail.weight has shape \[3, 8, 5, 5\]"):
        load_checkpoint(path)


def test_authors_file_with_a_zip_layout_loads(tmp_path: Path) -> None:
    state = _authors_state(4)
    torch.save(state, tmp_path / "new.pt")  # torch's current (zip) format, read memory-mapped
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)  # the authors' (legacy)
    x = torch.rand(1, 3, 6, 5)
    new, old = load_checkpoint(tmp_path / "new.pt"), load_checkpoint(tmp_path / "old.pt")
    assert new.scale == old.scale == 4
    assert torch.equal(_forward(new.model, x), _forward(old.model, x))
    assert new.model.state_dict()["tail.bias"].equal(state["conv_last.bias"])


def test_authors_file_with_a_string_for_a_tensor(tmp_path: Path) -> None:
    state = _authors_state(2)
    state["conv_first.weight"] = "not a tensor"
    torch.save(state, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="s.pt: conv_first.weight is a str, not a tensor"):
        load_checkpoint(tmp_path / "s.pt", scale=2)


def test_authors_file_with_keys_that_are_not_names(tmp_path: Path) -> None:
    state: dict = _authors_state(2)
    state[7] = torch.zeros(1)
    torch.save(state, tmp_path / "k.pt")
    with pytest.raises(CheckpointError, match="k.pt is not an A2N checkpoint"):
        load_checkpoint(tmp_path / "k.pt", scale=2)


def test_a_small_file_with_a_huge_stride_zero_tensor(tmp_path: Path) -> None:
    # 2·10¹² half-precision elements that share one stored value: a few KB on disk,
    # 8 TB once converted to float32
    state = _authors_state(2)
    state["conv_first.weight"] = torch.zeros(1, dtype=torch.float16).expand(2 * 10**12)
    path = tmp_path / "wide.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"wide.pt does not match A2N x2: head.weight has shape \[2000000000000\]"):
        load_checkpoint(path, scale=2)


def test_a_legacy_file_claiming_more_elements_than_its_size(tmp_path: Path, monkeypatch) -> None:
    """torch allocates what a legacy file's storages claim before reading them: the claim is
    compared with the file size first, and torch is never asked."""
    state = _authors_state(2)
    count = state["conv_first.weight"].numel()  # 40·3·3·3 = 1080
    state["conv_first.weight"] = torch.zeros(count + 7)  # a count found nowhere else in the file
    path = tmp_path / "claims.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    small, huge = b"M" + struct.pack("<H", count + 7), b"\x8a\x06" + (5 * 10**11).to_bytes(6, "little")
    assert data.count(small) == 2  # the storage's element count and the tensor's size
    path.write_bytes(data.replace(small, huge))  # protocol 2 has no frames: lengths may change
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(CheckpointError, match=r"claims.pt claims [\d,]+ tensor elements in a [\d,]+-byte file"):
        load_checkpoint(path, scale=2)


def test_a_zip_file_claiming_more_elements_than_it_holds(tmp_path: Path) -> None:
    """The zip format is memory-mapped: a storage is a view of the file and cannot be larger."""
    import zipfile

    state = _authors_state(2)
    count = state["conv_first.weight"].numel() + 7
    state["conv_first.weight"] = torch.zeros(count)
    torch.save(state, tmp_path / "real.pt")
    small, huge = b"M" + struct.pack("<H", count), b"\x8a\x06" + (5 * 10**11).to_bytes(6, "little")
    with zipfile.ZipFile(tmp_path / "real.pt") as real, zipfile.ZipFile(tmp_path / "claims.pt", "w") as forged:
        for info in real.infolist():
            data = real.read(info)
            forged.writestr(info, data.replace(small, huge) if info.filename.endswith("data.pkl") else data)
    with pytest.raises(CheckpointError, match="claims.pt is not a checkpoint animesr can read"):
        load_checkpoint(tmp_path / "claims.pt", scale=2)


def test_save_checkpoint_says_what_is_wrong_in_our_words(tmp_path: Path) -> None:
    """These were IsADirectoryError, SafetensorError, TypeError and AttributeError."""
    from animesr.errors import InputError, OutputError

    model = A2N(A2NConfig(scale=2, channels=8, up_channels=8, blocks=1))
    with pytest.raises(OutputError, match="it is a folder"):
        save_checkpoint(tmp_path, model, 1.0)
    with pytest.raises(OutputError, match="does not exist"):
        save_checkpoint(tmp_path / "missing" / "m.safetensors", model, 1.0)
    with pytest.raises(InputError, match="plain JSON"):
        save_checkpoint(tmp_path / "m.safetensors", model, 1.0, training={"when": object()})
    with pytest.raises(InputError, match="takes an A2N network"):
        save_checkpoint(tmp_path / "m.safetensors", None, 1.0)
    assert list(tmp_path.iterdir()) == []
