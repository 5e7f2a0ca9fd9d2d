"""The folder job behind `upscale-image` (animesr.image_job), without the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from animesr import Upscaler
from animesr.atomic import removed_if_left_empty
from animesr.config import ImageJob, InferenceSettings
from animesr.errors import InputError, ModelOutputError, OutputError
from animesr.image_job import ImageCallbacks, output_format, plan_images, upscale_images
from animesr.imaging import read_image, read_image_and_profile, write_image
from conftest import smooth_image, tiny_loaded


def _job(inputs, out: Path, **kwargs) -> ImageJob:
    return ImageJob(inputs=tuple(inputs), output_dir=out, scale=2, model=None,
                    inference=InferenceSettings(device="cpu"), **kwargs)


def test_summary_and_callbacks(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_image(src / "a.png", smooth_image(8, 8))
    write_image(src / "sub" / "b.png", smooth_image(6, 10))
    (src / "bad.png").write_bytes(b"nope")
    out = tmp_path / "out"
    (out).mkdir()
    write_image(out / "a_2x.webp", smooth_image(2, 2))  # existing output: skipped
    events: list[str] = []
    callbacks = ImageCallbacks(
        on_start=lambda n: events.append(f"start {n}"),
        on_image=lambda i, t: events.append(f"image {t.source.name}"),
        on_done=lambda i, t: events.append(f"done {t.target.name}"),
        on_skipped=lambda i, t: events.append(f"skipped {t.target.name}"),
        on_failed=lambda i, t, message: events.append(f"failed {t.source.name}: {'bad.png' in message}"),
    )
    job = _job([src], out, fmt="webp", suffix="_2x", recursive=True)
    summary = upscale_images(job, Upscaler(tiny_loaded(2), job.inference), callbacks)
    assert summary.counts() == {"done": 1, "skipped": 1, "failed": 1}
    assert not summary.ok
    assert summary.done == [out / "sub" / "b_2x.webp"]
    assert read_image(out / "sub" / "b_2x.webp").shape == (12, 20, 3)
    assert events == ["start 3", "skipped a_2x.webp", "image bad.png", "failed bad.png: True",
                      "image b.png", "done b_2x.webp"]


def test_unwritable_output_fails_up_front(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(4, 4))
    (tmp_path / "file").write_bytes(b"")
    job = _job([tmp_path / "a.png"], tmp_path / "file")
    with pytest.raises(OutputError, match="existing file"):
        upscale_images(job, Upscaler(tiny_loaded(2), job.inference))
    with pytest.raises(OutputError, match="cannot create output folder"):
        plan_images(_job([tmp_path / "a.png"], tmp_path / "file" / "below"))


def test_plan_without_prepare_creates_nothing(tmp_path: Path) -> None:
    Image.fromarray(smooth_image(4, 4)).save(tmp_path / "a.tif")
    tasks = plan_images(_job([tmp_path / "a.tif"], tmp_path / "out"), prepare=False)
    assert [(t.target.name, t.fmt) for t in tasks] == [("a.png", "png")]
    assert not (tmp_path / "out").exists()


def test_an_image_named_twice_or_also_in_a_named_folder_is_planned_once(tmp_path: Path) -> None:
    """It was refused as two inputs onto one output, with advice (--suffix) that could not help."""
    folder = tmp_path / "img"
    folder.mkdir()
    write_image(folder / "a.png", smooth_image(8, 8))
    write_image(folder / "b.png", smooth_image(8, 8, seed=1))
    for inputs, expected in (([folder / "a.png", folder / "a.png"], ["a.png"]),
                             ([folder / "a.png", folder / ".." / "img" / "a.png"], ["a.png"]),
                             ([folder / "a.png", folder], ["a.png", "b.png"])):
        tasks = plan_images(_job(inputs, tmp_path / "out"), prepare=False)
        assert sorted(t.target.name for t in tasks) == expected, inputs


def test_a_lone_image_is_read_when_planned_and_others_when_upscaled(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_text("hello")
    write_image(tmp_path / "good.png", smooth_image(4, 4))
    with pytest.raises(InputError, match="bad.png: not an image"):
        plan_images(_job([tmp_path / "bad.png"], tmp_path / "out"), prepare=False)
    assert len(plan_images(_job([tmp_path / "bad.png", tmp_path / "good.png"], tmp_path / "out"), prepare=False)) == 2
    assert len(plan_images(_job([tmp_path], tmp_path / "out"), prepare=False)) == 2  # a folder of one is a folder
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bad.png").write_bytes(b"")  # an existing output: skipped, so never read
    assert len(plan_images(_job([tmp_path / "bad.png"], tmp_path / "out"), prepare=False)) == 1


def test_folders_that_a_job_created_and_left_empty_are_removed(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    with removed_if_left_empty([tmp_path / "a" / "b" / "c", tmp_path / "a" / "d", tmp_path / "kept"]):
        (tmp_path / "a" / "b" / "c").mkdir(parents=True)
        (tmp_path / "a" / "d").mkdir()
        (tmp_path / "a" / "d" / "x.png").write_bytes(b"")
        (tmp_path / "a" / "e").mkdir()  # not the job's: left alone
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "a", "a/d", "a/d/x.png", "a/e", "kept"]


def test_output_format() -> None:
    assert output_format(Path("x.JPEG"), "same") == ("jpg", ".JPEG")
    assert output_format(Path("x.gif"), "same") == ("png", ".png")
    assert output_format(Path("x.png"), "webp") == ("webp", ".webp")
    with pytest.raises(InputError):
        output_format(Path("x.png"), "tiff")


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_never_replaces_its_input(tmp_path: Path, overwrite: bool) -> None:
    """Refused before any work, with or without --overwrite (not "skipped: exists")."""
    write_image(tmp_path / "a.png", smooth_image(4, 4))
    job = _job([tmp_path], tmp_path, overwrite=overwrite)
    with pytest.raises(OutputError, match="replace the input"):
        upscale_images(job, Upscaler(tiny_loaded(2), job.inference))
    assert read_image(tmp_path / "a.png").shape == (4, 4, 3)


def test_scale_mismatch_between_job_and_model(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(4, 4))
    job = _job([tmp_path / "a.png"], tmp_path / "out")
    with pytest.raises(InputError, match="x3"):
        upscale_images(job, Upscaler(tiny_loaded(3), job.inference))


def _never_fits(upscaler: Upscaler) -> Upscaler:
    def out_of_memory(x, tile, on_tile):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    upscaler._forward = out_of_memory
    return upscaler


def _overflowing_after(images: int) -> Upscaler:
    """Good pictures for the first `images` images, then infinite values, as a model that overflows."""
    upscaler = Upscaler(tiny_loaded(2), InferenceSettings(device="cpu"))
    forward, calls = upscaler._forward, iter(range(10**6))

    def forward_then_overflow(x, tile, on_tile):
        y = forward(x, tile, on_tile)
        return y if next(calls) < images else y * float("inf")

    upscaler._forward = forward_then_overflow
    return upscaler


def test_an_image_that_cannot_be_upscaled_leaves_no_output(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png", smooth_image(40, 40))
    write_image(src / "b.png", smooth_image(8, 8, channels=1, seed=1))
    out = tmp_path / "out"
    job = _job([src], out)
    upscaler = _never_fits(Upscaler(tiny_loaded(2), InferenceSettings(device="cpu", tile=64)))
    summary = upscale_images(job, upscaler)
    assert summary.counts() == {"done": 0, "skipped": 0, "failed": 2}
    assert all(source.name in text and "out of memory" in text for source, text in summary.failed)
    assert not out.exists()  # no picture, no half-written or temporary file, no empty folder


def test_a_model_that_gives_nan_or_inf_stops_the_job_and_keeps_what_was_done(tmp_path: Path) -> None:
    """Each image used to fail on its own (exit 1) with a message that never named the model."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        write_image(src / name, smooth_image(8, 8))
    out = tmp_path / "out"
    images: list[str] = []
    callbacks = ImageCallbacks(on_image=lambda i, task: images.append(task.source.name))
    with pytest.raises(ModelOutputError) as stopped:
        upscale_images(_job([src], out), _overflowing_after(1), callbacks)
    # it said "nothing was written" and named no file, though a.png was written
    assert str(stopped.value).startswith(f"{src / 'b.png'}: the model tiny gave NaN or infinite values")
    assert str(stopped.value).endswith("; 1 output(s) written before it are kept")
    assert images == ["a.png", "b.png"]  # c.png was never started
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # the earlier output is kept, no partial file


def test_a_model_that_spoils_the_first_image_says_nothing_was_written(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(8, 8))
    with pytest.raises(ModelOutputError, match=r"a\.png: the model tiny gave NaN.*; nothing was written$"):
        upscale_images(_job([tmp_path / "a.png"], tmp_path / "out"), _overflowing_after(0))
    assert not (tmp_path / "out").exists()


def test_a_lone_image_is_read_once_and_a_folder_holds_none_in_memory(tmp_path: Path, monkeypatch) -> None:
    """A lone image was read and decoded at planning, then again to upscale it."""
    from animesr import image_job

    reads: list[str] = []

    def counted_read(path, max_pixels):
        reads.append(Path(path).name)
        return read_image_and_profile(path, max_pixels=max_pixels)

    monkeypatch.setattr(image_job, "read_image_and_profile", counted_read)
    write_image(tmp_path / "a.png", smooth_image(8, 8))
    write_image(tmp_path / "b.png", smooth_image(8, 8, seed=1))
    upscaler = Upscaler(tiny_loaded(2), InferenceSettings(device="cpu"))
    lone = _job([tmp_path / "a.png"], tmp_path / "lone")
    assert upscale_images(lone, upscaler, tasks=plan_images(lone)).counts()["done"] == 1
    assert upscale_images(replace(lone, overwrite=True), upscaler).counts()["done"] == 1
    assert reads == ["a.png", "a.png"]
    reads.clear()
    folder = _job([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "folder")
    assert all(task.read_ahead is None for task in plan_images(folder))
    assert upscale_images(folder, upscaler).counts()["done"] == 2 and reads == ["a.png", "b.png"]


def test_images_over_the_pixel_limit_fail_alone(tmp_path: Path) -> None:
    write_image(tmp_path / "small.png", smooth_image(8, 8))
    write_image(tmp_path / "large.png", smooth_image(12, 16))
    job = _job([tmp_path / "small.png", tmp_path / "large.png"], tmp_path / "out", max_pixels=100)
    summary = upscale_images(job, Upscaler(tiny_loaded(2), job.inference))
    assert summary.done == [tmp_path / "out" / "small.png"]
    [(source, message)] = summary.failed
    assert source.name == "large.png"
    assert message.endswith("large.png: 16×12 is 192 pixels, over the limit of 100; --max-pixels raises it")
    with pytest.raises(ValueError, match="--max-pixels must be at least 1"):
        _job([tmp_path], tmp_path / "out", max_pixels=0)


def test_a_recursive_run_skips_its_own_output_folder(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_image(src / "a.png", smooth_image(8, 8))
    write_image(src / "sub" / "b.png", smooth_image(6, 6))
    out = src / "up"
    job = _job([src], out, suffix="_x2", recursive=True, overwrite=True)
    upscaler = Upscaler(tiny_loaded(2), job.inference)
    first = upscale_images(job, upscaler)
    second = upscale_images(job, upscaler)  # the outputs of the first run are now inside the input
    expected = [out / "a_x2.png", out / "sub" / "b_x2.png"]
    assert first.done == second.done == expected
    assert sorted(p for p in out.rglob("*") if p.is_file()) == expected


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_alpha_file_in_gray_alpha_file_out(tmp_path: Path, dtype) -> None:
    image = np.concatenate([smooth_image(6, 7, 1, dtype, seed=1), smooth_image(6, 7, 1, dtype, seed=2)], axis=2)
    write_image(tmp_path / "la.png", image)
    job = _job([tmp_path / "la.png"], tmp_path / "out")
    upscaler = Upscaler(tiny_loaded(2), job.inference)
    assert upscale_images(job, upscaler).ok
    out = read_image(tmp_path / "out" / "la.png")
    assert out.shape == (12, 14, 2) and out.dtype == dtype
    np.testing.assert_array_equal(out, upscaler.upscale(image))
    header = (tmp_path / "out" / "la.png").read_bytes()[24:26]  # IHDR bit depth, colour type
    assert header == bytes([8 * np.dtype(dtype).itemsize, 4])  # grey + alpha, depth kept
    assert cv2.imread(str(tmp_path / "out" / "la.png"), cv2.IMREAD_UNCHANGED).dtype == dtype


def test_outputs_written_beside_their_inputs_are_not_inputs_next_time(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(8, 8))
    job = _job([tmp_path], tmp_path, suffix="_x2", overwrite=True)  # -o the input folder
    upscaler = Upscaler(tiny_loaded(2), job.inference)
    assert upscale_images(job, upscaler).done == [tmp_path / "a_x2.png"]
    assert [task.source.name for task in plan_images(job)] == ["a.png"]  # a_x2.png is a's output
    assert upscale_images(job, upscaler).done == [tmp_path / "a_x2.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x2.png"]
    # without a suffix the output would be the input itself: refused when planning
    same = _job([tmp_path / "a.png"], tmp_path, overwrite=True)
    with pytest.raises(OutputError, match="replace the input"):
        plan_images(same)


def test_long_names_work_up_to_the_limit_and_are_refused_beyond_it(tmp_path: Path) -> None:
    """A 250-byte name always failed (its temporary was longer than 255 bytes); a longer output name
    was an OSError traceback from `exists()`."""
    long = tmp_path / f"{'a' * 246}.png"  # 250 bytes
    write_image(long, smooth_image(4, 4))
    job = _job([long], tmp_path / "out")
    assert upscale_images(job, Upscaler(tiny_loaded(2), job.inference)).done == [tmp_path / "out" / long.name]
    with pytest.raises(InputError, match="longer than 255 bytes"):
        plan_images(_job([long], tmp_path / "out2", suffix="_x2_x2"))


def test_what_the_output_format_drops_is_said_once_per_file(tmp_path: Path) -> None:
    """An RGBA picture written as JPEG lost its alpha, and a 16-bit one became 8-bit, in silence."""
    rgba = smooth_image(6, 6, channels=4)
    deep = (smooth_image(6, 6).astype(np.uint16) * 257)
    write_image(tmp_path / "a.png", rgba)
    write_image(tmp_path / "b.png", deep)
    warnings: list[str] = []
    job = _job([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "out", fmt="jpg")
    summary = upscale_images(job, Upscaler(tiny_loaded(2), job.inference), ImageCallbacks(warn=warnings.append))
    assert summary.counts()["done"] == 2
    assert len(warnings) == 2 and "a.png: JPEG has no transparency" in warnings[0] and "b.png: JPG holds 8 bits" in warnings[1]
    warnings.clear()
    job = _job([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "png", fmt="png")
    upscale_images(job, Upscaler(tiny_loaded(2), job.inference), ImageCallbacks(warn=warnings.append))
    assert warnings == []


@pytest.mark.parametrize("suffix", ["/../../x", "a\\b", "x\ny"])
def test_a_suffix_cannot_leave_the_output_folder_or_break_a_name(tmp_path: Path, suffix: str) -> None:
    """The CLI checked separators; the API let `suffix='/../../x'` write outside the output folder."""
    with pytest.raises(ValueError, match="--suffix must not contain"):
        _job([tmp_path], tmp_path / "out", suffix=suffix)


def test_settings_take_paths_as_text_too(tmp_path: Path) -> None:
    """A str path from a Python caller was an AttributeError deep inside the job."""
    from animesr.config import PrepareSettings, TrainSettings, VideoJob

    write_image(tmp_path / "a.png", smooth_image(4, 4))
    job = ImageJob(inputs=(str(tmp_path / "a.png"),), output_dir=str(tmp_path / "out"), scale=2, model=None,
                   inference=InferenceSettings(device="cpu"))
    assert job.inputs == (tmp_path / "a.png",) and job.output_dir == tmp_path / "out"
    assert upscale_images(job, Upscaler(tiny_loaded(2), job.inference)).counts()["done"] == 1
    assert VideoJob(input="a.mkv", output="b.mkv", scale=2).output == Path("b.mkv")
    assert PrepareSettings(sources=["x"], output="d.h5").sources == (Path("x"),)
    settings = TrainSettings(data="d.h5", scale=2, out="run", val_dir="val")
    assert (settings.data, settings.out, settings.val_dir, settings.init) == (Path("d.h5"), Path("run"), Path("val"), None)
