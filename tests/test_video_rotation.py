"""Videos whose stream carries a display rotation (phone clips): ffmpeg turns their frames upright
on decode, and upscale-video and preview read, upscale and write them upright, at the size they
are shown. Tiny generated clips (one stored picture, tagged with each rotation) and a tiny model."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_video_pipeline import clips, ffmpeg, make_clip, run, tiny_model_file  # noqa: F401

from animesr.config import PreviewJob, VideoJob
from animesr.errors import InputError
from animesr.preview import GAP, LABEL_HEIGHT, make_preview
from animesr.video.pipeline import scan_timeline
from animesr.video.probe import probe

STORED = (48, 32)  # width, height of the frames as the stream stores them
CROP = 16
# ffmpeg's display options -> (quarter turns counterclockwise, then mirrored left to right)
DISPLAYS = {
    "rotation 90": (("-display_rotation", "90"), 1, False),
    "rotation 180": (("-display_rotation", "180"), 2, False),
    "rotation -90": (("-display_rotation", "-90"), 3, False),
    "rotation 90, mirrored": (("-display_rotation", "90", "-display_hflip"), 1, True),
}


@pytest.fixture(scope="module")
def stored(ffmpeg: str, clips: Path) -> Path:
    """3 grey frames (colour would add chroma rounding to compare through) of a pattern no turn or
    mirror leaves alike: a parabola across, a ramp down, moving."""
    pattern = (f"color=size={STORED[0]}x{STORED[1]}:rate=10:duration=0.3,format=yuv444p,"
               "geq=lum='mod(X*X*5+Y*11+N*17,256)':cb=128:cr=128")
    return make_clip(ffmpeg, clips / "stored.mp4", "-f", "lavfi", "-i", pattern, "-c:v", "libx264",
                     "-pix_fmt", "yuv420p")


def displayed(ffmpeg: str, clips: Path, stored: Path, name: str) -> Path:
    """`stored`'s packets as they are, with the display matrix of DISPLAYS[name]."""
    options = DISPLAYS[name][0]
    return make_clip(ffmpeg, clips / f"{name.replace(' ', '_').replace(',', '')}.mp4", *options,
                     "-i", str(stored), "-c", "copy")


def decoded(ffmpeg: str, path: Path, width: int, height: int) -> np.ndarray:
    """Every frame as a player shows it (ffmpeg applies the display matrix), N×H×W×3 float."""
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3).astype(np.float32)


def shown_upright(ffmpeg: str, stored: Path, name: str) -> np.ndarray:
    """The stored frames turned and mirrored by numpy as DISPLAYS[name] says a player shows them."""
    _, quarter_turns, mirrored = DISPLAYS[name]
    frames = np.rot90(decoded(ffmpeg, stored, *STORED), quarter_turns, axes=(1, 2))
    return frames[:, :, ::-1] if mirrored else frames


def bilinear_x2(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(f, (f.shape[1] * 2, f.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
                     for f in frames])


@pytest.mark.parametrize("name", list(DISPLAYS))
def test_a_rotated_clip_is_upscaled_upright_at_its_shown_size(ffmpeg: str, clips: Path, stored: Path,
                                                              tmp_path: Path, name: str) -> None:
    source = displayed(ffmpeg, clips, stored, name)
    expected = bilinear_x2(shown_upright(ffmpeg, stored, name))  # the bilinear model is pure bilinear
    height, width = expected.shape[1:3]
    out = tmp_path / "out.mp4"
    result = run(source, out, identity=True)
    assert result.verification.ok, result.verification.lines()
    written = probe(out)
    assert (written.width, written.height, written.rotation) == (width, height, 0)
    frames = decoded(ffmpeg, out, width, height)
    assert len(frames) == 3
    error = np.abs(frames - expected).mean()  # about 2.3: the encoder's loss (CRF 18)
    turned_wrong = np.abs(frames - expected[:, ::-1, ::-1]).mean()  # upside down: about 70
    assert error < 4 and turned_wrong > 10 * error, (error, turned_wrong)


def test_a_rotated_clip_of_odd_size_is_upscaled_upright_padded_and_verified(ffmpeg: str, clips: Path,
                                                                          tmp_path: Path) -> None:
    """47×33 stored, shown 33×47 (rotation 90): ×3 is 99×141 as shown, one pixel short of 4:2:0's
    even sizes both ways; the padding goes on the right and bottom of the upright picture."""
    pattern = ("color=size=47x33:rate=10:duration=0.3,format=yuv444p,"
               "geq=lum='mod(X*X*5+Y*11+N*17,256)':cb=128:cr=128")
    odd = make_clip(ffmpeg, clips / "odd-stored.mp4", "-f", "lavfi", "-i", pattern, "-c:v", "libx264",
                    "-pix_fmt", "yuv444p")
    source = make_clip(ffmpeg, clips / "odd-rotation-90.mp4", "-display_rotation", "90", "-i", str(odd), "-c", "copy")
    out = tmp_path / "odd.mp4"
    result = run(source, out, scale=3, identity=True)
    assert result.verification.ok, result.verification.lines()
    assert result.padding == (1, 1)
    written = probe(out)
    assert (written.width, written.height, written.rotation) == (100, 142, 0)
    frames = decoded(ffmpeg, out, 100, 142)
    upright = np.rot90(decoded(ffmpeg, odd, 47, 33), 1, axes=(1, 2))
    expected = np.stack([cv2.resize(f, (99, 141), interpolation=cv2.INTER_LINEAR) for f in upright])
    error = np.abs(frames[:, :141, :99] - expected).mean()
    turned_wrong = np.abs(frames[:, :141, :99] - expected[:, ::-1, ::-1]).mean()
    assert len(frames) == 3 and error < 6 and turned_wrong > 5 * error, (error, turned_wrong)
    # the edge repeated: the padding column and row are their neighbours (up to the encoder's loss)
    assert np.abs(frames[:, :, 99] - frames[:, :, 98]).mean() < 6
    assert np.abs(frames[:, 141] - frames[:, 140]).mean() < 6


def test_a_clip_read_at_another_size_than_it_decodes_at_is_refused(ffmpeg: str, clips: Path,
                                                                   stored: Path) -> None:
    """Were the display rotation missed, the frames would be read as stripes: the scan says so first."""
    info = probe(displayed(ffmpeg, clips, stored, "rotation 90"))
    assert (info.width, info.height, info.rotation) == (32, 48, 90)
    missed = replace(info, width=48, height=32, rotation=0)
    with pytest.raises(InputError, match="decodes as 32×48 frames, but its stream says 48×32"):
        scan_timeline(missed, VideoJob(input=info.path, output=Path("unused.mkv"), scale=2))


@pytest.mark.parametrize("name", ["rotation 90", "rotation 180"])
def test_a_rotated_clip_previews_upright(ffmpeg: str, clips: Path, stored: Path, tmp_path: Path,
                                        name: str) -> None:
    source = displayed(ffmpeg, clips, stored, name)
    upright = shown_upright(ffmpeg, stored, name)[0]
    result = make_preview(PreviewJob(input=source, output=tmp_path / "sheet.png", scale=2, crop=CROP, at=(0.0,),
                                     models=(str(tiny_model_file(tmp_path)),)))
    x, y, w, h = result.boxes[0]
    assert (w, h) == (CROP, CROP) and x + w <= upright.shape[1] and y + h <= upright.shape[0]
    sheet = cv2.cvtColor(cv2.imread(str(tmp_path / "sheet.png")), cv2.COLOR_BGR2RGB).astype(np.float32)
    top, left = GAP + LABEL_HEIGHT, GAP
    nearest = sheet[top: top + 2 * CROP: 2, left: left + 2 * CROP: 2]  # the source column, pixels doubled
    error = np.abs(nearest - upright[y: y + h, x: x + w]).mean()
    turned_wrong = np.abs(nearest - upright[::-1, ::-1][y: y + h, x: x + w]).mean()
    assert error < 2 and turned_wrong > 10 * error, (error, turned_wrong)
