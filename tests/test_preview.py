"""`animesr preview`: the sheet's panels, their size and content, on an image, a clip and a
telecined clip (decoded as upscale-video decodes it), and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import handled, smooth_image
from test_fields import film, telecined  # noqa: F401
from test_video_pipeline import clips, ffmpeg, lavfi_testsrc, make_clip, tiny_model_file  # noqa: F401
from test_video_window import _source_frames
from typer.testing import CliRunner

from animesr.callbacks import JobCallbacks
from animesr.config import PreviewJob
from animesr.errors import InputError, OutputError
from animesr.imaging import bicubic_resize, read_image, write_image
from animesr.preview import GAP, LABEL_HEIGHT, MARGIN, make_preview

CROP = 32


def sheet_size(columns: int, rows: int, panel: int) -> tuple[int, int]:
    return columns * panel + (columns + 1) * GAP, rows * (panel + LABEL_HEIGHT) + (rows + 1) * GAP


def panel(sheet: np.ndarray, row: int, column: int, size: int) -> np.ndarray:
    top = GAP + row * (size + LABEL_HEIGHT + GAP) + LABEL_HEIGHT
    left = GAP + column * (size + GAP)
    return sheet[top: top + size, left: left + size]


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    """Flat grey but for a detailed patch at x 70..100, y 40..70."""
    image = np.full((90, 120, 3), 128, np.uint8)
    image[40:70, 70:100] = smooth_image(30, 30, seed=3) // 2 + np.indices((30, 30)).sum(axis=0)[..., None] % 2 * 120
    path = tmp_path / "picture.png"
    write_image(path, image)
    return path


def test_an_image_sheet_has_source_bicubic_and_each_model(picture: Path, tmp_path: Path) -> None:
    models = (str(tiny_model_file(tmp_path)), str(tiny_model_file(tmp_path, identity=True)))
    out = tmp_path / "sheet.png"
    result = make_preview(PreviewJob(input=picture, output=out, scale=2, models=models, crop=CROP))
    sheet = read_image(out)
    assert result.columns == ("source (nearest)", "bicubic", "tiny-x2.safetensors", "tiny-x2-bilinear.safetensors")
    assert result.rows == ("image",)
    assert (sheet.shape[1], sheet.shape[0]) == result.size == sheet_size(4, 1, CROP * 2)
    x, y, w, h = result.boxes[0]
    assert (w, h) == (CROP, CROP) and 70 - 8 <= x <= 100 - CROP + 8 and 40 - 8 <= y <= 70 - CROP + 8
    source = read_image(picture)
    crop = source[y: y + h, x: x + w]
    assert np.array_equal(panel(sheet, 0, 0, 2 * CROP), crop.repeat(2, axis=0).repeat(2, axis=1))
    left, top = max(0, x - MARGIN), max(0, y - MARGIN)
    context = source[top: y + h + MARGIN, left: x + w + MARGIN]
    bicubic = bicubic_resize(context, context.shape[1] * 2, context.shape[0] * 2)
    expected = bicubic[(y - top) * 2: (y - top + h) * 2, (x - left) * 2: (x - left + w) * 2]
    assert np.array_equal(panel(sheet, 0, 1, 2 * CROP), expected)
    assert not np.array_equal(panel(sheet, 0, 2, 2 * CROP), panel(sheet, 0, 3, 2 * CROP))


def test_a_clip_sheet_shows_the_most_detailed_frames_or_the_asked_times(ffmpeg: str, clips: Path,
                                                                       tmp_path: Path) -> None:
    clip = make_clip(ffmpeg, clips / "preview.mp4", *lavfi_testsrc("25", 2.0, "128x96"), "-c:v", "libx264")
    model = (str(tiny_model_file(tmp_path)),)
    picked = make_preview(PreviewJob(input=clip, output=tmp_path / "auto.png", scale=2, models=model, crop=CROP,
                                     frames=3))
    assert len(picked.rows) == 3 and picked.size == sheet_size(3, 3, 2 * CROP)
    times = [float(r.removesuffix(" s")) for r in picked.rows]
    assert times == sorted(times) and 0 <= times[0] and times[-1] < 2.0
    asked = make_preview(PreviewJob(input=clip, output=tmp_path / "at.jpg", scale=2, models=model, crop=CROP,
                                    at=(0.5, 1.3)))
    assert asked.rows == ("0.480 s", "1.280 s")  # the frames on screen then
    assert read_image(tmp_path / "at.jpg").shape[:2] == (asked.size[1], asked.size[0])
    with pytest.raises(InputError, match="past the end"):
        make_preview(PreviewJob(input=clip, output=tmp_path / "late.png", models=model, at=(9.0,)))


def test_a_stream_without_duration_or_index_gives_its_first_frame_and_says_why(ffmpeg: str, clips: Path,
                                                                              tmp_path: Path) -> None:
    """A raw H.264 stream cannot seek, even to 0: the preview failed with 'no decodable video frames'."""
    stream = make_clip(ffmpeg, clips / "raw.h264", *lavfi_testsrc("25", 0.4, "128x96"), "-c:v", "libx264",
                       "-f", "h264")
    notes: list[str] = []
    sheet = make_preview(PreviewJob(input=stream, output=tmp_path / "raw.png", scale=2, crop=CROP, frames=3,
                                    models=(str(tiny_model_file(tmp_path)),)), JobCallbacks(note=notes.append))
    assert sheet.rows == ("0.000 s",)
    assert "raw.h264 gave 1 distinct frame(s) of the 3 asked for: its duration is unknown" in notes


def test_a_truncated_or_very_short_clip_gives_the_frames_it_has(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    """A truncated file failed with 'no decodable video frames in the --start/--duration range' (preview has
    no such options) though its first second decodes; a 0.2 s clip showed one frame in every row."""
    whole = make_clip(ffmpeg, clips / "whole.mkv", *lavfi_testsrc("25", 4.0, "128x96"), "-c:v", "libx264")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    model = (str(tiny_model_file(tmp_path)),)
    sheet = make_preview(PreviewJob(input=cut, output=tmp_path / "cut.png", crop=CROP, frames=2, models=model))
    assert len(sheet.rows) == 2 and all(float(r.removesuffix(" s")) < 2.0 for r in sheet.rows)

    short = make_clip(ffmpeg, clips / "short.mkv", *lavfi_testsrc("25", 0.2, "128x96"), "-c:v", "libx264")
    notes: list[str] = []
    sheet = make_preview(PreviewJob(input=short, output=tmp_path / "short.png", crop=CROP, frames=12, models=model),
                         JobCallbacks(note=notes.append))
    assert len(set(sheet.rows)) == len(sheet.rows) == 5, sheet.rows
    assert "short.mkv gave 5 distinct frame(s) of the 12 asked for: the others would repeat a frame" in notes


def test_a_picture_seen_at_several_places_keeps_the_first_time(monkeypatch) -> None:
    """A static or short video shows one picture at several places: the last place seen was kept."""
    from types import SimpleNamespace

    from animesr.video import stills

    still, busy = smooth_image(16, 16, seed=1), smooth_image(16, 16, seed=2)
    seen = [(1.0, still), (2.0, busy), (3.0, still.copy()), (4.0, busy.copy())]
    monkeypatch.setattr(stills, "_frames_that_decode", lambda info, field_mode, places: seen)
    found = stills.most_detailed_frames(SimpleNamespace(duration=5.0), "progressive", 4)
    assert [t for t, _ in found] == [1.0, 2.0]


@pytest.mark.parametrize(("field", "values", "words"), [
    ("at", (0.5, 0.5), "--at 0.5 is given twice"), ("models", ("clean", "clean"), "--model clean is given twice"),
    ("denoise", (0.5, 1.0, 0.5), "--denoise 0.5 is given twice")])
def test_a_value_given_twice_is_refused(tmp_path: Path, field: str, values: tuple, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        PreviewJob(input=tmp_path / "a.mkv", output=tmp_path / "sheet.png", **{field: values})


def test_a_telecined_clip_is_previewed_through_inverse_telecine(ffmpeg: str, film: Path, telecined: Path,
                                                                tmp_path: Path) -> None:
    result = make_preview(PreviewJob(input=telecined, output=tmp_path / "tc.png", scale=2, crop=CROP, at=(1.0,),
                                     models=(str(tiny_model_file(tmp_path)),), field_mode="auto"))
    assert result.field_mode == "ivtc" and result.rows == ("0.959 s",)  # film frame 23 is on screen at 1.0 s
    x, y, w, h = result.boxes[0]
    shown = panel(read_image(tmp_path / "tc.png"), 0, 0, 2 * CROP)[::2, ::2].astype(np.float32)
    original = _source_frames(ffmpeg, film, 64, 48)[:, y: y + h, x: x + w]
    assert int(np.abs(original - shown).mean(axis=(1, 2, 3)).argmin()) == 23


def test_cli_preview_and_its_errors(picture: Path, tmp_path: Path) -> None:
    from animesr.cli import _register, app

    _register()
    model = str(tiny_model_file(tmp_path))
    out = tmp_path / "cli.png"
    ok = CliRunner().invoke(app, ["preview", str(picture), "-o", str(out), "-m", model, "--crop", "32"])
    assert ok.exit_code == 0, ok.output
    assert out.is_file() and "done in" in ok.output
    original = picture.read_bytes()
    for args, code, words in (
        (["-o", str(out)], OutputError.exit_code, "--overwrite"),
        (["-o", str(picture), "--overwrite"], OutputError.exit_code,
         f"{picture}: the output would replace the input; use another -o"),
        (["-o", str(tmp_path / "sheet.gif")], OutputError.exit_code, ".png"),
        (["-o", str(tmp_path / "x.png"), "--at", "3"], InputError.exit_code, "for videos"),
        (["-o", str(tmp_path / "x.png"), "--scale", "5"], InputError.exit_code, "--scale"),
        (["-o", str(tmp_path / "x.png"), "--crop", "4"], InputError.exit_code, "--crop"),
        (["-o", str(tmp_path / "x.png"), "--frames", "13"], InputError.exit_code, "--frames must be 1 to 12"),
    ):
        result = CliRunner().invoke(app, ["preview", str(picture), "-m", model, *args])
        assert result.exit_code == code and handled(result), result.output
        assert words in " ".join(result.output.split())
    assert picture.read_bytes() == original
