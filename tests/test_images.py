"""The folder job behind `upscale-image` (animesr.images), without the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from animesr import Upscaler
from animesr.config import ImageJob, InferenceSettings
from animesr.errors import InputError, OutputError
from animesr.images import ImageCallbacks, output_format, plan_images, upscale_images
from animesr.imaging import read_image, write_image
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


def test_output_format() -> None:
    assert output_format(Path("x.JPEG"), "same") == ("jpg", ".JPEG")
    assert output_format(Path("x.gif"), "same") == ("png", ".png")
    assert output_format(Path("x.png"), "webp") == ("webp", ".webp")
    with pytest.raises(InputError):
        output_format(Path("x.png"), "tiff")


def test_output_never_replaces_its_input(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(4, 4))
    job = _job([tmp_path], tmp_path, overwrite=True)
    summary = upscale_images(job, Upscaler(tiny_loaded(2), job.inference))
    assert summary.counts()["failed"] == 1 and "replace the input" in summary.failed[0][1]
    assert read_image(tmp_path / "a.png").shape == (4, 4, 3)


def test_scale_mismatch_between_job_and_model(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", smooth_image(4, 4))
    job = _job([tmp_path / "a.png"], tmp_path / "out")
    with pytest.raises(InputError, match="x3"):
        upscale_images(job, Upscaler(tiny_loaded(3), job.inference))
