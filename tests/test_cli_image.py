"""`animesr upscale-image` end to end, with a tiny model: names, formats, skips, errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from animesr import Upscaler, __version__, load_checkpoint, save_checkpoint
from animesr.cli import _register, app
from animesr.config import InferenceSettings
from animesr.errors import InputError, ModelOutputError
from animesr.imaging import read_image, write_image
from animesr.pretrained import MODELS_ENV
from conftest import handled, smooth_image, tiny_model

_register()


@pytest.fixture(scope="module")
def tiny_x2(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny_x2.safetensors"
    save_checkpoint(path, tiny_model(2), value_range=1.0, training={"note": "test model"})
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/a.png, in/b.jpg, in/sub/c.webp, in/sub/deep/d.bmp (gray), in/notes.txt"""
    root = tmp_path / "in"
    (root / "sub" / "deep").mkdir(parents=True)
    write_image(root / "a.png", smooth_image(12, 16, seed=1))
    write_image(root / "b.jpg", smooth_image(10, 10, seed=2))
    write_image(root / "sub" / "c.webp", smooth_image(8, 14, seed=3))
    from PIL import Image
    Image.fromarray(smooth_image(9, 9, channels=1, seed=4)[..., 0]).save(root / "sub" / "deep" / "d.bmp")
    (root / "notes.txt").write_text("not an image")
    return root


def run(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, ["upscale-image", *map(str, args)], env=env)
    result.flat = " ".join(result.output.split())  # rich wraps long lines
    assert handled(result), repr(result.exception)
    return result


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_folder_non_recursive(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(tree, "-o", out, "--scale", "2", "--model", tiny_x2)
    assert result.exit_code == 0, result.output
    assert files(out) == ["a.png", "b.jpg"]
    assert "done 2, skipped 0, failed 0" in result.flat
    assert read_image(out / "a.png").shape == (24, 32, 3)


def test_recursive_mirrors_folders_with_suffix_and_same_format(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(tree, "-o", out, "--scale", "2", "--model", tiny_x2, "--recursive", "--suffix", "_x2")
    assert result.exit_code == 0, result.output
    # same: png, jpg and webp kept; bmp (not writable) becomes png
    assert files(out) == ["a_x2.png", "b_x2.jpg", "sub/c_x2.webp", "sub/deep/d_x2.png"]
    assert read_image(out / "sub" / "deep" / "d_x2.png").shape == (18, 18, 1)  # gray stays gray
    assert not [p for p in out.rglob(".*")], "no temporary files left"


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_format(tree: Path, tiny_x2: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    result = run(tree, "-o", out, "--scale", "2", "--model", tiny_x2, "-r", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert files(out) == [f"a.{fmt}", f"b.{fmt}", f"sub/c.{fmt}", f"sub/deep/d.{fmt}"]
    assert read_image(out / f"a.{fmt}").shape == (24, 32, 3)


def test_single_files_and_bit_depth_and_alpha(tmp_path: Path, tiny_x2: Path) -> None:
    write_image(tmp_path / "deep16.png", smooth_image(8, 8, dtype=np.uint16))
    write_image(tmp_path / "sprite.png", smooth_image(8, 10, channels=4))
    out = tmp_path / "out"
    result = run(tmp_path / "deep16.png", tmp_path / "sprite.png", "-o", out, "-s", "2", "-m", tiny_x2)
    assert result.exit_code == 0, result.output
    deep, sprite = read_image(out / "deep16.png"), read_image(out / "sprite.png")
    assert deep.dtype == np.uint16 and deep.shape == (16, 16, 3)
    assert sprite.dtype == np.uint8 and sprite.shape == (16, 20, 4)


def test_existing_outputs_are_skipped_unless_overwrite(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(tree, "-o", out, "-s", "2", "-m", tiny_x2).exit_code == 0
    marker = smooth_image(3, 3)
    write_image(out / "a.png", marker)
    again = run(tree, "-o", out, "-s", "2", "-m", tiny_x2)
    assert again.exit_code == 0, again.output
    assert "done 0, skipped 2, failed 0" in again.flat
    assert "a.png exists" in again.flat and "--overwrite" in again.flat
    np.testing.assert_array_equal(read_image(out / "a.png"), marker)  # left alone
    forced = run(tree, "-o", out, "-s", "2", "-m", tiny_x2, "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert "done 2, skipped 0, failed 0" in forced.flat
    assert read_image(out / "a.png").shape == (24, 32, 3)


def test_a_corrupt_file_is_reported_and_the_rest_go_on(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    (tree / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tree / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    result = run(tree, "-o", out, "-s", "2", "-m", tiny_x2)
    assert result.exit_code != 0
    assert "broken.png" in result.flat and "empty.jpg" in result.flat
    assert "done 2, skipped 0, failed 2" in result.flat
    assert files(out) == ["a.png", "b.jpg"]


def test_a_folder_takes_every_picture_a_named_file_would_take(tmp_path: Path, tiny_x2: Path) -> None:
    """`.jfif` and `.jpe` files were upscaled when named, and left out of a folder in silence."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("A.JPG", "b.jfif", "c.jpe"):
        Image.fromarray(smooth_image(8, 8)).save(folder / name, format="JPEG")
    result = run(folder, "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code == 0, result.output
    assert "3 image(s)" in result.flat and files(tmp_path / "out") == ["A.JPG", "b.jfif", "c.jpe"]


@pytest.mark.parametrize("content", [b"hello\n", b"", b"\x89PNG\r\n\x1a\n garbage"], ids=["text", "empty", "broken"])
def test_a_lone_image_that_cannot_be_read_is_one_line_before_the_model_loads(tmp_path: Path, tiny_x2: Path,
                                                                              content: bytes) -> None:
    """It was handled as a folder job: the model loaded, a progress bar, "failed 1", exit 1, and an
    empty output folder left behind."""
    bad = tmp_path / "notimage.png"
    bad.write_bytes(content)
    out = tmp_path / "out"
    result = run(bad, "-o", out, "-s", "2", "-m", tiny_x2)
    assert result.exit_code == InputError.exit_code
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: "), result.output
    assert not out.exists()


def test_a_lone_image_over_the_pixel_limit_is_one_line_too(tmp_path: Path, tiny_x2: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(12, 16))
    result = run(tmp_path / "a.png", "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2, "--max-pixels", "100")
    assert result.exit_code == InputError.exit_code
    assert result.output.strip() == (f"error: {tmp_path / 'a.png'}: 16×12 is 192 pixels, over the limit of 100; "
                                     "--max-pixels raises it")
    assert not (tmp_path / "out").exists()


def test_several_named_images_with_a_bad_one_report_it_and_go_on(tmp_path: Path, tiny_x2: Path) -> None:
    write_image(tmp_path / "good.png", smooth_image(6, 6))
    (tmp_path / "bad.png").write_text("hello")
    out = tmp_path / "out"
    result = run(tmp_path / "bad.png", tmp_path / "good.png", "-o", out, "-s", "2", "-m", tiny_x2)
    assert result.exit_code == 1
    assert "done 1, skipped 0, failed 1" in result.flat and "bad.png" in result.flat.split("failed:")[-1]
    assert files(out) == ["good.png"]


def test_a_job_that_writes_nothing_leaves_no_folder_it_created(tmp_path: Path, tiny_x2: Path) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_text("hello")
    new = tmp_path / "new" / "out"
    result = run(tmp_path / "a.png", tmp_path / "b.png", "-o", new, "-s", "2", "-m", tiny_x2)
    assert result.exit_code == 1 and "done 0, skipped 0, failed 2" in result.flat
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert run(tmp_path / "a.png", tmp_path / "b.png", "-o", existing, "-s", "2", "-m", tiny_x2).exit_code == 1
    assert existing.is_dir()  # not ours to remove


@pytest.mark.parametrize("fmt", ["same", "png", "webp"])
def test_the_colour_profile_of_a_picture_is_kept(tmp_path: Path, tiny_x2: Path, fmt: str) -> None:
    """A Display P3 or Adobe RGB picture came out without its profile: shown as sRGB, its colours shifted."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(smooth_image(8, 10)).save(tmp_path / "p3.jpg", icc_profile=profile)
    result = run(tmp_path / "p3.jpg", "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2, "--format", fmt)
    assert result.exit_code == 0, result.output
    [written] = (tmp_path / "out").iterdir()
    with Image.open(written) as out:
        assert out.size == (20, 16) and out.info.get("icc_profile") == profile


def test_a_grey_profile_webp_cannot_hold_is_said(tmp_path: Path, tiny_x2: Path) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    grey = srgb[:16] + b"GRAY" + srgb[20:]
    Image.fromarray(smooth_image(8, 8, channels=1)[..., 0]).save(tmp_path / "g.png", icc_profile=grey)
    result = run(tmp_path / "g.png", "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2, "--format", "webp")
    assert result.exit_code == 0, result.output
    assert "g.png: WEBP stores grey as RGB: the grey ICC colour profile is left out" in result.flat
    with Image.open(tmp_path / "out" / "g.webp") as out:
        assert "icc_profile" not in out.info


def test_recursive_into_an_output_folder_inside_the_input(tree: Path, tiny_x2: Path) -> None:
    out = tree / "upscaled"
    first = run(tree, "-r", "-o", out, "-s", "2", "-m", tiny_x2, "--suffix", "_x2", "--format", "png")
    assert first.exit_code == 0, first.output
    again = run(tree, "-r", "-o", out, "-s", "2", "-m", tiny_x2, "--suffix", "_x2", "--format", "png",
                "--overwrite")
    assert again.exit_code == 0, again.output
    assert "done 4, skipped 0, failed 0" in again.flat  # its own outputs are not inputs
    assert files(out) == ["a_x2.png", "b_x2.png", "sub/c_x2.png", "sub/deep/d_x2.png"]


def test_images_over_the_pixel_limit(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    Image.new("1", (12000, 12000)).save(tree / "huge.png")  # about 140 KB: 432 MB once decoded
    result = run(tree, "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code == 1
    assert "huge.png: 12000×12000 is 144,000,000 pixels, over the limit of 50,000,000; --max-pixels raises it" \
        in result.flat
    assert "done 2, skipped 0, failed 1" in result.flat
    assert "Warning" not in result.output and "Decompression" not in result.output  # Pillow stays quiet
    (tree / "huge.png").unlink()
    lower = run(tree, "-o", tmp_path / "low", "-s", "2", "-m", tiny_x2, "--max-pixels", "150")
    assert "done 1, skipped 0, failed 1" in lower.flat  # a.png is 16×12 = 192, b.jpg 10×10 = 100
    assert files(tmp_path / "low") == ["b.jpg"]


def test_a_model_with_non_finite_weights(tree: Path, tmp_path: Path) -> None:
    model = tiny_model(2)
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    save_checkpoint(tmp_path / "nan.safetensors", model, value_range=1.0)
    result = run(tree, "-o", tmp_path / "out", "-s", "2", "-m", tmp_path / "nan.safetensors")
    assert result.exit_code == 4
    assert "nan.safetensors: head.bias holds NaN or infinite weights" in result.flat
    assert not (tmp_path / "out").exists()


def test_a_model_whose_output_overflows(tree: Path, tmp_path: Path) -> None:
    model = tiny_model(2)
    with torch.no_grad():
        model.tail.weight.fill_(3e38)  # finite, but the output is not
    save_checkpoint(tmp_path / "huge.safetensors", model, value_range=1.0)
    result = run(tree, "-o", tmp_path / "out", "-s", "2", "-m", tmp_path / "huge.safetensors")
    # the model's fault, said once: not each image failing in turn (exit 1) without naming the model
    assert result.exit_code == ModelOutputError.exit_code, result.output
    assert f"error: {tree / 'a.png'}: the model huge.safetensors gave NaN or infinite values" in result.flat
    assert "precision); nothing was written" in result.flat
    assert "warning" not in result.output and "done" not in result.output
    assert not (tmp_path / "out").exists()  # never a black picture, nor an empty folder


def test_a_folder_job_the_model_stops_halfway_says_what_it_kept(tmp_path: Path, tiny_x2: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """It said "nothing was written" without naming the file, and printed no summary, though a.png was
    written."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        write_image(src / name, smooth_image(8, 8))
    forward, calls = Upscaler._forward, iter(range(10**6))

    def forward_then_overflow(self, x, tile, on_tile):
        y = forward(self, x, tile, on_tile)
        return y if next(calls) < 1 else y * float("inf")

    monkeypatch.setattr(Upscaler, "_forward", forward_then_overflow)
    result = run(src, "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code == ModelOutputError.exit_code, result.output
    assert f"done 1, skipped 0, failed 0 → {tmp_path / 'out'}" in result.flat
    stopped = f"error: {src / 'b.png'}: the model tiny_x2.safetensors gave NaN or infinite values"
    assert stopped in result.flat and "1 output(s) written before it are kept" in result.flat
    assert result.flat.index("done 1") < result.flat.index("error:")
    assert files(tmp_path / "out") == ["a.png"]


def test_a_lone_image_whose_header_pillow_trips_on_still_upscales(tmp_path: Path, tiny_x2: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "a.png", smooth_image(8, 8))

    def tripping_open(*args, **kwargs):
        raise KeyError("odd tag")

    monkeypatch.setattr(Image, "open", tripping_open)
    result = run(tmp_path / "a.png", "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "out" / "a.png").shape == (16, 16, 3)


def test_tiles_give_the_same_result(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    write_image(big / "wide.png", smooth_image(40, 90, seed=9))
    whole = run(big, "-o", tmp_path / "whole", "-s", "2", "-m", tiny_x2)
    tiled = run(big, "-o", tmp_path / "tiled", "-s", "2", "-m", tiny_x2, "--tile", "32")
    assert whole.exit_code == 0 and tiled.exit_code == 0, tiled.output
    a, b = read_image(tmp_path / "whole" / "wide.png"), read_image(tmp_path / "tiled" / "wide.png")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_tta_writes_the_self_ensemble(tmp_path: Path, tiny_x2: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    image = smooth_image(14, 18, seed=5)
    write_image(folder / "a.png", image)
    result = run(folder, "-o", tmp_path / "tta", "-s", "2", "-m", tiny_x2, "--tta")
    assert result.exit_code == 0, result.output
    expected = Upscaler(load_checkpoint(tiny_x2), InferenceSettings(device="cpu", tta=True)).upscale(image)
    np.testing.assert_array_equal(read_image(tmp_path / "tta" / "a.png"), expected)


# ---- one clear line, non-zero exit, no traceback ----------------------------------------------

def test_missing_input(tmp_path: Path, tiny_x2: Path) -> None:
    result = run(tmp_path / "nope", "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code != 0
    assert "nope: no such file or folder" in result.flat


def test_empty_folder(tmp_path: Path, tiny_x2: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run(tmp_path / "empty", "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code != 0
    assert "no images found" in result.flat


def test_output_is_an_existing_file(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "out.png"
    blocker.write_bytes(b"x")
    result = run(tree, "-o", blocker, "-s", "2", "-m", tiny_x2)
    assert result.exit_code != 0
    assert "is an existing file" in result.flat
    assert blocker.read_bytes() == b"x"


def test_output_folder_under_a_file(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    result = run(tree, "-o", tmp_path / "file" / "out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code == 3
    assert "is a file" in result.flat


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a folder no one can write in: /proc")
def test_an_unwritable_output_folder_fails_before_the_model_loads(tree: Path, tiny_x2: Path) -> None:
    result = run(tree, "-o", "/proc/animesr-test-out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code == 3
    assert "cannot write in /proc/animesr-test-out" in result.flat
    assert "model" not in result.flat  # the note that follows loading the model never came


@pytest.mark.parametrize(("args", "message"), [
    (["--scale", "5"], "--scale must be 2, 3 or 4"),
    (["--scale", "2", "--tile", "8"], "--tile must be at least 32"),
    (["--scale", "2", "--format", "bmp"], "--format must be one of same, png, jpg, webp"),
    (["--scale", "2", "--suffix", "a/b"], "--suffix must not contain"),
    (["--scale", "2", "--format", "[/]"], "not '[/]'"),  # rich markup in user text is printed as typed
    (["--scale", "2", "--device", "tpu"], "tpu"),
    (["--scale", "2", "--max-pixels", "0"], "--max-pixels must be at least 1"),
])
def test_bad_options(tree: Path, tiny_x2: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run(tree, "-o", tmp_path / "out", "-m", tiny_x2, *args)
    assert result.exit_code != 0
    assert message in result.flat
    assert not any((tmp_path / "out").rglob("*.png"))


def test_typer_usage_errors(tmp_path: Path) -> None:
    result = run("-o", tmp_path / "out", "--scale", "two")
    assert result.exit_code == 2


def test_scale_mismatch_with_the_model(tree: Path, tiny_x2: Path, tmp_path: Path) -> None:
    result = run(tree, "-o", tmp_path / "out", "-s", "3", "-m", tiny_x2)
    assert result.exit_code == 4
    assert "is an x2 model, but --scale is 3" in result.flat


def test_not_a_model(tree: Path, tmp_path: Path) -> None:
    result = run(tree, "-o", tmp_path / "out", "-s", "2", "-m", tree / "a.png")
    assert result.exit_code == 4
    assert "a.png is not a model file" in result.flat


def test_no_shipped_model_says_how_to_pass_one(tree: Path, tmp_path: Path) -> None:
    models = tmp_path / "no-models"
    models.mkdir()
    result = run(tree, "-o", tmp_path / "out", "--scale", "3", env={MODELS_ENV: str(models)})
    assert result.exit_code != 0
    assert "no clean x3 model ships with animesr" in result.flat and "--model PATH" in result.flat
    assert len(result.output.strip().splitlines()) <= 2  # one message (rich may wrap it once)


def test_shipped_model_is_used_without_model(tree: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    save_checkpoint(models / "a2n-anime-x2.safetensors", tiny_model(2), value_range=1.0)
    result = run(tree, "-o", tmp_path / "out", "--scale", "2", env={MODELS_ENV: str(models)})
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "out") == ["a.png", "b.jpg"]


def test_an_output_onto_its_input_says_so_as_every_command_does(tmp_path: Path, tiny_x2: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(6, 6))
    result = run(tmp_path / "a.png", "-o", tmp_path, "-s", "2", "-m", tiny_x2, "--overwrite")
    assert result.exit_code == 3
    assert f"error: {tmp_path / 'a.png'}: the output would replace the input; use --suffix or another -o" in result.flat


def test_two_inputs_writing_the_same_output(tmp_path: Path, tiny_x2: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / "same.png", smooth_image(6, 6))
    result = run(tmp_path / "one", tmp_path / "two", "-o", tmp_path / "out", "-s", "2", "-m", tiny_x2)
    assert result.exit_code != 0
    assert "would both be written to" in result.flat


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"animesr {__version__}"


def test_python_dash_m_animesr() -> None:
    result = subprocess.run([sys.executable, "-m", "animesr", "--help"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert "upscale-image" in result.stdout
