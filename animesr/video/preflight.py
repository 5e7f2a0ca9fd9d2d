"""Checks that run ffmpeg before any frame is upscaled: the encoding options on their own, then
the encoder itself. An encoder that this ffmpeg lists can still fail to open (NVENC, QSV or AMF
without the hardware or driver; a size or preset it does not take): it is opened on two frames
of the output's size first. No torch."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from animesr.config import EncodeSettings
from animesr.errors import UsageError
from animesr.video import commands
from animesr.video.ffmpeg import encoder_pixel_formats, ffmpeg_exe, last_lines, run_tool, video_encoders
from animesr.video.probe import VideoInfo
from animesr.video.streams import check_codec_exists

_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
ALWAYS_WORKS = "libx264"
# words in an encoder's complaint that name the option at fault
_CULPRITS = (("preset", "--preset"), ("tune", "--preset"), ("pixel format", "--pix-fmt"), ("pix_fmt", "--pix-fmt"),
             ("crf", "--crf"))


def check_encode_options(encode: EncodeSettings) -> None:
    """--codec (this ffmpeg has it), --crf (in its range), --pix-fmt (one it takes): before any work."""
    check_codec_exists(encode.codec, video_encoders())
    commands.check_quality(encode)
    check_pixel_format(encode)


# the same samples in another memory layout (planar / semi-planar): ffmpeg's swap loses nothing, and
# hardware encoders (QSV takes nv12 only) must keep working with the default yuv420p
_SAME_SAMPLES = {"yuv420p": "nv12", "nv12": "yuv420p", "yuv420p10le": "p010le", "p010le": "yuv420p10le"}


def check_pixel_format(encode: EncodeSettings) -> None:
    """--pix-fmt among the encoder's own formats: ffmpeg would otherwise swap in one it takes, silently."""
    accepted = encoder_pixel_formats(encode.codec)
    if encode.pix_fmt not in accepted and _SAME_SAMPLES.get(encode.pix_fmt) not in accepted:
        raise UsageError(f"--pix-fmt {encode.pix_fmt} is not one that --codec {encode.codec} takes: "
                         f"use one of {' '.join(sorted(accepted))}")


# a size every encoder takes, for the check a folder job makes once before its first video
TRIAL_SIZE = (640, 480)


def check_encoder_opens(info: VideoInfo | None, encode: EncodeSettings, *, width: int, height: int,
                        container: str) -> None:
    """The encoder opens with the job's options and its stream goes into the container."""
    with tempfile.TemporaryDirectory(prefix="animesr-trial-") as folder:
        args = commands.encoder_trial_args(info, encode, width=width, height=height, container=container,
                                           destination=Path(folder) / "trial")
        result = run_tool([ffmpeg_exe(), *args])
    if result.returncode != 0:
        refusal = _own_lines(result.stderr, container)
        if refusal:
            raise UsageError(f"--codec {encode.codec} cannot go in {container} ({refusal}): "
                             "use an .mkv output or another --codec")
        complaint = encoder_complaint(result.stderr, encode.codec)
        raise UsageError(f"--codec {encode.codec} does not work here with {_other_options(encode)} "
                         f"({complaint}): {_advice(complaint, encode)}")


def _other_options(encode: EncodeSettings) -> str:
    options = [("--preset", encode.preset), ("--pix-fmt", encode.pix_fmt), ("--crf", encode.crf)]
    return " ".join(f"{name} {value}" for name, value in options if value is not None)


def _advice(complaint: str, encode: EncodeSettings) -> str:
    lowered = complaint.lower()
    culprit = next((option for word, option in _CULPRITS if word in lowered), None)
    if culprit is not None:
        return f"change {culprit}"
    if encode.codec == ALWAYS_WORKS:
        return "change --preset, --pix-fmt or --crf"
    return f"choose another --codec ({ALWAYS_WORKS} always works)"


def encoder_complaint(stderr: str, codec: str) -> str:
    """The encoder's own words (`[h264_nvenc @ 0x..] Cannot load libcuda.so.1`), without the prefix."""
    return _own_lines(stderr, codec) or last_lines(stderr, 1)


def _own_lines(stderr: str, component: str) -> str:
    """The first line an ffmpeg component (an encoder, a muxer) wrote, without its prefix; "" if none."""
    own = [line for line in stderr.splitlines() if line.startswith(f"[{component} @")]
    return _PREFIX.sub("", own[0]).strip() if own else ""
