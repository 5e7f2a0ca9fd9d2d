"""Inverse telecine and --field-mode: a generated telecined clip (ffmpeg's `telecine` on a 23.976
source whose every frame differs), the real Popeye DVD clips (skipped where ../shared is absent),
and the detection behind `auto` and the warning, on every clip in ../shared/data/video."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, handled
from test_video_pipeline import (Recorder, clips, decoded_frames_digest, ffmpeg, frame_times, lavfi_testsrc,  # noqa: F401
                                 make_clip, run, sine, tiny_model_file)
from test_video_window import _counting, _source_frames
from typer.testing import CliRunner

from animesr.config import EncodeSettings, VideoJob
from animesr.errors import InputError, VerificationError
from animesr.video import commands
from animesr.video.commands import ivtc_filters
from animesr.video.extents import stream_extents
from animesr.video.fields import (FieldStats, choose_field_mode, measure_fields, parse_idet, sample_windows,
                                  settle_field_mode)
from animesr.video.pipeline import scan_timeline
from animesr.video.probe import probe

VIDEO = SHARED / "data" / "video"
DVD_CLIPS = ("popeye1936_sinbad_T00-1_dvd_lowbitrate.mkv", "popeye1936_sinbad_T01-2_dvd_lowbitrate.mkv")


@pytest.fixture(scope="module")
def film(ffmpeg: str, clips: Path) -> Path:
    """The film: 4 s at 23.976 fps, 96 frames, each unlike any other."""
    return make_clip(ffmpeg, clips / "film.mkv", *_counting("24000/1001", 4.0), "-c:v", "libx264", "-crf", "0")


@pytest.fixture(scope="module")
def telecined(ffmpeg: str, clips: Path, film: Path) -> Path:
    """The film through 3:2 pulldown (120 frames at 29.97, 2 of every 5 combed), coded interlaced,
    with 4 s of FLAC audio."""
    return make_clip(ffmpeg, clips / "telecined.mkv", "-i", str(film), *sine(440, 48000, 4.0),
                     "-vf", "telecine=first_field=top:pattern=23", "-c:v", "libx264", "-crf", "4",
                     "-flags", "+ildct+ilme", "-x264opts", "tff=1", "-c:a", "flac")


def combed_share(ffmpeg: str, path: Path, filters: str = "") -> float:
    log = subprocess.run([ffmpeg, "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v:0", "-vf",
                          f"{filters}{',' if filters else ''}idet", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    combed, progressive, _ = parse_idet(log)
    return combed / max(combed + progressive, 1)


def test_ivtc_gives_back_the_film_frames_at_23_976_in_sync(ffmpeg: str, film: Path, telecined: Path,
                                                           tmp_path: Path) -> None:
    assert probe(telecined).frame_rate == Fraction(30000, 1001)
    assert combed_share(ffmpeg, telecined) > 0.3
    out = tmp_path / "ivtc.mkv"
    result = run(telecined, out, identity=True, field_mode="ivtc")
    assert result.verification.ok, result.verification.lines()
    assert result.verification.frames_decoded == 120
    assert result.frames == result.verification.frames_out == pytest.approx(120 * 4 / 5, abs=1)
    assert "120 decoded → 96 after inverse telecine (5 → 4)" in result.verification.lines()[0]
    assert probe(out).frame_rate == Fraction(24000, 1001)
    times = frame_times(ffmpeg, out)
    assert np.allclose(np.diff(times), 1001 / 24000, atol=0.0011)
    assert combed_share(ffmpeg, out) < 0.05
    audio = next(e for e in stream_extents(out, probe(out).streams) if "audio" in e.label)
    assert audio.end - audio.start == pytest.approx(4.0, abs=0.03)
    # output frame i, shown at i × 1001/24000 s, is film frame i: the pictures kept their times
    original = _source_frames(ffmpeg, film, 64, 48)
    written = _source_frames(ffmpeg, out, 64, 48)
    matches = [int(np.abs(original - written[i]).mean(axis=(1, 2, 3)).argmin()) for i in range(0, 96, 7)]
    assert matches == list(range(0, 96, 7))
    assert times[0] == pytest.approx(0.0, abs=0.002)


@pytest.mark.parametrize(("rate", "fps", "duration", "frames"), [
    ("30000/1001", "24000/1001", None, 24), ("30000/1001", "60", None, 60), ("10", "30", 1.0, 30)])
def test_ivtc_then_fps_keeps_the_last_frames_duration(ffmpeg: str, clips: Path, tmp_path: Path, rate: str, fps: str,
                                                       duration: float | None, frames: int) -> None:
    """decimate ended its stream where its last frame starts, so fps dropped that frame: 23 frames
    (0.959 s) of the 24 that IVTC alone gives, and the audio cut to them."""
    seconds = 1.0 if duration is None else 2.0
    clip = make_clip(ffmpeg, clips / f"ivtc-fps-{rate.split('/')[0]}.mp4", *lavfi_testsrc(rate, seconds),
                     *sine(440, 48000, 1.0), "-c:v", "libx264", "-c:a", "aac")
    result = run(clip, tmp_path / "out.mkv", field_mode="ivtc", fps=fps, duration=duration,
                 encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    assert result.frames == frames
    assert result.verification.seconds_out == pytest.approx(1.0, abs=0.0025)


def test_verification_compares_a_rate_converted_video_with_the_source_window(ffmpeg: str, clips: Path,
                                                                             tmp_path: Path, monkeypatch) -> None:
    """The frames fps gave, not the source's, were the measure: a video short of its last frame passed."""
    monkeypatch.setattr(commands, "_DECIMATE_END", "null")
    clip = make_clip(ffmpeg, clips / "ivtc-fps-30000.mp4", *lavfi_testsrc("30000/1001", 1.0), *sine(440, 48000, 1.0),
                     "-c:v", "libx264", "-c:a", "aac")
    with pytest.raises(VerificationError, match=r"duration: 1\.001 s in, 0\.959 s out .*MISMATCH"):
        run(clip, tmp_path / "short.mkv", field_mode="ivtc", fps="24000/1001",
            encode=EncodeSettings(preset="ultrafast"))


def test_an_interrupted_ivtc_job_resumes_to_the_same_frames(ffmpeg: str, telecined: Path, tmp_path: Path) -> None:
    whole = run(telecined, tmp_path / "whole.mkv", field_mode="ivtc", chunk_frames=32)
    out = tmp_path / "resumed.mkv"
    with pytest.raises(KeyboardInterrupt):
        run(telecined, out, Recorder(stop_after=40), field_mode="ivtc", chunk_frames=32)
    resumed = run(telecined, out, field_mode="ivtc", chunk_frames=32)
    assert resumed.resumed_from == 32 and resumed.verification.ok and resumed.frames == whole.frames == 96
    assert decoded_frames_digest(ffmpeg, out) == decoded_frames_digest(ffmpeg, tmp_path / "whole.mkv")


def test_auto_picks_ivtc_for_the_telecined_clip_and_nothing_for_the_film(film: Path, telecined: Path,
                                                                         tmp_path: Path) -> None:
    notes: list[str] = []
    assert settle_field_mode(probe(telecined), "auto", note=notes.append, warn=pytest.fail) == "ivtc"
    assert "telecined" in notes[0] and "combed" in notes[0]
    assert settle_field_mode(probe(film), "auto", note=notes.append, warn=pytest.fail) == "progressive"


def test_a_telecined_source_without_an_option_gets_one_warning(telecined: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    job = VideoJob(input=telecined, output=tmp_path / "x.mkv", scale=2)
    settle_field_mode(probe(telecined), job.field_mode, note=recorder.notes.append,
                      warn=recorder.warnings.append)
    assert len(recorder.warnings) == 1 and "--ivtc" in recorder.warnings[0]


def test_field_mode_choices() -> None:
    ntsc, pal = Fraction(30000, 1001), Fraction(25)
    hard_telecine = FieldStats(frames=1000, combed=560, progressive=150, repeated=150, cycles=25, cadence=0.5)
    interlaced = FieldStats(frames=600, combed=600, progressive=0, repeated=0, cycles=119, cadence=0.24)
    soft_repeat = FieldStats(frames=1000, combed=0, progressive=1000, repeated=0, cycles=190, cadence=0.63)
    native = FieldStats(frames=1000, combed=0, progressive=530, repeated=0, cycles=60, cadence=0.38)
    assert choose_field_mode(hard_telecine, ntsc).mode == "ivtc"
    assert choose_field_mode(hard_telecine, pal).mode == "deinterlace"
    assert choose_field_mode(interlaced, ntsc).mode == "deinterlace"
    assert choose_field_mode(soft_repeat, ntsc).mode == "ivtc"
    assert choose_field_mode(soft_repeat, Fraction(24)).mode == "progressive"
    assert choose_field_mode(native, ntsc).mode == "progressive"


def test_ivtc_and_deinterlace_together_are_refused(telecined: Path, tmp_path: Path) -> None:
    from animesr.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["upscale-video", str(telecined), "-o", str(tmp_path / "x.mkv"), "-s", "2",
                                      "-m", str(tiny_model_file(tmp_path)), "--ivtc", "--deinterlace"])
    assert result.exit_code == InputError.exit_code and handled(result)
    assert "choose one" in result.output
    with pytest.raises(ValueError, match="--field-mode"):
        VideoJob(input=telecined, output=tmp_path / "x.mkv", scale=2, field_mode="sometimes")


# ---- the real clips ----------------------------------------------------------------------------


def _real(name: str) -> Path:
    path = VIDEO / name
    if not path.is_file():
        pytest.skip(f"needs {path} (the read-only ../shared folder beside the checkout), which is absent")
    return path


@pytest.mark.parametrize("name", DVD_CLIPS)
def test_the_popeye_dvd_clips_come_back_to_the_films_frames(ffmpeg: str, name: str) -> None:
    """1800 frames at 29.97 (one repeated in five) → 1440 at 23.976, the frame count of the 24 fps HD
    release of the same excerpt; decode only (the timeline the job upscales), no network."""
    clip = _real(name)
    info = probe(clip)
    timeline = scan_timeline(info, VideoJob(input=clip, output=Path("unused.mkv"), scale=2, field_mode="ivtc"))
    assert timeline.decoded == 1800 or abs(timeline.decoded - info.duration * 30000 / 1001) <= 2
    assert timeline.count == pytest.approx(timeline.decoded * 4 / 5, abs=1)
    assert timeline.rate(Fraction(1)) == Fraction(24000, 1001)
    assert combed_share(ffmpeg, clip, ivtc_filters(info)) < 0.02


def test_popeye_dvd_second_upscaled_with_ivtc(ffmpeg: str, tmp_path: Path) -> None:
    clip = _real(DVD_CLIPS[0])
    result = run(clip, tmp_path / "popeye.mkv", start=10.0, duration=0.5, field_mode="ivtc")
    assert result.verification.ok, result.verification.lines()
    assert result.verification.frames_decoded == 15 and result.frames == 12
    assert probe(tmp_path / "popeye.mkv").frame_rate == Fraction(24000, 1001)


EXPECTED_AUTO = {"popeye1936_sinbad_T00-1_dvd_lowbitrate.mkv": "ivtc",
                 "popeye1936_sinbad_T01-2_dvd_lowbitrate.mkv": "ivtc"}  # every other clip: progressive


def test_auto_is_right_on_every_shared_clip() -> None:
    if not VIDEO.is_dir():
        pytest.skip(f"needs {VIDEO} (the read-only ../shared folder beside the checkout), which is absent")
    clips = sorted(p for p in VIDEO.glob("*") if p.suffix in (".mp4", ".mkv", ".webm", ".gif"))
    assert len(clips) >= 9
    for clip in clips:
        info = probe(clip)
        stats = measure_fields(info, sample_windows(info, None, None, 5, 200))
        choice = choose_field_mode(stats, info.frame_rate)
        assert choice.mode == EXPECTED_AUTO.get(clip.name, "progressive"), (clip.name, stats)
