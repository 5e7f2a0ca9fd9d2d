"""upscale-video holds every stream and chapter to the video's window (--start/--duration), keeps
titles, flags and aspect ratios, leaves progressive frames alone under --deinterlace, and tries the
encoder before any work. Tiny generated clips and a tiny model."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_video_pipeline import (Recorder, clips, decoded_frames_digest, ffmpeg, frame_times, lavfi_testsrc,  # noqa: F401
                                 leftovers, make_clip, run, sine)

from animesr.config import EncodeSettings, VideoJob
from animesr.errors import InputError, VerificationError
from animesr.video import streams
from animesr.video.extents import Extent, chapter_extents, stream_extents
from animesr.video.ffmpeg import video_encoders
from animesr.video.pipeline import VideoCallbacks, upscale_video
from animesr.video.preflight import check_encoder_opens
from animesr.video.probe import probe
from animesr.video.timeline import Timeline
from animesr.video.verify import AudioLength, Verification

CODECS = {"mkv": "libx264", "mp4": "libx264", "webm": "libvpx-vp9"}


@pytest.fixture(scope="module")
def long_gop(ffmpeg: str, clips: Path) -> Path:
    """3 s at 23.976 with one keyframe (so a seek lands at 0), FLAC audio, one subtitle cue from
    0.2 to 2.8 s, chapters at 0, 1 and 2 s, and a titled, flagged commentary track."""
    subtitles = clips / "long.srt"
    subtitles.write_text("1\n00:00:00,200 --> 00:00:02,800\nLong cue\n")
    chapters = clips / "thirds.txt"
    chapters.write_text(";FFMETADATA1\n" + "".join(
        f"[CHAPTER]\nTIMEBASE=1/1000\nSTART={s * 1000}\nEND={(s + 1) * 1000}\ntitle=Part {s + 1}\n" for s in range(3)))
    return make_clip(
        ffmpeg, clips / "long-gop.mkv", *_counting("24000/1001", 3.0), *sine(440, 48000, 3.0),
        *sine(660, 48000, 3.0), "-i", str(subtitles), "-i", str(chapters), "-map", "0", "-map", "1", "-map", "2",
        "-map", "3", "-map_chapters", "4", "-c:v", "libx264", "-g", "300", "-c:a", "flac", "-c:s", "srt",
        "-metadata:s:v:0", "title=Picture", "-metadata:s:a:1", "title=Commentary", "-disposition:v:0", "default",
        "-disposition:a:0", "default", "-disposition:a:1", "comment")


def _counting(rate: str, seconds: float) -> list[str]:
    """A picture that differs from every other frame of the clip: a ramp that moves and a hue that drifts."""
    return ["-f", "lavfi", "-i", f"color=size=64x48:rate={rate}:duration={seconds},format=yuv444p,"
            "geq=lum='mod(X*4+N*9,256)':cb='40+N*2.5':cr=128"]


def _source_frames(ffmpeg: str, path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf", f"scale={width}:{height}"
                          ":flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3).astype(np.float32)


@pytest.mark.parametrize("container", ["mkv", "mp4", "webm"])
def test_trim_cuts_every_stream_and_chapter_to_the_video_window(ffmpeg: str, long_gop: Path, tmp_path: Path,
                                                                container: str) -> None:
    out = tmp_path / f"trim.{container}"
    result = run(long_gop, out, identity=True, start=0.5, duration=1.0,
                 encode=EncodeSettings(codec=CODECS[container], preset="ultrafast" if container != "webm" else None))
    assert result.verification.ok, result.verification.lines()
    assert result.frames == 24
    info = probe(out)
    assert info.duration is not None and info.duration <= 1.06, "no lead-in, no cue past the end"
    for extent in stream_extents(out, info.streams):
        assert -0.03 <= extent.start and extent.end <= 1.03, extent
    subtitle = next(e for e in stream_extents(out, info.streams) if "subtitle" in e.label)
    assert subtitle.start == pytest.approx(0.0, abs=0.002) and subtitle.end == pytest.approx(1.0, abs=0.045)
    chapters = chapter_extents(out)
    assert [(round(c.start, 2), round(c.end, 2)) for c in chapters] == [(0.0, 0.5), (0.5, 1.0)]
    # the picture moved with the chapters: output frame 12 (0.5 s) is source frame 24 (1.0 s)
    assert frame_times(ffmpeg, out)[12] == pytest.approx(0.5, abs=0.002)
    source = _source_frames(ffmpeg, long_gop, 64, 48)
    written = _source_frames(ffmpeg, out, 64, 48)
    for index in (0, 12, 23):
        errors = np.abs(source - written[index]).mean(axis=(1, 2, 3))
        assert int(errors.argmin()) == index + 12


@pytest.fixture(scope="module")
def early_streams(ffmpeg: str, clips: Path) -> Path:
    """3 s of video (a keyframe every 0.5 s) with AAC audio and one subtitle cue that end at 1 s."""
    subtitles = clips / "early.srt"
    subtitles.write_text("1\n00:00:00,200 --> 00:00:01,000\nEarly cue\n")
    return make_clip(ffmpeg, clips / "early-streams.mkv", *lavfi_testsrc("10", 3.0), *sine(440, 44100, 1.0),
                     "-i", str(subtitles), "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-g", "5",
                     "-c:a", "aac", "-c:s", "srt")


@pytest.mark.parametrize("container", ["mkv", "mp4", "mov"])
def test_a_stream_with_no_packets_in_the_window_is_dropped_with_a_warning(early_streams: Path, tmp_path: Path,
                                                                          container: str) -> None:
    """MP4 and MOV left the empty audio track out (verification then failed on every run), MP4 kept
    the cue before the window as an empty one, Matroska kept both tracks empty."""
    recorder = Recorder()
    out = tmp_path / f"after.{container}"
    result = run(early_streams, out, recorder, start=1.5, duration=0.5, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    assert [s.kind for s in probe(out).streams if s.kind != "data"] == ["video"]
    assert [w for w in recorder.warnings if "no packets in the --start/--duration range" in w] == [
        "stream #1 audio aac dropped: it has no packets in the --start/--duration range",
        "stream #2 subtitle subrip dropped: it has no packets in the --start/--duration range"]


def test_a_stream_that_starts_after_the_window_is_dropped(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    late = make_clip(ffmpeg, clips / "late-audio.mp4", *lavfi_testsrc("10", 3.0), "-itsoffset", "2",
                     *sine(440, 44100, 1.0), "-c:v", "libx264", "-c:a", "aac")
    recorder = Recorder()
    result = run(late, tmp_path / "late.mov", recorder, duration=1.0, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    assert not any(action.kept for action in result.streams)
    assert any("#1 audio aac dropped" in w for w in recorder.warnings)


def test_a_stream_with_packets_in_the_window_is_kept(early_streams: Path, tmp_path: Path) -> None:
    result = run(early_streams, tmp_path / "kept.mp4", start=0.5, duration=1.0, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    assert [a.stream.kind for a in result.streams if a.kept] == ["audio", "subtitle"]


def test_verification_fails_when_a_stream_leaves_the_video_window() -> None:
    def verification(*extents: Extent) -> Verification:
        return Verification(frames_in=48, frames_out=48, seconds_in=2.0, seconds_out=2.0, frame_seconds=0.042,
                            streams_expected=("video", "audio"), streams_out=("video h264", "audio aac"),
                            window=(4.982, 6.984), extents=extents)

    lead_in = verification(Extent("#1 audio", 0.0, 6.99, 0.023))
    assert not lead_in.ok and "OUTSIDE" in lead_in.lines()[-1] and "MISMATCH" in lead_in.lines()[-1]
    long_cue = verification(Extent("#1 audio", 4.98, 6.99, 0.023), Extent("#2 subtitle", 5.0, 12.3))
    assert not long_cue.ok
    assert not verification(Extent("chapter 1", 4.0, 6.0)).ok
    assert verification(Extent("#1 audio", 4.97, 7.0, 0.023), Extent("#2 subtitle", 5.0, 6.9)).ok


def test_a_stream_past_the_video_by_more_than_a_frame_or_its_packet_fails_verification() -> None:
    """One video frame (0.1 s) or one audio packet (0.128 s) of slack, not the two added up."""
    def audio_until(end: float) -> Verification:
        return Verification(frames_in=3, frames_out=3, seconds_in=0.3, seconds_out=0.3, frame_seconds=0.1,
                            streams_expected=("video", "audio"), streams_out=("video h264", "audio aac"),
                            window=(0.0, 0.3), extents=(Extent("#1 audio", 0.0, end, 0.128),))

    assert audio_until(0.42).ok
    assert not audio_until(0.5).ok and "OUTSIDE" in audio_until(0.5).lines()[-1]


def test_a_first_audio_packet_ending_where_the_video_starts_is_inside_the_window() -> None:
    """A cut on a packet boundary keeps the packet that ends there, for the encoder delay to discard."""
    def audio_from(start: float) -> Verification:
        return Verification(frames_in=5, frames_out=5, seconds_in=0.5, seconds_out=0.5, frame_seconds=0.1,
                            streams_expected=("video", "audio"), streams_out=("video h264", "audio aac"),
                            window=(0.044, 0.544), extents=(Extent("#1 audio", start, 0.512, 0.128),))

    assert audio_from(-0.128).ok
    assert not audio_from(-0.3).ok


def test_copied_audio_short_of_the_sources_by_a_packet_fails_verification() -> None:
    def audio(written_seconds: float) -> Verification:
        return Verification(frames_in=48, frames_out=48, seconds_in=2.0, seconds_out=2.0, frame_seconds=0.042,
                            streams_expected=("video", "audio"), streams_out=("video h264", "audio aac"),
                            window=(0.0, 2.0), audio=(AudioLength("#1 audio", 2.0, written_seconds, 0.0131),))

    assert audio(1.999).ok and audio(1.999).lines()[-1] == "audio: #1 audio 2.000 s in, 1.999 s out (ok)"
    short = audio(1.977)
    assert not short.ok and short.lines()[-1] == "audio: #1 audio 2.000 s in, 1.977 s out SHORT (MISMATCH)"


@pytest.fixture(scope="module")
def low_rate_aac(ffmpeg: str, clips: Path) -> Path:
    """10 fps and AAC at 8 kHz in MP4: 128 ms audio packets, and a 1024-sample encoder delay."""
    return make_clip(ffmpeg, clips / "low-rate-aac.mp4", *lavfi_testsrc("10", 2.0), *sine(440, 8000, 2.0),
                     "-c:v", "libx264", "-c:a", "aac")


def _played(ffmpeg: str, path: Path) -> tuple[Extent, Extent]:
    """The video's frames (packets) and the audio's samples as a player gets them (decoded, the
    encoder delay discarded), on the file's own clock."""
    text = subprocess.run([ffmpeg, "-v", "error", "-copyts", "-i", str(path), "-map", "0:v:0", "-map", "0:a:0",
                           "-c:v", "copy", "-f", "framecrc", "-"], capture_output=True, text=True, check=True).stdout
    from animesr.video.extents import parse_extents

    video, audio = parse_extents(text, ["video", "audio"])
    return video, audio


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_a_trimmed_aac_track_plays_from_the_first_frame_to_the_last_within_one_packet(
        ffmpeg: str, low_rate_aac: Path, tmp_path: Path, container: str) -> None:
    """A copied AAC track cut at --start keeps the packet across the cut for its encoder delay to
    discard: Matroska discarded the window's own first packet instead (audio from 0.19 s, the first
    frame at 0.05 s)."""
    out = tmp_path / f"cut.{container}"
    result = run(low_rate_aac, out, start=0.45, duration=0.3, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    video, audio = _played(ffmpeg, out)
    packet = 1024 / 8000
    assert -0.002 <= audio.start < video.start + packet, (video, audio)
    assert video.end - packet < audio.end < video.end + packet, (video, audio)


def test_a_cut_on_a_packet_boundary_keeps_the_packet_that_ends_there(ffmpeg: str, low_rate_aac: Path,
                                                                     tmp_path: Path) -> None:
    """--start 0.256: an 8 kHz AAC packet ends exactly at the cut. Dropped, the encoder delay was
    discarded from the window's first packet instead (Matroska: sound from 0.128 s)."""
    out = tmp_path / "boundary.mkv"
    result = run(low_rate_aac, out, start=0.256, duration=0.5, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    video, audio = _played(ffmpeg, out)
    assert audio.start == pytest.approx(0.0, abs=0.002), (video, audio)


def _short_audio_clip(ffmpeg: str, clips: Path, codec: str, container: str) -> Path:
    """A second at 10 fps, and 0.8 s of a sine at 44.1 kHz in `codec`: every sample is in the window."""
    encoder = {"mp3": "libmp3lame"}.get(codec, codec)
    return make_clip(ffmpeg, clips / f"short-{codec}.{container}", *lavfi_testsrc("10", 1.0), *sine(440, 44100, 0.8),
                     "-c:v", "libx264", "-c:a", encoder)


def _samples(ffmpeg: str, path: Path) -> np.ndarray:
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.int16)


@pytest.mark.parametrize(("codec", "source", "container"), [
    ("aac", "mkv", "mkv"), ("aac", "mp4", "mkv"), ("aac", "mp4", "mp4"), ("mp3", "mkv", "mkv"), ("ac3", "mp4", "mp4")])
def test_an_uncut_copied_track_decodes_to_the_sources_samples(ffmpeg: str, clips: Path, tmp_path: Path, codec: str,
                                                             source: str, container: str) -> None:
    """The first packet, an encoder's priming that ends at 0, is copied: without it Matroska lost
    1024 AAC samples (the delay discarded from the first real packet), MP4 decoded the first
    packet without the one before it, and MP3 and AC-3 lost their first packet everywhere."""
    clip = _short_audio_clip(ffmpeg, clips, codec, source)
    out = tmp_path / f"uncut.{container}"
    result = run(clip, out, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    expected, written = _samples(ffmpeg, clip), _samples(ffmpeg, out)
    assert len(written) == len(expected)
    assert np.array_equal(written, expected)
    assert result.verification.audio, "the lengths were compared"


def test_an_uncut_aac_track_from_matroska_into_mp4_is_the_sources_to_a_millisecond(ffmpeg: str, clips: Path,
                                                                                  tmp_path: Path) -> None:
    """Matroska times the priming in milliseconds (-23 ms, not -1024 samples) and the last packet
    too: MP4's edit list, made from them, starts the sound 10 samples early and ends it without the
    encoder's padding, which Matroska's decoder plays. `ffmpeg -c copy` does the same."""
    clip = _short_audio_clip(ffmpeg, clips, "aac", "mkv")
    out = tmp_path / "uncut.mp4"
    result = run(clip, out, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok, result.verification.lines()
    expected, written = _samples(ffmpeg, clip), _samples(ffmpeg, out)
    early = next((n for n in range(45) if np.array_equal(written[n:], expected[:len(written) - n])), None)
    assert early is not None, "the same samples, at most a millisecond early"
    assert 0 <= len(expected) - (len(written) - early) < 1024, "short of the source by its padding at most"


def test_verification_catches_copied_audio_that_lost_its_first_packet(ffmpeg: str, clips: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """The lead-in filter that dropped the priming (`lte`) left a Matroska output a packet short."""
    monkeypatch.setattr(streams, "AUDIO_LEAD_IN_FILTER", "noise=drop=lte(pts+duration\\,0)")
    clip = _short_audio_clip(ffmpeg, clips, "aac", "mp4")
    out = tmp_path / "short.mkv"
    with pytest.raises(VerificationError, match=r"audio: #1 audio 0\.800 s in, 0\.777 s out SHORT"):
        run(clip, out, encode=EncodeSettings(preset="ultrafast"))
    assert not out.exists()


def _failing_decode(monkeypatch, of_output: bool) -> None:
    """The decode of the output's copied audio (`-copyts`) or of the source's fails as ffmpeg 9 does
    on an AAC track with many damaged packets (exit 69)."""
    from animesr.video import verify

    real = verify.run_tool

    def run_tool(args: list[str]) -> subprocess.CompletedProcess:
        if ("-copyts" in args) == of_output and "pcm_s16le" in args:
            return subprocess.CompletedProcess(args, 69, "", "[aac @ 0x1] Prediction is not allowed in AAC-LC.\n"
                                               "[aac @ 0x1] Too many bitstream errors\n")
        return real(args)

    monkeypatch.setattr(verify, "run_tool", run_tool)


def test_copied_audio_that_does_not_decode_in_the_output_fails_verification(ffmpeg: str, clips: Path,
                                                                            tmp_path: Path, monkeypatch) -> None:
    """A non-zero exit skipped the length check silently: a damaged output track passed."""
    _failing_decode(monkeypatch, of_output=True)
    out = tmp_path / "damaged.mkv"
    with pytest.raises(VerificationError, match=r"audio: the output's copied audio does not decode \(.*Too many "
                                                r"bitstream errors\) \(MISMATCH\)"):
        run(_short_audio_clip(ffmpeg, clips, "aac", "mp4"), out, encode=EncodeSettings(preset="ultrafast"))
    assert not out.exists()


def test_copied_audio_this_ffmpeg_cannot_decode_in_the_source_is_not_compared_and_says_so(
        ffmpeg: str, clips: Path, tmp_path: Path, monkeypatch) -> None:
    _failing_decode(monkeypatch, of_output=False)
    recorder = Recorder()
    result = run(_short_audio_clip(ffmpeg, clips, "aac", "mp4"), tmp_path / "unchecked.mkv", recorder,
                 encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok and not result.verification.audio
    assert result.verification.lines()[-1].startswith("audio: not compared, this ffmpeg cannot decode the source's (")
    assert [w for w in recorder.warnings if "not checked" in w] == [
        "the copied audio's length was not checked: this ffmpeg cannot decode the source's ([aac @ 0x1] Prediction "
        "is not allowed in AAC-LC. | [aac @ 0x1] Too many bitstream errors)"]


@pytest.mark.parametrize(("codec", "container"), [("aac", "mkv"), ("aac", "mp4"), ("mp2", "mkv")])
def test_a_source_whose_video_starts_after_its_audio_is_whole_and_keeps_its_timing(
        ffmpeg: str, clips: Path, tmp_path: Path, codec: str, container: str) -> None:
    """Video from 0.3 s, audio from 0: refused as truncated (1.0 s of video against 1.3 s declared),
    and with --accept-truncated the audio before the first frame failed the extents check."""
    source = make_clip(ffmpeg, clips / f"late-video-{codec}.{container}", "-itsoffset", "0.3",
                       *lavfi_testsrc("10", 1.0), *sine(440, 44100, 1.3), "-c:v", "libx264", "-c:a", codec)
    out = tmp_path / f"late.{container}"
    result = run(source, out, encode=EncodeSettings(preset="ultrafast"))
    assert result.verification.ok and result.verification.audio, result.verification.lines()
    assert result.frames == 10
    video, audio = _played(ffmpeg, out)
    expected_video, expected_audio = _played(ffmpeg, source)
    assert video.start - audio.start == pytest.approx(expected_video.start - expected_audio.start, abs=0.002)
    assert video.end == pytest.approx(expected_video.end, abs=0.002)


def test_titles_flags_and_the_video_default_survive(long_gop: Path, tmp_path: Path) -> None:
    source = probe(long_gop)
    assert source.streams[0].dispositions == ("default",) and source.streams[2].dispositions == ("comment",)
    for container in ("mkv", "mp4"):
        recorder = Recorder()
        run(long_gop, tmp_path / f"meta.{container}", recorder)
        out = [s for s in probe(tmp_path / f"meta.{container}").streams if s.kind != "data"]
        assert [(s.kind, s.title, s.dispositions) for s in out[:3]] == [
            ("video", "Picture", ("default",)), ("audio", "", ("default",)), ("audio", "Commentary", ("comment",))]
        assert not any("did not keep" in w for w in recorder.warnings), recorder.warnings
        if container == "mkv":  # nor does Matroska gain a flag: the subtitle was not a default track
            assert out[3].kind == "subtitle" and out[3].dispositions == ()
    recorder = Recorder()
    run(long_gop, tmp_path / "meta.webm", recorder, encode=EncodeSettings(codec="libvpx-vp9"))
    out = probe(tmp_path / "meta.webm").streams
    if "comment" not in out[2].dispositions:
        assert any("Commentary" in w and "'comment'" in w and "webm" in w for w in recorder.warnings), recorder.warnings


def test_an_exact_sample_aspect_ratio_is_kept(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    source = make_clip(ffmpeg, clips / "sar.mp4", *lavfi_testsrc("25", 0.3), "-vf", "setsar=22707/22720:max=65535",
                       "-c:v", "libx264")
    sar = probe(source).sar  # x264 stores it as 3493:3495: terms over 100 either way
    assert sar != 1 and max(sar.numerator, sar.denominator) > 100
    run(source, tmp_path / "sar.mp4")
    assert probe(tmp_path / "sar.mp4").sar == sar


def test_deinterlace_leaves_progressive_frames_alone(ffmpeg: str, clips: Path, tmp_path: Path) -> None:
    source = make_clip(ffmpeg, clips / "progressive.mkv", *lavfi_testsrc("30000/1001", 0.5), "-c:v", "libx264")
    plain = run(source, tmp_path / "plain.mkv", identity=True)
    recorder = Recorder()
    treated = run(source, tmp_path / "treated.mkv", recorder, identity=True, deinterlace=True)
    assert treated.frames == plain.frames
    assert decoded_frames_digest(ffmpeg, tmp_path / "treated.mkv") == decoded_frames_digest(ffmpeg, tmp_path / "plain.mkv")
    assert "variable frame rate" not in recorder.notes[0] and "29.970 fps" in recorder.notes[0]


def test_a_doubled_time_base_with_millisecond_rounding_is_steady() -> None:
    steady = Timeline(Fraction(1, 2000), tuple(range(0, 66 * 30, 66)), (66,) * 30)
    rounded = Timeline(Fraction(1, 2000), tuple(int(i * 2000 * 1001 / 30000) // 2 * 2 for i in range(30)), (66,) * 30)
    assert steady.steady() and rounded.steady()
    assert not Timeline(Fraction(1, 2000), (0, 66, 140, 200), (66,) * 4).steady()


def test_an_encoder_that_cannot_open_fails_before_any_work(long_gop: Path, tmp_path: Path) -> None:
    if "h264_nvenc" not in video_encoders():
        pytest.skip("this ffmpeg has no h264_nvenc")
    try:
        check_encoder_opens(probe(long_gop), EncodeSettings(codec="h264_nvenc"), width=128, height=96,
                            container="matroska", beside=None)
    except InputError:
        pass
    else:
        pytest.skip("h264_nvenc works on this machine")
    out = tmp_path / "nvenc.mkv"
    frames: list[int] = []
    job = VideoJob(input=long_gop, output=out, scale=2, model=Path("/nonexistent.safetensors"),
                   encode=EncodeSettings(codec="h264_nvenc"))
    with pytest.raises(InputError, match="--codec h264_nvenc does not work here") as caught:
        upscale_video(job, VideoCallbacks(on_frames=lambda done, reused: frames.append(done)))
    assert "\n" not in str(caught.value) and "Lavc" not in str(caught.value)
    assert not frames and not leftovers(out)


# ---- parsers ---------------------------------------------------------------------------------


def test_banner_flags_and_mp4_titles_are_read() -> None:
    from animesr.video.probe import _from_banner

    banner = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 00:00:01.00, start: 0.000000, bitrate: 100 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 64x48 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 12800 tbn (default)
  Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 67 kb/s (default) (comment)
    Metadata:
      handler_name    : SoundHandler
      name            : Commentary
  Stream #0:2[0x3](eng): Subtitle: mov_text (tx3g / 0x67337874), 0 kb/s (forced) (hearing impaired)
"""
    streams = _from_banner(Path("x.mp4"), banner).streams
    assert [(s.title, s.dispositions) for s in streams] == [
        ("", ("default",)), ("Commentary", ("comment", "default")), ("", ("forced", "hearing_impaired"))]


def test_packet_and_chapter_extents_are_parsed() -> None:
    from animesr.video.extents import parse_chapters, parse_extents

    framecrc = ("#tb 0: 1/1000\n#tb 1: 1/48000\n0, 0, 0, 40, 9, 0x1\n1, -960, -960, 960, 9, 0x1\n"
                "0, 40, 40, 40, 9, 0x1\n1, 0, 0, 1024, 9, 0x1\n1, 1024, 1024, 1024, 9, 0x1\n")
    video, audio = parse_extents(framecrc, ["#0 video", "#1 audio"])
    assert (video.start, video.end) == (0.0, 0.08)
    assert (audio.start, audio.end, audio.longest) == pytest.approx((-0.02, 2048 / 48000, 1024 / 48000))
    chapters = parse_chapters("  Chapters:\n    Chapter #0:0: start 0.000000, end 0.500000\n"
                              "    Chapter #0:1: start 0.500000, end 1.000000\n")
    assert [(c.start, c.end) for c in chapters] == [(0.0, 0.5), (0.5, 1.0)]


def test_the_encoders_own_complaint_is_shown() -> None:
    from animesr.video.preflight import encoder_complaint

    stderr = ("[h264_nvenc @ 0x55ac02f58bc0] Cannot load libcuda.so.1\n[vost#0:0/h264_nvenc @ 0x1] [enc:h264_nvenc @ "
              "0x2] Error while opening encoder\n[out#0/null @ 0x3] Nothing was written into output file\n")
    assert encoder_complaint(stderr, "h264_nvenc") == "Cannot load libcuda.so.1"
    assert encoder_complaint("one\nlast words\n", "h264_nvenc") == "last words"
