"""upscale-video end to end on tiny generated clips (ffmpeg lavfi sources) with a tiny model:
streams, chapters, timing, sizes, colours, trimming, resume, bad input, and the CLI."""

from __future__ import annotations

import hashlib
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import handled
from typer.testing import CliRunner

from animesr.checkpoint import save_checkpoint
from animesr.config import EncodeSettings, InferenceSettings, VideoJob
from animesr.errors import FFmpegError, InputError, OutputError
from animesr.model import A2N, A2NConfig
from animesr.video.ffmpeg import ffmpeg_exe
from animesr.video.pipeline import VideoCallbacks, VideoResult, upscale_video
from animesr.video.probe import probe
from animesr.video.workdir import lock_path, partial_output_path, work_folder_path

SIZE = "64x48"


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    try:
        return ffmpeg_exe()
    except FFmpegError as error:
        pytest.skip(f"no ffmpeg: {error}")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


def tiny_model_file(folder: Path, scale: int = 2, identity: bool = False) -> Path:
    """8 channels, one block; `identity`: the residual tail zeroed, so the model is pure bilinear."""
    path = folder / f"tiny-x{scale}{'-bilinear' if identity else ''}.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = A2N(A2NConfig(scale=scale, channels=8, up_channels=8, blocks=1))
        if identity:
            with torch.no_grad():
                model.tail.weight.zero_()
                model.tail.bias.zero_()
        save_checkpoint(path, model, value_range=1.0)
    return path


def make_clip(ffmpeg: str, path: Path, *args: str) -> Path:
    if not path.exists():
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args, str(path)], check=True)
    return path


def lavfi_testsrc(rate: str = "24", seconds: float = 1.0, size: str = SIZE) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def sine(frequency: int, rate: int, seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate={rate}:duration={seconds}"]


@pytest.fixture(scope="module")
def rich_mkv(ffmpeg: str, clips: Path) -> Path:
    """23.976 fps, FLAC (jpn) + PCM (eng, titled) audio, SubRip subtitles, 2 chapters, a title tag."""
    subtitles = clips / "subs.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:00,800\nHello\n\n2\n00:00:01,000 --> 00:00:01,400\nWorld\n")
    chapters = clips / "chapters.txt"
    chapters.write_text(";FFMETADATA1\ntitle=Test clip\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=One\n"
                        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=1500\ntitle=Two\n")
    return make_clip(
        ffmpeg, clips / "rich.mkv", *lavfi_testsrc("24000/1001", 1.5), *sine(440, 48000, 1.5), *sine(880, 44100, 1.5),
        "-i", str(subtitles), "-i", str(chapters), "-map", "0", "-map", "1", "-map", "2", "-map", "3",
        "-map_metadata", "4", "-map_chapters", "4", "-c:v", "libx264", "-c:a:0", "flac", "-c:a:1", "pcm_s16le",
        "-c:s", "srt", "-metadata:s:a:0", "language=jpn", "-metadata:s:a:1", "language=eng",
        "-metadata:s:a:1", "title=Commentary", "-metadata:s:s:0", "language=eng",
    )


class Recorder:
    def __init__(self, stop_after: int | None = None) -> None:
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.stop_after = stop_after

    def on_frames(self, done: int, reused: int) -> None:
        if self.stop_after is not None and done >= self.stop_after:
            raise KeyboardInterrupt

    def callbacks(self) -> VideoCallbacks:
        return VideoCallbacks(on_frames=self.on_frames, warn=self.warnings.append, note=self.notes.append)


def run(source: Path, output: Path, recorder: Recorder | None = None, scale: int = 2, identity: bool = False,
        **options) -> VideoResult:
    model = tiny_model_file(output.parent, scale, identity)
    job = VideoJob(input=source, output=output, scale=scale, model=model, **options)
    return upscale_video(job, (recorder or Recorder()).callbacks())


def frame_times(ffmpeg: str, path: Path) -> list[float]:
    text = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc",
                           "-"], capture_output=True, text=True, check=True).stdout
    base = next(line for line in text.splitlines() if line.startswith("#tb 0:")).split(": ")[1]
    pts = sorted(int(line.split(",")[2]) for line in text.splitlines() if line and not line.startswith("#"))
    return [float(p * Fraction(base)) for p in pts]


def decoded_frames_digest(ffmpeg: str, path: Path) -> str:
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return hashlib.sha256(raw).hexdigest()


def leftovers(output: Path) -> list[Path]:
    return [p for p in (output, partial_output_path(output), work_folder_path(output), lock_path(output))
            if p.exists()]


# ---- faithful output ------------------------------------------------------------------------


def test_mkv_keeps_both_audio_tracks_subtitles_chapters_and_tags(rich_mkv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    result = run(rich_mkv, out, chunk_frames=10)
    info = probe(out)
    assert result.verification.ok, result.verification.lines()
    assert (info.width, info.height) == (128, 96)
    assert [(s.kind, s.codec, s.language, s.title) for s in info.streams] == [
        ("video", "h264", "", ""), ("audio", "flac", "jpn", ""), ("audio", "pcm_s16le", "eng", "Commentary"),
        ("subtitle", "subrip", "eng", "")]
    assert info.chapters == 2
    assert info.frame_rate == Fraction(24000, 1001)
    assert result.frames == 36 and result.verification.frames_out == 36
    assert frame_times(ffmpeg_exe(), out) == pytest.approx(frame_times(ffmpeg_exe(), rich_mkv), abs=0.0011)
    assert not leftovers(out)[1:], "the partial file and the work folder are removed on success"
    banner = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "Test clip" in banner and "title           : Two" in banner


def test_mp4_converts_what_it_cannot_hold_and_says_so(rich_mkv: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    result = run(rich_mkv, tmp_path / "out.mp4", recorder)
    info = probe(tmp_path / "out.mp4")
    assert result.verification.ok, result.verification.lines()
    kinds = [(s.kind, s.codec, s.language) for s in info.streams if s.kind != "data"]
    assert kinds == [("video", "h264", ""), ("audio", "flac", "jpn"), ("audio", "aac", "eng"),
                     ("subtitle", "mov_text", "eng")]
    assert info.chapters == 2
    assert any("pcm_s16le" in w and "AAC" in w for w in recorder.warnings)
    assert any("subrip" in w and "mov_text" in w for w in recorder.warnings)


@pytest.mark.parametrize("rate", ["24000/1001", "30000/1001"])
def test_ntsc_rates_keep_exact_rate_count_and_audio_length(ffmpeg: str, clips: Path, tmp_path: Path,
                                                           rate: str) -> None:
    source = make_clip(ffmpeg, clips / f"ntsc-{rate.split('/')[0]}.mp4", *lavfi_testsrc(rate, 1.2), *sine(440, 48000, 1.2),
                       "-c:v", "libx264", "-c:a", "aac", "-shortest")
    result = run(source, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert out.frame_rate == probe(source).frame_rate == Fraction(rate)
    assert result.verification.ok, result.verification.lines()
    assert result.verification.frames_out == result.frames == len(frame_times(ffmpeg, source))
    assert frame_times(ffmpeg, tmp_path / "out.mp4") == pytest.approx(frame_times(ffmpeg, source), abs=1e-4)


def test_variable_frame_rate_keeps_every_timestamp(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    source = make_clip(ffmpeg, clips / "vfr.mkv", *lavfi_testsrc("30", 1.0),
                       "-vf", "setpts='if(lt(N,12),N/30,0.4+(N-12)/12)/TB'", "-fps_mode", "vfr", "-c:v", "libx264")
    times = frame_times(ffmpeg, source)
    assert len({round(b - a, 3) for a, b in zip(times, times[1:])}) > 1, "the clip must be VFR"
    result = run(source, tmp_path / "out.mkv", chunk_frames=7)
    assert frame_times(ffmpeg, tmp_path / "out.mkv") == pytest.approx(times, abs=0.0011)
    assert result.verification.ok, result.verification.lines()


def test_fps_option_converts_to_a_constant_rate_in_sync(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    source = make_clip(ffmpeg, clips / "ntsc30-audio.mkv", *lavfi_testsrc("30000/1001", 2.0), *sine(300, 48000, 2.0),
                       "-c:v", "libx264", "-c:a", "flac")
    result = run(source, tmp_path / "out.mkv", fps="25")
    times = frame_times(ffmpeg, tmp_path / "out.mkv")
    assert probe(tmp_path / "out.mkv").frame_rate == 25
    assert len(times) == result.frames == pytest.approx(2.0 * 25, abs=1)
    assert np.allclose(np.diff(times), 0.04, atol=0.0011)
    assert abs(result.verification.seconds_out - 2.0) <= 0.04


# ---- sizes, colours, input kinds ------------------------------------------------------------


@pytest.mark.parametrize(("size", "scale", "expected", "padding"),
                         [("65x49", 2, (130, 98), (0, 0)), ("33x27", 3, (100, 82), (1, 1))])
def test_odd_sizes(ffmpeg: str, clips: Path, tmp_path: Path, size: str, scale: int,
                   expected: tuple[int, int], padding: tuple[int, int]) -> None:
    width, height = size.split("x")
    source = make_clip(ffmpeg, clips / f"odd-{size}.mkv", *lavfi_testsrc("24", 0.5, "66x50"), "-c:v", "libx264",
                       "-vf", f"format=yuv444p,crop={width}:{height}:0:0,setsar=8/9")
    recorder = Recorder()
    result = run(source, tmp_path / "out.mkv", recorder, scale=scale)
    out = probe(tmp_path / "out.mkv")
    assert (out.width, out.height) == expected and result.padding == padding
    # the picture keeps its shape: a padded one gets the sample aspect ratio that makes up for the pixel
    shown = Fraction(int(width), int(height)) * Fraction(8, 9)
    assert out.sar * Fraction(*expected) == shown if any(padding) else out.sar == Fraction(8, 9)
    assert result.verification.ok
    if any(padding):
        assert any("padded by 1×1 px" in n for n in recorder.notes)


def test_no_audio_and_gif_inputs(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    silent = make_clip(ffmpeg, clips / "silent.mp4", *lavfi_testsrc("25", 0.6), "-c:v", "libx264")
    gif = make_clip(ffmpeg, clips / "anim.gif", *lavfi_testsrc("10", 1.0))
    for source in (silent, gif):
        result = run(source, tmp_path / f"{source.stem}.mkv")
        assert result.verification.ok, result.verification.lines()
        assert result.verification.streams_out == ("video h264",)
        assert result.frames == len(frame_times(ffmpeg, source))
    assert probe(tmp_path / "anim.mkv").frame_rate == 10


def test_colours_survive_the_round_trip_with_the_source_matrix(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    """A flat colour through a pure-bilinear model: any matrix or range mix-up shifts it by many levels."""
    for matrix in ("bt709", "smpte170m"):
        source = make_clip(ffmpeg, clips / f"flat-{matrix}.mkv", "-f", "lavfi", "-i", "color=c=0xC03060:size=64x48:d=0.3",
                           "-vf", f"scale=out_color_matrix={'bt601' if matrix == 'smpte170m' else matrix}:out_range=tv,"
                           f"format=yuv420p,setparams=colorspace={matrix}:range=tv:color_primaries={matrix}:"
                           f"color_trc={'bt709' if matrix == 'bt709' else 'smpte170m'}",
                           "-c:v", "libx264", "-crf", "0")
        run(source, tmp_path / f"out-{matrix}.mkv", identity=True)
        out = probe(tmp_path / f"out-{matrix}.mkv")
        assert (out.color_matrix, out.color_range, out.color_primaries) == (matrix, "tv", matrix)
        centre = _decoded_centre(ffmpeg, tmp_path / f"out-{matrix}.mkv", matrix)
        assert np.abs(centre - np.array([0xC0, 0x30, 0x60])).max() <= 3, centre


def _decoded_centre(ffmpeg: str, path: Path, matrix: str) -> np.ndarray:
    info = probe(path)
    swscale = "bt601" if matrix == "smpte170m" else matrix
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1", "-vf",
                          f"scale=in_color_matrix={swscale}:in_range=tv:out_range=pc,format=rgb24",
                          "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    frame = np.frombuffer(raw, np.uint8).reshape(info.height, info.width, 3)
    return frame[20:-20, 20:-20].reshape(-1, 3).mean(axis=0)


def test_interlaced_source_warns_and_deinterlace_keeps_the_frame_count(ffmpeg: str, clips: Path,
                                                                       tmp_path: Path) -> None:
    source = make_clip(ffmpeg, clips / "interlaced.mkv", *lavfi_testsrc("25", 0.6), "-c:v", "libx264",
                       "-flags", "+ildct+ilme", "-x264opts", "tff=1", "-field_order", "tt")
    assert probe(source).interlaced
    warned = Recorder()
    run(source, tmp_path / "combed.mkv", warned)
    assert any("interlaced" in w and "--deinterlace" in w for w in warned.warnings)
    quiet = Recorder()
    result = run(source, tmp_path / "clean.mkv", quiet, deinterlace=True)
    assert not any("interlaced" in w for w in quiet.warnings)
    assert result.verification.ok and result.frames == 15


def test_start_and_duration_trim(ffmpeg: str, rich_mkv: Path, tmp_path: Path) -> None:
    result = run(rich_mkv, tmp_path / "trim.mkv", start=0.5, duration=0.5)
    assert result.frames == pytest.approx(12, abs=1)
    assert result.verification.ok, result.verification.lines()
    assert abs(result.verification.seconds_out - 0.5) <= 1 / 23.976 + 0.002


# ---- resume and safety ----------------------------------------------------------------------


def test_interrupted_run_resumes_to_the_same_file(rich_mkv: Path, tmp_path: Path) -> None:
    whole = run(rich_mkv, tmp_path / "whole.mkv", chunk_frames=8)
    out = tmp_path / "resumed.mkv"
    with pytest.raises(KeyboardInterrupt):
        run(rich_mkv, out, Recorder(stop_after=20), chunk_frames=8)
    work = work_folder_path(out)
    assert not out.exists() and work.is_dir()
    assert sorted(p.name for p in work.glob("chunk_*")) == ["chunk_00000.nut", "chunk_00001.nut"]
    resumed = run(rich_mkv, out, chunk_frames=8)
    assert resumed.resumed_from == 16 and resumed.verification.ok
    assert resumed.reused == whole.reused
    assert decoded_frames_digest(ffmpeg_exe(), out) == decoded_frames_digest(ffmpeg_exe(), tmp_path / "whole.mkv")
    assert not work.exists()


def test_changed_settings_do_not_resume_foreign_work(rich_mkv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        run(rich_mkv, out, Recorder(stop_after=10), chunk_frames=8)
    with pytest.raises(OutputError, match="encode"):
        run(rich_mkv, out, chunk_frames=8, encode=EncodeSettings(crf=30))
    with pytest.raises(OutputError, match="tta"):
        run(rich_mkv, out, chunk_frames=8, inference=InferenceSettings(device="cpu", tta=True))
    result = run(rich_mkv, out, chunk_frames=8, encode=EncodeSettings(crf=30), resume=False)
    assert result.resumed_from == 0 and result.verification.ok


def test_existing_output_needs_overwrite(rich_mkv: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken.mkv"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        run(rich_mkv, out)
    assert out.read_bytes() == b"keep me"
    assert run(rich_mkv, out, overwrite=True).verification.ok


def test_bad_inputs_fail_with_one_line_and_leave_nothing(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    good = make_clip(ffmpeg, clips / "good.mp4", *lavfi_testsrc("25", 1.0), "-c:v", "libx264")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    audio_only = make_clip(ffmpeg, clips / "audio.mka", *sine(440, 48000, 0.5), "-c:a", "flac")
    cases = {tmp_path / "missing.mp4": "not found", truncated: "truncated|cannot read|not a video",
             garbage: "not a video|cannot", audio_only: "no video stream"}
    for source, message in cases.items():
        out = tmp_path / f"{source.stem}-out.mkv"
        with pytest.raises(InputError, match=message) as caught:
            run(source, out)
        assert "\n" not in str(caught.value)
        assert not leftovers(out)


def test_an_encoder_this_ffmpeg_lacks_fails_before_any_work(rich_mkv: Path, tmp_path: Path) -> None:
    out = tmp_path / "typo.mkv"
    with pytest.raises(InputError, match="--codec libx246: this ffmpeg has no such video encoder"):
        run(rich_mkv, out, encode=EncodeSettings(codec="libx246"))
    assert not leftovers(out)


# ---- the command line -----------------------------------------------------------------------


def test_cli_upscales_and_reports(rich_mkv: Path, tmp_path: Path) -> None:
    from animesr.cli import _register, app

    _register()
    model = tiny_model_file(tmp_path)
    out = tmp_path / "cli.mkv"
    result = CliRunner().invoke(app, ["upscale-video", str(rich_mkv), "-o", str(out), "--scale", "2",
                                      "--model", str(model), "--crf", "20", "--preset", "ultrafast"])
    assert result.exit_code == 0, result.output
    assert out.exists()
    assert "frames: 36 in, 36 out (ok)" in result.output and "reused" in result.output
    again = CliRunner().invoke(app, ["upscale-video", str(rich_mkv), "-o", str(out), "-s", "2", "-m", str(model)])
    assert again.exit_code == OutputError.exit_code and "--overwrite" in again.output
    missing = CliRunner().invoke(app, ["upscale-video", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "x.mkv"),
                                       "-s", "2", "-m", str(model)])
    assert missing.exit_code == InputError.exit_code and handled(missing), missing.exception
    lines = [line for line in missing.output.splitlines() if line.strip()]
    assert lines == [f"error: input not found: {tmp_path / 'nope.mp4'}"], lines
    assert not (tmp_path / "x.mkv").exists() and not lock_path(tmp_path / "x.mkv").exists()
