"""Checks that run ffmpeg before any frame is upscaled. An encoder that this ffmpeg lists can
still fail to open (NVENC, QSV or AMF without the hardware or driver; a size or pixel format it
does not take): it is opened on two frames of the output's size first. No torch."""

from __future__ import annotations

import re

from animesr.config import EncodeSettings
from animesr.errors import InputError
from animesr.video import commands
from animesr.video.ffmpeg import ffmpeg_exe, last_lines, run_tool
from animesr.video.probe import VideoInfo

_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")


def check_encoder_opens(info: VideoInfo, encode: EncodeSettings, *, width: int, height: int) -> None:
    args = commands.encoder_trial_args(info, encode, width=width, height=height)
    result = run_tool([ffmpeg_exe(), *args])
    if result.returncode != 0:
        raise InputError(f"--codec {encode.codec} does not work here ({encoder_complaint(result.stderr, encode.codec)})"
                         ": choose another --codec (libx264 always works)")


def encoder_complaint(stderr: str, codec: str) -> str:
    """The encoder's own words (`[h264_nvenc @ 0x..] Cannot load libcuda.so.1`), without the prefix."""
    own = [line for line in stderr.splitlines() if line.startswith(f"[{codec} @")]
    return _PREFIX.sub("", own[0]).strip() if own else last_lines(stderr, 1)
