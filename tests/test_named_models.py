"""--model clean|real, --denoise, evaluate --degrade/--compare, train --degrade."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animesr.checkpoint import load_checkpoint, save_checkpoint
from animesr.cli import _register, app
from animesr.config import InferenceSettings, TrainSettings
from animesr.data.degrade import PRESETS
from animesr.errors import CheckpointError, DatasetError, InputError, UsageError
from animesr.imaging import bicubic_resize, read_image, write_image
from animesr.inference.upscaler import Upscaler
from animesr.pretrained import MODELS_ENV, model_choice, resolve_model, shipped_model_path
from animesr.training.loop import train
from animesr.training.metrics import psnr_y
from animesr.training.validation import degraded_lr
from conftest import handled, small_dataset, smooth_image, tiny_model

_register()


@pytest.fixture
def models(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(MODELS_ENV, str(folder))
    save_checkpoint(shipped_model_path(2, "clean"), tiny_model(2, seed=0), 1.0)
    save_checkpoint(shipped_model_path(2, "real"), tiny_model(2, seed=1), 1.0)
    return folder


def _weights(loaded) -> dict[str, torch.Tensor]:
    return loaded.model.state_dict()


def test_names_pick_the_shipped_files_and_paths_stay_paths(models: Path) -> None:
    assert model_choice("real") == "real" and model_choice("my.safetensors") == Path("my.safetensors")
    assert resolve_model("real", 2).source == str(models / "a2n-anime-real-x2.safetensors")
    assert resolve_model(None, 2).source == str(models / "a2n-anime-x2.safetensors")


def test_denoise_interpolates_the_clean_and_real_weights(models: Path) -> None:
    clean, real = _weights(resolve_model("clean", 2)), _weights(resolve_model("real", 2))
    assert all(torch.equal(_weights(resolve_model(None, 2, 0.0))[k], clean[k]) for k in clean)
    assert all(torch.allclose(_weights(resolve_model(None, 2, 1.0))[k], real[k]) for k in real)
    half = _weights(resolve_model(None, 2, 0.5))
    assert all(torch.allclose(half[k], (clean[k] + real[k]) / 2, atol=1e-6) for k in clean)
    assert any(not torch.equal(clean[k], real[k]) for k in clean)


def test_denoise_needs_both_models_a_range_and_no_path(models: Path) -> None:
    with pytest.raises(UsageError, match="between 0 and 1"):
        resolve_model(None, 2, 1.5)
    for model in (Path("x.safetensors"), "real", "clean"):  # "real" was silently ignored
        with pytest.raises(UsageError, match="leave out --model"):
            resolve_model(model, 2, 0.5)
    (models / "a2n-anime-real-x2.safetensors").unlink()
    with pytest.raises(CheckpointError, match="needs the real x2 model"):
        resolve_model(None, 2, 0.5)
    with pytest.raises(CheckpointError, match="no real x2 model ships"):
        resolve_model("real", 2)


def test_upscale_image_denoise_uses_the_mixed_model(models: Path, tmp_path: Path) -> None:
    image = smooth_image(20, 24)
    write_image(tmp_path / "in.png", image)
    result = CliRunner().invoke(app, ["upscale-image", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"),
                                      "--scale", "2", "--denoise", "0.3"])
    assert result.exit_code == 0, result.output
    expected = Upscaler(resolve_model(None, 2, 0.3), InferenceSettings(device="cpu")).upscale(image)
    assert np.array_equal(read_image(tmp_path / "out" / "in.png"), expected)


@pytest.mark.parametrize("command", ["upscale-image", "upscale-video", "evaluate"])
def test_bad_model_options_are_one_line_before_any_work(models: Path, tmp_path: Path, command: str) -> None:
    source = tmp_path / ("in.mkv" if command == "upscale-video" else "in.png")
    if command == "upscale-video":
        source.write_bytes(b"not read before the options are checked")
    else:  # one image named alone is read before its model loads: a readable one lets the model fail
        write_image(source, smooth_image(20, 24))
    notes = tmp_path / "notes.txt"
    notes.write_text("a text file given as a model was '(Memo value not found at index 101)'")
    out = ["-o", str(tmp_path / "out" / ("o.mkv" if command == "upscale-video" else ""))]
    base = [command, str(source), "--scale", "2", *([] if command == "evaluate" else out)]
    runner = CliRunner()
    for extra, expected, code in [
        (["--denoise", "1.5"], "--denoise must be between 0 and 1", InputError.exit_code),
        (["--denoise", "0.5", "--model", str(tmp_path / "m.safetensors")], "leave out --model",
         InputError.exit_code),
        (["--denoise", "0.5", "--model", "real"], "leave out --model", InputError.exit_code),
        (["--model", ""], "--model must be clean, real or a model file", InputError.exit_code),
    ] + ([] if command == "upscale-video" else [  # a video's source is probed before its model loads
        (["--model", str(tmp_path)], "is a folder, not a model file", CheckpointError.exit_code),
        (["--model", str(notes)], "notes.txt is not a model file", CheckpointError.exit_code),
    ]):
        result = runner.invoke(app, base + extra)
        flat = " ".join(result.output.split())
        assert result.exit_code == code and expected in flat and handled(result), result.output
    assert not (tmp_path / "out").exists()


def test_evaluate_degraded_with_a_comparison(models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "hr"
    folder.mkdir()
    hr = smooth_image(48, 64, seed=4)
    write_image(folder / "a.png", hr)
    report = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--scale", "2", "--model", "clean",
                                      "--compare", "real", "--degrade", "dvd", "--seed", "3",
                                      "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "dvd LR, seed 3" in result.output
    scores = json.loads(report.read_text())
    lr = degraded_lr(hr, 2, PRESETS["dvd"], 3, 0)
    assert scores["images"][0]["bicubic_psnr"] == pytest.approx(psnr_y(bicubic_resize(lr, 64, 48), hr, 2))
    real = Upscaler(resolve_model("real", 2), InferenceSettings(device="cpu")).upscale(lr)
    assert scores["compare"]["images"][0]["psnr"] == pytest.approx(psnr_y(real, hr, 2), abs=1e-6)
    assert scores["degrade"] == "dvd" and scores["compare"]["model"].endswith("a2n-anime-real-x2.safetensors")
    bad = CliRunner().invoke(app, ["evaluate", str(folder), "--scale", "2", "--degrade", "tv"])
    assert bad.exit_code == InputError.exit_code and "--degrade must be one of" in bad.output and handled(bad)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_dataset(tmp_path_factory.mktemp("named-data"))


def _tiny(data: Path, out: Path, **changes) -> TrainSettings:
    base = dict(data=data, scale=2, out=out, iters=3, batch_size=2, patch=8, lr=1e-3, workers=0, channels=8,
                up_channels=8, blocks=1, checkpoint_every=5, seed=0, device="cpu")
    return TrainSettings(**{**base, **changes})


def test_train_on_degraded_input_records_it_and_validates_on_degraded_lr(dataset: Path, tmp_path: Path) -> None:
    val = tmp_path / "val"
    val.mkdir()
    write_image(val / "v.png", smooth_image(40, 48, seed=9))
    result = train(_tiny(dataset, tmp_path / "run", degrade="dvd", clean_share=0.2, sharpen_target=0.5,
                         val_dir=val, val_every=3))
    training = load_checkpoint(tmp_path / "run" / "best.safetensors").training
    assert training["degrade"] == "dvd" and training["clean_share"] == 0.2 and training["sharpen_target"] == 0.5
    assert training["segments"][0]["degrade"] == "dvd"
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    bicubic = [r["val_bicubic_psnr"] for r in log if "val_bicubic_psnr" in r][0]
    hr = smooth_image(40, 48, seed=9)
    lr = degraded_lr(hr, 2, PRESETS["dvd"], 0, 0)
    assert bicubic == pytest.approx(psnr_y(bicubic_resize(lr, 48, 40), hr, 2))
    assert result.step == 3



def test_train_on_a_mix_of_presets_records_the_mix(dataset: Path, tmp_path: Path) -> None:
    result = train(_tiny(dataset, tmp_path / "run", degrade="dvd:0.7,vhs:0.3", clean_share=0.1))
    training = load_checkpoint(tmp_path / "run" / "last.safetensors").training
    assert training["degrade"] == "dvd:0.7,vhs:0.3" and result.step == 3

def test_train_degrade_options_are_checked(dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", "--data", str(dataset), "--scale", "2", "--out", str(tmp_path / "run"), "--iters", "1",
            "--workers", "0", "--channels", "8", "--blocks", "1", "--up-channels", "8", "--patch", "8"]
    for extra, expected in [(["--degrade", "tv"], "--degrade must be one of"),
                            (["--degrade", "dvd:1,tv:1"], "--degrade mix: 'tv' is not one of"),
                            (["--degrade", "dvd", "--clean-share", "2"], "--clean-share"),
                            (["--sharpen-target", "-1"], "--sharpen-target")]:
        result = runner.invoke(app, base + extra)
        assert result.exit_code != 0 and expected in result.output and handled(result), (extra, result.output)


def test_a_dataset_without_hr_crops_is_refused(dataset: Path, tmp_path: Path) -> None:
    from animesr.data.dataset import PairedPatches

    copy = tmp_path / "no-hr.h5"
    copy.write_bytes(dataset.read_bytes())
    with h5py.File(copy, "a") as h5:
        del h5["hr"]
    with pytest.raises(DatasetError, match="no HR crops"):
        PairedPatches(copy, 2, 8, degradation=None)
