"""animesr evaluate: per-image and mean Y-PSNR / SSIM beside bicubic, as a table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from animesr.checkpoint import save_checkpoint
from animesr.cli import _register, app
from animesr.errors import InputError, OutputError
from animesr.imaging import bicubic_resize, downscale, read_image, write_image
from animesr.training.metrics import psnr_y, ssim_y
from conftest import handled, smooth_image, tiny_model

_register()


def test_metrics_behave() -> None:
    image = smooth_image(40, 40)
    assert psnr_y(image, image, 2) == float("inf")
    assert ssim_y(image, image, 2) == pytest.approx(1.0)
    noisy = np.clip(image.astype(int) + 8, 0, 255).astype(np.uint8)
    assert 20 < psnr_y(noisy, image, 2) < 40 and ssim_y(noisy, image, 2) < 1.0


def test_evaluate_cli_table_and_json(tmp_path: Path) -> None:
    folder = tmp_path / "hr"
    folder.mkdir()
    images = {f"{i}.png": smooth_image(36, 44, seed=i) for i in range(2)}
    for name, image in images.items():
        write_image(folder / name, image)
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    report = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--scale", "2", "--model", str(model),
                                      "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "0.png" in result.output and "mean" in result.output
    scores = json.loads(report.read_text())
    assert [s["name"] for s in scores["images"]] == ["0.png", "1.png"]
    hr = images["1.png"]
    bicubic = bicubic_resize(downscale(hr, 2), 44, 36)
    assert scores["images"][1]["bicubic_psnr"] == pytest.approx(psnr_y(bicubic, hr, 2))
    mean = np.mean([s["psnr"] for s in scores["images"]])
    assert scores["mean"]["psnr"] == pytest.approx(mean)


def test_evaluate_without_a_shipped_model_says_how(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ANIMESR_MODELS", str(tmp_path))
    write_image(tmp_path / "a.png", smooth_image(24, 24))
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "a.png"), "--scale", "3"])
    assert result.exit_code != 0
    assert "no clean x3 model ships" in result.output and "--model" in result.output


def test_evaluate_tta_scores_the_self_ensemble(tmp_path: Path) -> None:
    hr = smooth_image(36, 44, seed=3)
    write_image(tmp_path / "a.png", hr)
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    reports = {}
    for flag in ([], ["--tta"]):
        report = tmp_path / f"scores{len(flag)}.json"
        result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "a.png"), "--scale", "2", "--model",
                                          str(model), "--json", str(report), *flag])
        assert result.exit_code == 0, result.output
        reports[bool(flag)] = json.loads(report.read_text())
    assert "TTA" in result.output
    assert reports[True]["tta"] is True and reports[False]["tta"] is False
    assert reports[True]["mean"]["bicubic_psnr"] == reports[False]["mean"]["bicubic_psnr"]
    assert reports[True]["mean"]["psnr"] != reports[False]["mean"]["psnr"]



def test_evaluate_on_a_mix_of_presets_degrades_image_i_from_seed_and_i(tmp_path: Path) -> None:
    from animesr.data.degrade import parse_preset
    from animesr.training.validation import degraded_lr
    folder = tmp_path / "hr"
    folder.mkdir()
    images = [smooth_image(48, 48, seed=i) for i in range(3)]
    for i, image in enumerate(images):
        write_image(folder / f"{i}.png", image)
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    report = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--scale", "2", "--model", str(model),
                                      "--degrade", "web:1,vhs:1", "--seed", "2", "--json", str(report)])
    assert result.exit_code == 0, result.output
    scores = json.loads(report.read_text())
    for i, hr in enumerate(images):
        lr = degraded_lr(hr, 2, parse_preset("web:1,vhs:1"), 2, i)
        assert scores["images"][i]["bicubic_psnr"] == pytest.approx(psnr_y(bicubic_resize(lr, 48, 48), hr, 2))


def test_evaluate_saves_the_pairs_it_scored_for_other_tools(tmp_path: Path) -> None:
    folder = tmp_path / "hr"
    folder.mkdir()
    images = {"a": smooth_image(50, 44, seed=1), "b": smooth_image(40, 40, seed=2)}
    for stem, image in images.items():
        write_image(folder / f"{stem}.png", image)
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    report, pairs = tmp_path / "scores.json", tmp_path / "pairs"
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--scale", "2", "--model", str(model),
                                      "--degrade", "web", "--seed", "4", "--json", str(report),
                                      "--save-pairs", str(pairs)])
    assert result.exit_code == 0, result.output
    scores = {s["name"]: s for s in json.loads(report.read_text())["images"]}
    for stem in images:
        hr, lr = read_image(pairs / "hr" / f"{stem}.png"), read_image(pairs / "lr" / f"{stem}.png")
        assert hr.shape == (50 if stem == "a" else 40, 44 if stem == "a" else 40, 3)  # already multiples of 2
        assert lr.shape == (hr.shape[0] // 2, hr.shape[1] // 2, 3)
        upscaled = bicubic_resize(lr, hr.shape[1], hr.shape[0])
        assert scores[f"{stem}.png"]["bicubic_psnr"] == pytest.approx(psnr_y(upscaled, hr, 2))


def test_save_pairs_refuses_what_it_cannot_write_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "hr"
    (folder / "x").mkdir(parents=True)
    write_image(folder / "a.png", smooth_image(40, 40, seed=1))
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    base = ["evaluate", str(folder), "--scale", "2", "--model", str(model), "--save-pairs"]
    (tmp_path / "used" / "lr").mkdir(parents=True)
    (tmp_path / "used" / "lr" / "mine.png").write_bytes(b"the user's own LR")
    for target, expected in [(blocker, "is a file"),
                             (tmp_path / "missing" / "pairs", "cannot make"),
                             (tmp_path / "used", "is not empty"),
                             (tmp_path, "is not empty")]:  # DIR/hr is the input folder itself
        result = CliRunner().invoke(app, base + [str(target)])
        flat = " ".join(result.output.split())
        assert result.exit_code == OutputError.exit_code and "--save-pairs: " in flat and expected in flat, flat
        assert "Traceback" not in result.output and "evaluating" not in result.output
    assert (tmp_path / "used" / "lr" / "mine.png").read_bytes() == b"the user's own LR"
    assert read_image(folder / "a.png").shape == (40, 40, 3)
    write_image(folder / "x" / "a.jpg", smooth_image(40, 40, seed=3))  # the same stem twice
    result = CliRunner().invoke(app, base + [str(tmp_path / "pairs")])
    assert result.exit_code == InputError.exit_code and "more than one image is named a.*" in result.output
    assert not (tmp_path / "pairs").exists()

@pytest.mark.parametrize("option", [
    ["--scale", "5"], ["--tile", "5"], ["--crop", "1"], ["--seed", "-1"], ["--degrade", "foo"],
    ["--degrade", "dvd:0,web:1"], ["--denoise", "2"],
], ids=" ".join)
def test_every_bad_option_is_exit_2_before_any_work(tmp_path: Path, option: list[str]) -> None:
    """--scale 5 exited 4 here and 2 in upscale-image; --tile 5, --crop 1 and --seed -1 were tracebacks."""
    write_image(tmp_path / "a.png", smooth_image(40, 40))
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    args = ["evaluate", str(tmp_path / "a.png"), "--scale", "2", "--model", str(model), *option]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and handled(result), (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and option[0] in errors[0], result.output


def test_a_json_report_that_cannot_be_written_is_refused_before_the_work(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(40, 40))
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    (tmp_path / "folder.json").mkdir()
    base = ["evaluate", str(tmp_path / "a.png"), "--scale", "2", "--model", str(model), "--json"]
    for target, code in [(tmp_path / "missing" / "s.json", 3), (tmp_path / "folder.json", 3),
                         (tmp_path / "a.png", 2)]:  # an input image is never replaced by the report
        result = CliRunner().invoke(app, base + [str(target)])
        assert result.exit_code == code and handled(result), (result.output, result.exception)
        assert "mean" not in result.output  # no table: nothing was evaluated
    assert read_image(tmp_path / "a.png").shape == (40, 40, 3)


def test_an_image_too_small_to_score_is_one_line(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(20, 40))
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "a.png"), "--scale", "2", "--model", str(model)])
    assert result.exit_code == 2 and handled(result), (result.output, result.exception)
    assert "a.png is 40×20: scoring at x2 needs at least 32 pixels a side" in result.output


def test_a_folder_with_an_unreadable_or_tiny_image_scores_the_others(tmp_path: Path) -> None:
    """One bad file stopped the whole evaluation with no scores."""
    folder = tmp_path / "hr"
    folder.mkdir()
    write_image(folder / "a.png", smooth_image(40, 40, seed=1))
    write_image(folder / "c.png", smooth_image(40, 44, seed=2))
    (folder / "b.png").write_bytes(b"garbage")
    write_image(folder / "d.png", smooth_image(20, 40, seed=3))
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    report = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--scale", "2", "--model", str(model),
                                      "--json", str(report)])
    assert result.exit_code == 1 and handled(result), (result.output, result.exception)  # as a folder job's
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "b.png" in warnings[0] and "d.png is 40×20" in warnings[1], result.output
    assert result.output.splitlines()[-1] == "error: 2 image(s) left out of the scores (above)"
    assert [s["name"] for s in json.loads(report.read_text())["images"]] == ["a.png", "c.png"]


def test_an_image_smaller_than_the_crop_is_scored_whole_with_a_warning(tmp_path: Path) -> None:
    """The report said --crop 48 while one image was scored at 40×36, silently."""
    folder = tmp_path / "hr"
    folder.mkdir()
    write_image(folder / "big.png", smooth_image(64, 64, seed=1))
    write_image(folder / "small.png", smooth_image(36, 40, seed=2))
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, tiny_model(2), 1.0)
    report = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--scale", "2", "--model", str(model), "--crop", "48",
                                      "--json", str(report)])
    assert result.exit_code == 0 and handled(result), (result.output, result.exception)
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: small.png is 40×36, smaller than --crop 48: scored at 40×36"], result.output
    assert [s["name"] for s in json.loads(report.read_text())["images"]] == ["big.png", "small.png"]
