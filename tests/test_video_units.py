"""upscale-video's parts on their own: probing from ffmpeg's banner and from ffprobe's JSON,
timestamps, held-frame detection, stream plans, padding. No video files needed."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from animesr.config import EncodeSettings, VideoJob
from animesr.errors import InputError, OutputError
from animesr.video.commands import check_quality, quality_args
from animesr.video.ffmpeg import _encodable_video, parse_listing, video_encoders
from animesr.video.held import HeldFrameDetector, block_difference
from animesr.video.pipeline import even_padding
from animesr.video.probe import StreamInfo, VideoInfo, _from_banner, _from_ffprobe
from animesr.video.streams import (AUDIO_LEAD_IN_FILTER, check_video_codec, container_for, plan_streams,
                                   stream_args)
from animesr.video.timeline import Timeline, parse_framecrc
from animesr.video.verify import Verification, find_truncation
from animesr.video.workdir import lock_path, output_lock

BANNER = """\
Input #0, matroska,webm, from 'ep01.mkv':
  Metadata:
    title           : Episode 1
  Duration: 00:23:40.02, start: 0.000000, bitrate: 2000 kb/s
  Chapters:
    Chapter #0:0: start 0.000000, end 90.000000
      Metadata:
        title           : Opening
    Chapter #0:1: start 90.000000, end 1420.020000
      Metadata:
        title           : Part A
  Stream #0:0: Video: mpeg2video (Main), yuv420p(tv, smpte170m/smpte170m/bt709, top first), 720x480 [SAR 8:9 DAR 4:3], 29.97 fps, 29.97 tbr, 1k tbn (default)
    Metadata:
      DURATION        : 00:23:40.019000000
  Stream #0:1(jpn): Audio: ac3, 48000 Hz, stereo, fltp, 192 kb/s (default)
    Metadata:
      title           : Japanese
  Stream #0:2(eng): Subtitle: ass (ssa)
  Stream #0:3: Attachment: ttf
    Metadata:
      filename        : font.ttf
      mimetype        : font/ttf
"""


def test_banner_probe_reads_every_property() -> None:
    info = _from_banner(Path("ep01.mkv"), BANNER)
    assert (info.width, info.height, info.sar) == (720, 480, Fraction(8, 9))
    assert info.frame_rate == Fraction(30000, 1001)
    assert info.frame_count == round((23 * 60 + 40.019) * 30000 / 1001)  # no count: duration × rate
    assert not info.frame_count_from_container
    assert info.field_order == "tt" and info.interlaced
    assert (info.color_matrix, info.color_range, info.color_primaries, info.color_transfer) == (
        "smpte170m", "tv", "smpte170m", "bt709")
    assert info.chapters == 2
    assert [(s.kind, s.codec, s.language, s.title) for s in info.streams] == [
        ("video", "mpeg2video", "", ""), ("audio", "ac3", "jpn", "Japanese"),
        ("subtitle", "ass", "eng", ""), ("attachment", "ttf", "", "font.ttf")]


@pytest.mark.parametrize(("shown", "exact"), [("23.98", Fraction(24000, 1001)), ("59.94", Fraction(60000, 1001)),
                                               ("25", Fraction(25)), ("10", Fraction(10))])
def test_banner_rates_snap_to_exact_fractions(shown: str, exact: Fraction) -> None:
    banner = BANNER.replace("29.97 fps", f"{shown} fps")
    assert _from_banner(Path("x.mkv"), banner).frame_rate == exact


def test_untagged_colour_defaults_to_bt601_for_sd_and_bt709_for_hd() -> None:
    sd = _from_banner(Path("x.mp4"), BANNER.replace("(tv, smpte170m/smpte170m/bt709, top first)", ""))
    hd = _from_banner(Path("x.mp4"), sd_to_hd(BANNER.replace("(tv, smpte170m/smpte170m/bt709, top first)", "")))
    assert sd.color_matrix is None and sd.decode_matrix == "smpte170m" and sd.decode_range == "tv"
    assert hd.decode_matrix == "bt709"


def sd_to_hd(banner: str) -> str:
    return banner.replace("720x480", "1920x1080")


def test_banner_without_video_is_an_input_error() -> None:
    audio_only = "\n".join(line for line in BANNER.splitlines() if "Video:" not in line)
    with pytest.raises(InputError, match="no video stream"):
        _from_banner(Path("x.mka"), audio_only)


def test_ffprobe_json_probe() -> None:
    data = {
        "format": {"format_name": "mov,mp4", "duration": "2.002"},
        "streams": [
            {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720,
             "sample_aspect_ratio": "1:1", "avg_frame_rate": "24000/1001", "r_frame_rate": "24000/1001",
             "nb_frames": "48", "pix_fmt": "yuv420p", "field_order": "progressive", "color_space": "bt709",
             "color_range": "tv", "color_primaries": "bt709", "color_transfer": "bt709", "duration": "2.002"},
            {"index": 1, "codec_type": "audio", "codec_name": "aac", "tags": {"language": "jpn", "title": "Main"}},
        ],
        "chapters": [{"id": 0}],
    }
    info = _from_ffprobe(Path("x.mp4"), data)
    assert info.frame_rate == Fraction(24000, 1001) and info.frame_count == 48 and info.frame_count_from_container
    assert info.color_matrix == "bt709" and info.chapters == 1 and not info.interlaced
    assert info.streams[1] == StreamInfo(1, "audio", "aac", "jpn", "Main")


PHONE_BANNER = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mp4':
  Metadata:
    major_brand     : isom
  Duration: 00:00:02.00, start: 0.000000, bitrate: 9000 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 1920x1080 [SAR 4:3 DAR 64:27], 8999 kb/s, 30 fps, 30 tbr, 90k tbn (default)
    Metadata:
      handler_name    : VideoHandle
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s (default)
    Metadata:
      handler_name    : SoundHandle
"""


@pytest.mark.parametrize(("side_data", "rotation", "size", "sar"), [
    ("Display Matrix: rotation of -90.00 degrees", 270, (1080, 1920), Fraction(3, 4)),
    ("displaymatrix: rotation of -90.00 degrees", 270, (1080, 1920), Fraction(3, 4)),  # ffmpeg before 7.1
    ("Display Matrix: rotation of 90.00 degrees", 90, (1080, 1920), Fraction(3, 4)),
    ("Display Matrix: rotation of -180.00 degrees", 180, (1920, 1080), Fraction(4, 3)),
    ("Display Matrix: rotation of -0.00 degrees", 0, (1920, 1080), Fraction(4, 3)),  # mirrored only
])
def test_banner_probe_describes_a_rotated_stream_as_ffmpeg_decodes_it(
        side_data: str, rotation: int, size: tuple[int, int], sar: Fraction) -> None:
    banner = PHONE_BANNER.replace("Display Matrix: rotation of -90.00 degrees", side_data)
    info = _from_banner(Path("phone.mp4"), banner)
    assert (info.width, info.height, info.sar, info.rotation) == (*size, sar, rotation)
    assert [s.kind for s in info.streams] == ["video", "audio"] and info.frame_rate == 30


def test_a_rotated_sd_stream_keeps_the_sd_colour_default() -> None:
    """Shown 480×720, stored 720×480: still SD, decoded with BT.601 when untagged."""
    info = _from_banner(Path("phone.mp4"), PHONE_BANNER.replace("1920x1080", "720x480"))
    assert (info.width, info.height) == (480, 720) and info.decode_matrix == "smpte170m"
    assert _from_banner(Path("phone.mp4"), PHONE_BANNER).decode_matrix == "bt709"


def _ffprobe_phone(side_data: list[dict]) -> dict:
    return {
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "2.000000"},
        "streams": [{"index": 0, "codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
                     "sample_aspect_ratio": "4:3", "avg_frame_rate": "30/1", "nb_frames": "60",
                     "pix_fmt": "yuv420p", "side_data_list": side_data}],
    }


def test_ffprobe_probe_reads_the_display_matrix_rotation() -> None:
    matrix = {"side_data_type": "Display Matrix",
              "displaymatrix": "\n00000000:            0       65536           0"
                               "\n00000001:       -65536           0           0"
                               "\n00000002:            0           0  1073741824\n",
              "rotation": -90}
    turned = _from_ffprobe(Path("phone.mp4"), _ffprobe_phone([matrix]))
    assert (turned.width, turned.height, turned.sar, turned.rotation) == (1080, 1920, Fraction(3, 4), 270)
    upside_down = _from_ffprobe(Path("phone.mp4"), _ffprobe_phone([{**matrix, "rotation": 180}]))
    assert (upside_down.width, upside_down.height, upside_down.rotation) == (1920, 1080, 180)
    plain = _from_ffprobe(Path("phone.mp4"), _ffprobe_phone([{"side_data_type": "Stereo 3D"}]))
    assert (plain.width, plain.height, plain.sar, plain.rotation) == (1920, 1080, Fraction(4, 3), 0)


def test_verification_fails_an_output_not_shown_at_the_upscaled_size() -> None:
    striped = Verification(frames_in=3, frames_out=3, seconds_in=0.3, seconds_out=0.3, frame_seconds=0.1,
                           streams_expected=("video",), streams_out=("video h264",), size_expected=(64, 96),
                           size_out=(96, 64))
    assert not striped.ok and "size: 96×64 out, 64×96 expected (MISMATCH)" in striped.lines()
    assert replace(striped, size_out=(64, 96)).ok


def test_a_rotated_source_resumes_only_work_made_upright(tmp_path: Path) -> None:
    from test_video_pipeline import tiny_model_file

    from animesr.pretrained import resolve_model
    from animesr.video.pipeline import _identity

    source = tmp_path / "phone.mp4"
    source.write_bytes(b"frames")
    job = VideoJob(input=source, output=tmp_path / "out.mp4", scale=2)
    loaded = resolve_model(tiny_model_file(tmp_path), 2)
    turned = _from_banner(source, PHONE_BANNER)
    upright = _identity(job, replace(turned, rotation=0), loaded, torch.float32)
    assert "rotation" not in upright, "older work folders of unrotated sources resume"
    assert _identity(job, turned, loaded, torch.float32) == {**upright, "rotation": 270}


def test_framecrc_parse_sorts_into_presentation_order() -> None:
    text = "#tb 0: 1/1000\n#media_type 0: video\n0, -80, 0, 40, 100, 0x1\n0, -40, 80, 40, 9, 0x2\n0, 0, 40, 40, 9, 0x3\n"
    timeline = parse_framecrc(text)
    assert timeline.time_base == Fraction(1, 1000) and timeline.pts == (0, 40, 80)
    assert timeline.seconds() == pytest.approx(0.12)


def test_a_rate_converted_timeline_keeps_where_the_source_frames_end() -> None:
    """--fps: stream 1 lists the frames before the conversion; its end is kept, also in the work folder."""
    text = ("#tb 0: 1/24\n#tb 1: 1/1000\n0, 0, 0, 1, 9, 0x1\n0, 1, 1, 1, 9, 0x2\n"
            "1, 0, 0, 40, 9, 0x3\n1, 40, 40, 45, 9, 0x4\n")
    timeline = parse_framecrc(text, rate_converted=True)
    assert timeline.pts == (0, 1) and timeline.decoded is None
    assert timeline.window_seconds() == pytest.approx(0.085) and timeline.seconds() == pytest.approx(1 / 12)
    assert Timeline.from_json(timeline.to_json()) == timeline
    assert parse_framecrc(text).decoded == 2 and parse_framecrc(text).window_seconds() == pytest.approx(1 / 12)


def _evaluate(expression: str, n: int) -> int:
    python = re.sub(r"if\(", "_if(", expression).replace("lt(", "_lt(").replace("N", str(n))
    return eval(python, {"_if": lambda c, a, b: a if c else b, "_lt": lambda a, b: a < b})


def test_pts_expression_reproduces_variable_timestamps() -> None:
    pts = (100, 133, 167, 200, 267, 333, 400, 500, 533)
    timeline = Timeline(Fraction(1, 1000), pts, (33,) * len(pts))
    expression = timeline.pts_expression(2, 9)
    assert [_evaluate(expression, n) for n in range(7)] == [p - 167 for p in pts[2:9]]
    assert Timeline(Fraction(1, 24000), (0, 1001, 2002), (1001,) * 3).pts_expression(1, 3) == "N*1001"
    assert timeline.span_seconds(2, 4) == Fraction(100, 1000)  # up to the next chunk's first frame
    assert timeline.span_seconds(7, 9) == Fraction(66, 1000)  # the last frame's own duration


def test_block_difference_sees_a_small_change_that_a_whole_frame_mean_hides() -> None:
    frame = np.full((64, 100, 3), 120, np.uint8)
    mouth = frame.copy()
    mouth[40:48, 40:48] = 200  # an 8×8 px change: 1% of the frame, 20 levels in its 16×16 block
    assert block_difference(mouth, frame) == pytest.approx(80 * 64 / 256)
    assert block_difference(frame, frame) == 0.0
    edge = frame.copy()
    edge[48:, 96:] = 126  # the edge block is 16×4 px: averaged over its own size
    assert block_difference(edge, frame) == pytest.approx(6.0)


def test_held_frames_compare_with_the_last_processed_frame_so_pans_cannot_creep() -> None:
    detector = HeldFrameDetector(threshold=2.0)
    base = np.full((32, 32, 3), 100, np.uint8)
    assert not detector.is_held(base)
    steps = [base + np.uint8(k) for k in (1, 2, 3)]  # each 1 level from the previous frame
    assert [detector.is_held(f) for f in steps] == [True, True, False]  # 3 levels from `base`
    disabled = HeldFrameDetector(threshold=0)
    assert not disabled.is_held(base)
    assert not disabled.is_held(base.copy())  # identical frame, but threshold 0 turns reuse off


def test_stream_plans_per_container() -> None:
    streams = (StreamInfo(1, "audio", "pcm_s16le"), StreamInfo(2, "audio", "flac"), StreamInfo(3, "subtitle", "subrip"),
               StreamInfo(4, "subtitle", "hdmv_pgs_subtitle"), StreamInfo(5, "attachment", "ttf"))
    assert [a.codec for a in plan_streams(streams, "matroska")] == ["copy"] * 5
    assert [a.codec for a in plan_streams(streams, "mp4")] == ["aac", "copy", "mov_text", None, None]
    assert [a.codec for a in plan_streams(streams, "webm")] == ["libopus", "libopus", "webvtt", None, None]
    mp4 = plan_streams(streams, "mp4")
    args = stream_args(mp4, 2.5, cut=True)
    assert [a for a in args if a.startswith(("1:", "-c:"))] + [args[args.index("-c:3") + 1]] == [
        "1:1", "-c:1", "1:2", "-c:2", "1:3", "-c:3", "mov_text"]
    assert args[args.index("-c:1") + 1] == "aac" and args[args.index("-c:2") + 1] == "copy"
    # audio from before --start dropped; subtitle cues cut to the window; flags set, not left to the muxer
    assert args[args.index("-copypriorss:1") + 1] == "0" and "-copypriorss:3" not in args
    assert "2.500000/TB" in args[args.index("-bsf:3") + 1]
    assert args[args.index("-disposition:2") + 1] == "0"
    assert "hdmv_pgs_subtitle" in mp4[3].reason


def test_mov_and_mp4_convert_the_audio_their_muxers_refuse() -> None:
    """MOV refuses Opus, FLAC and TrueHD ("only supported in MP4"); MP4 takes TrueHD only as an
    experiment: both failed when muxing, after every frame was upscaled."""
    codecs = ("opus", "flac", "truehd", "ac3", "alac")
    streams = tuple(StreamInfo(n, "audio", codec) for n, codec in enumerate(codecs, 1))
    assert [a.codec for a in plan_streams(streams, "mov")] == ["aac", "aac", "aac", "copy", "copy"]
    assert [a.codec for a in plan_streams(streams, "mp4")] == ["copy", "copy", "aac", "copy", "copy"]
    assert plan_streams(streams, "mov")[1].reason == "mov cannot hold flac audio: converted to AAC"


def test_copied_audio_keeps_the_packet_that_reaches_the_window() -> None:
    """Uncut, every codec keeps its first packet, which ends at 0 when it is an encoder's priming;
    cut at --start, only codecs whose delay the container discards keep the packet across the cut."""
    actions = plan_streams((StreamInfo(1, "audio", "aac"), StreamInfo(2, "audio", "mp3")), "matroska")
    uncut, cut = stream_args(actions, 2.0, cut=False), stream_args(actions, 2.0, cut=True)
    assert uncut[uncut.index("-bsf:1") + 1] == uncut[uncut.index("-bsf:2") + 1] == AUDIO_LEAD_IN_FILTER
    assert cut[cut.index("-bsf:1") + 1] == AUDIO_LEAD_IN_FILTER and cut[cut.index("-copypriorss:2") + 1] == "0"
    assert "lt(pts+duration" in AUDIO_LEAD_IN_FILTER and "lte(" not in AUDIO_LEAD_IN_FILTER


def test_containers_and_codecs() -> None:
    assert container_for(Path("a.MP4")) == "mp4" and container_for(Path("noext")) == "matroska"
    with pytest.raises(InputError, match="cannot write"):
        container_for(Path("a.avi"))
    built = frozenset({"libx264", "ffv1", "h264_nvenc"})
    with pytest.raises(InputError, match="cannot go in webm"):
        check_video_codec("webm", "libx264", built)
    with pytest.raises(InputError, match="no such video encoder"):
        check_video_codec("matroska", "libx246", built)
    check_video_codec("matroska", "ffv1", built)
    check_video_codec("mp4", "h264_nvenc", built)


LISTING = """Encoders:
 V..... = Video
 A..... = Audio
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC (codec h264)
 V....D h264_nvenc           NVIDIA NVENC H.264 encoder (codec h264)
 A....D aac                  AAC (Advanced Audio Coding)
 S..... ass                  ASS (Advanced SubStation Alpha) subtitle
"""


CODECS = """Codecs:
 D..... = Decoding supported
 -------
 DEV.LS h264                 H.264 / AVC / MPEG-4 part 10 (encoders: libx264 h264_nvenc )
 D.V.L. 4xm                  4X Movie
 DEA.L. aac                  AAC (Advanced Audio Coding)
"""


def test_listings_keep_what_can_encode_video() -> None:
    assert parse_listing(LISTING, lambda flags: flags[0] == "V") == {"libx264", "h264_nvenc"}
    assert parse_listing(CODECS, _encodable_video) == {"h264"}


def test_this_ffmpeg_accepts_encoders_and_codec_names() -> None:
    names = video_encoders()
    assert {"libx264", "ffv1", "h264", "hevc"} <= names and "aac" not in names and "4xm" not in names


@pytest.mark.parametrize(("codec", "expected"), [
    ("libx264", ["-crf", "20"]),
    ("libvpx-vp9", ["-crf", "20", "-b:v", "0"]),
    ("hevc_nvenc", ["-rc", "vbr", "-cq", "20", "-b:v", "0"]),
    ("h264_qsv", ["-global_quality", "20"]),
    ("h264_amf", ["-rc", "cqp", "-qp_i", "20", "-qp_p", "20", "-qp_b", "20"]),
    ("hevc_amf", ["-rc", "cqp", "-qp_i", "20", "-qp_p", "20"]),
    ("av1_amf", ["-rc", "cqp", "-qp_i", "80", "-qp_p", "80", "-qp_b", "80"]),
    ("ffv1", []),
])
def test_crf_becomes_each_encoders_constant_quality(codec: str, expected: list[str]) -> None:
    assert quality_args(EncodeSettings(codec=codec, crf=20)) == expected
    assert quality_args(EncodeSettings(codec=codec, crf=None, preset="p7"))[-2:] == ["-preset", "p7"]


@pytest.mark.parametrize(("codec", "crf"), [("libx264", 52), ("libsvtav1", 64), ("h264_nvenc", 0),
                                            ("hevc_qsv", 52), ("hevc_amf", -1)])
def test_crf_out_of_the_encoders_range_is_one_line(codec: str, crf: int) -> None:
    with pytest.raises(InputError, match=f"--crf {crf} is out of range for {codec}: use"):
        check_quality(EncodeSettings(codec=codec, crf=crf))


def test_crf_in_range_or_unused_passes() -> None:
    for codec, crf in (("libx264", 0), ("libsvtav1", 63), ("h264_nvenc", 51), ("av1_amf", 63), ("ffv1", 99)):
        check_quality(EncodeSettings(codec=codec, crf=crf))


def test_even_padding_for_subsampled_chroma() -> None:
    assert even_padding(195, 147, "yuv420p") == (1, 1)
    assert even_padding(195, 147, "yuv422p10le") == (1, 0)
    assert even_padding(195, 147, "yuv444p") == (0, 0)
    assert even_padding(128, 96, "yuv420p") == (0, 0)


def test_cli_time_parsing() -> None:
    from animesr.cli.upscale_video import parse_time

    assert parse_time("90", "--start") == 90.0
    assert parse_time("1:30.5", "--start") == 90.5
    assert parse_time("01:00:00", "--start") == 3600.0
    assert parse_time(" 1:02:03.25 ", "--start") == 3723.25 and parse_time(".5", "--start") == 0.5
    assert parse_time("75", "--start") == 75.0 and parse_time("0:59.9", "--start") == 59.9


@pytest.mark.parametrize("text", ["1:99", "1:60", "1:60:00", "1:2:3:4", "1_0", "\u0661", "1:-30", "-5", "1e3",
                                  "inf", "nan", "", ":30", "1:", "1.2.3"])
def test_a_malformed_time_is_refused_at_the_option_check(text: str) -> None:
    """float() took '1_0' and Arabic-Indic digits, and '1:-30' meant 30 s; each failed later as 'no frames'."""
    import typer

    from animesr.cli.upscale_video import parse_time

    with pytest.raises(typer.Exit) as stopped:
        parse_time(text, "--start")
    assert stopped.value.exit_code == 2


# ---- truncated sources, the output lock -----------------------------------------------------


def _info(duration: float | None, count: int, counted: bool) -> VideoInfo:
    return replace(_from_banner(Path("ep01.mkv"), BANNER), frame_rate=Fraction(25), duration=duration,
                   frame_count=count, frame_count_from_container=counted)


def _steady(frames: int) -> Timeline:
    return Timeline(Fraction(1, 25), tuple(range(frames)), (1,) * frames)


def _job(**options) -> VideoJob:
    return VideoJob(input=Path("ep01.mkv"), output=Path("out.mkv"), scale=2, **options)


def test_truncation_is_what_decodes_short_of_the_declared_length_beyond_rounding() -> None:
    estimated = _info(2.0, 50, counted=False)
    assert find_truncation(estimated, _job(), _steady(50)) is None
    assert find_truncation(estimated, _job(), _steady(49)) is None, "duration × rate is off by a frame"
    assert find_truncation(estimated, _job(), _steady(45)) is None, "within a quarter second"
    cut = find_truncation(estimated, _job(), _steady(20))
    assert cut is not None and (cut.declared_frames, cut.decoded_frames) == (None, 20)
    assert "declares 2.000 s of video, but only 0.800 s (20 frames) decode" in cut.describe()

    counted = _info(None, 50, counted=True)
    assert find_truncation(counted, _job(), _steady(48)) is None
    assert find_truncation(counted, _job(), _steady(20)).declared_frames == 50
    assert find_truncation(_info(None, 0, counted=False), _job(), _steady(1)) is None, "nothing declared"
    half_rate = Timeline(Fraction(2, 25), tuple(range(25)), (1,) * 25)  # --fps 12.5: half the frames, 2 s
    assert find_truncation(counted, _job(fps="25/2"), half_rate) is None, "a rate change compares seconds"


def test_truncation_of_a_trimmed_part_compares_with_the_part() -> None:
    source = _info(2.0, 50, counted=True)
    assert find_truncation(source, _job(start=1.0), _steady(25)) is None
    assert find_truncation(source, _job(start=0.5, duration=0.5), _steady(12)) is None
    assert find_truncation(source, _job(start=1.6, duration=1.0), _steady(10)) is None
    short = find_truncation(source, _job(start=0.2, duration=1.0), _steady(8))
    assert short is not None and short.declared_frames is None and short.declared_seconds == pytest.approx(1.0)


def test_the_output_lock_is_exclusive_and_a_stale_lock_file_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    lock_path(out).write_text("12345\n")  # left by a run that was killed: no process holds it
    with output_lock(out) as held:
        assert held.read_text() == f"{os.getpid()}\n"
        with pytest.raises(OutputError, match=rf"another animesr run \(process {os.getpid()}\) is writing out.mkv"):
            with output_lock(out):
                pass
    assert not lock_path(out).exists()
    with output_lock(out):
        pass


def test_the_output_lock_in_a_missing_folder_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write in folder"):
        with output_lock(tmp_path / "no-such-folder" / "out.mkv"):
            pass


def test_an_ffmpeg_killed_by_a_signal_is_not_called_a_bad_video(tmp_path: Path, monkeypatch) -> None:
    import stat

    from animesr.errors import FFmpegError, FFmpegKilled
    from animesr.video import ffmpeg, pipeline

    crashing = tmp_path / "ffmpeg"
    crashing.write_text("#!/bin/sh\necho 'decoding…' >&2\nkill -SEGV $$\n")
    crashing.chmod(crashing.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(ffmpeg, "ffmpeg_exe", lambda: str(crashing))
    with pytest.raises(FFmpegKilled, match="killed by SIGSEGV while trying to read x.mp4 .*decoding…"):
        ffmpeg.run_ffmpeg(["-i", "x.mp4"], "read x.mp4")
    monkeypatch.setattr(pipeline, "run_ffmpeg", ffmpeg.run_ffmpeg)
    monkeypatch.setattr(pipeline.commands, "scan_args", lambda info, job: ["-i", str(info.path)])
    from types import SimpleNamespace

    info = SimpleNamespace(path=Path("x.mp4"))  # all scan_timeline reads of it, with scan_args replaced
    job = VideoJob(input=Path("x.mp4"), output=tmp_path / "out.mkv", scale=2)
    with pytest.raises(FFmpegKilled):  # not "cannot decode x.mp4", which blames the video
        pipeline.scan_timeline(info, job)
    failing = tmp_path / "ffmpeg"
    failing.write_text("#!/bin/sh\necho 'Invalid data found' >&2\nexit 1\n")
    with pytest.raises(InputError, match="cannot decode x.mp4"):
        pipeline.scan_timeline(info, job)
    assert not issubclass(InputError, FFmpegError)



@pytest.mark.parametrize("manifest", [b"[1]", b"\xff\xfe not text", b'{"chunks": 3}', b'{"chunks": [{"x": 1}]}',
                                      b'{"chunks": [[1]]}'])
def test_a_damaged_manifest_is_one_line_never_a_traceback(tmp_path: Path, manifest: bytes) -> None:
    from animesr.video.workdir import WorkFolder

    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "manifest.json").write_bytes(manifest)
    with pytest.raises(OutputError, match="no readable manifest.*--no-resume"):
        WorkFolder(tmp_path / "work", {"source": "x"}).open(resume=True)


@pytest.mark.parametrize("timeline", [b"not json", b"[1]", b'{"pts": 1}', b"\xff"])
def test_a_damaged_timeline_is_one_line(tmp_path: Path, timeline: bytes) -> None:
    from animesr.video.workdir import WorkFolder

    (tmp_path / "timeline.json").write_bytes(timeline)
    with pytest.raises(OutputError, match="timeline.json is damaged"):
        WorkFolder(tmp_path, {}).load_timeline()


def test_ffmpeg_that_could_not_write_for_a_full_disk_is_an_output_error() -> None:
    """A full disk while muxing exited 6 (ffmpeg failed), while the table says 3 for it."""
    from animesr.errors import FFmpegError
    from animesr.video.ffmpeg import ffmpeg_failure

    stderr = "[matroska @ 0x1] Error writing packet\nav_interleaved_write_frame(): No space left on device\n"
    error = ffmpeg_failure(1, "write a.mkv.partial", stderr)
    assert isinstance(error, OutputError) and error.exit_code == 3
    assert str(error) == "ffmpeg could not write a.mkv.partial: No space left on device"
    assert type(ffmpeg_failure(1, "read a.mkv", "Invalid data found when processing input")) is FFmpegError


def test_an_output_name_leaves_room_for_its_work_files(tmp_path: Path) -> None:
    """A 240-byte name failed after the source was probed, blaming the folder ("File name too long")."""
    from animesr.video.workdir import check_output_name

    check_output_name(tmp_path / f"{'a' * 238}.mkv")  # 242 bytes: ".partial-work" still fits in 255
    with pytest.raises(OutputError, match="at most 242 bytes"):
        check_output_name(tmp_path / f"{'a' * 239}.mkv")
