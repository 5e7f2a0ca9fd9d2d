"""Checks that run ffmpeg before any frame is upscaled: the encoding options on their own, then
the encoder itself. An encoder that this ffmpeg lists can still fail to open (NVENC, QSV or AMF
without the hardware or driver; a size or preset it does not take): it is opened on two frames
of the output's size first. Likewise the source's streams the plan copies are copied into the
output's container for a tenth of a second: its muxer refuses some only when it writes its header.
The trials write beside the output (a full /tmp would read as a refusal). No torch."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from animesr.config import EncodeSettings, VideoJob
from animesr.errors import FFmpegError, UsageError
from animesr.video import commands
from animesr.video.extents import Span, packet_spans
from animesr.video.ffmpeg import encoder_pixel_formats, ffmpeg_exe, last_lines, run_tool, video_encoders
from animesr.video.probe import VideoInfo
from animesr.video.streams import MKV_OUTPUT, StreamAction, check_codec_exists, refused_audio

_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
_TRIAL_STREAM = re.compile(r" in stream #\d+")  # the trial's numbering, not the source's
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
                        container: str, beside: Path | None) -> None:
    """The encoder opens with the job's options and its stream goes into the container (the trial
    file beside the output `beside`; without it, in a temporary folder)."""
    with trial_file(beside) as trial:
        args = commands.encoder_trial_args(info, encode, width=width, height=height, container=container,
                                           destination=trial)
        result = run_tool([ffmpeg_exe(), *args])
    if result.returncode != 0:
        refusal = _own_lines(result.stderr, container)
        if refusal:
            raise UsageError(f"--codec {encode.codec} cannot go in {container} ({refusal}): "
                             f"use {MKV_OUTPUT} or another --codec")
        complaint = encoder_complaint(result.stderr, encode.codec)
        raise UsageError(f"--codec {encode.codec} does not work here with {_other_options(encode)} "
                         f"({complaint}): {_advice(complaint, encode)}")


def drop_streams_empty_in_window(job: VideoJob, actions: tuple[StreamAction, ...]) -> tuple[StreamAction, ...]:
    """The plan with every kept audio and subtitle stream that has no packet in the --start/--duration
    window dropped, in every container alike: MP4 and MOV would leave its track out (MP4 keeps a cue
    wholly before the window as an empty one), Matroska and WebM would write it empty. Only the
    window is read."""
    if job.start is None and job.duration is None:
        return actions
    timed = [a for a in actions if a.kept and a.stream.kind in ("audio", "subtitle")]
    if not timed:
        return actions
    spans = packet_spans(commands.input_args(job), [a.stream.index for a in timed],
                         f"read the streams of {job.input.name} in the --start/--duration range")
    empty = {a for n, a in enumerate(timed) if not any(_in_window(p, job.duration) for p in spans.get(n, []))}
    return tuple(StreamAction(a.stream, None, "it has no packets in the --start/--duration range")
                 if a in empty else a for a in actions)


def _in_window(packet: Span, duration: float | None) -> bool:
    # read from --start, the window begins at 0: a packet ending there (a cut's last) is before it
    start, end = packet
    return (end > 0 or start >= 0) and (duration is None or start < duration)


def check_streams_go_in(source: Path, actions: tuple[StreamAction, ...], container: str, *,
                        beside: Path | None) -> tuple[StreamAction, ...]:
    """The plan with every copied stream the container's muxer refuses converted (audio) or refused
    in one line (anything else): one short trial when it takes them all, one per stream when not.
    Attachments are not tried: Matroska's muxer takes them as they are, the other containers'
    plans drop them (a fansub file carries dozens of fonts)."""
    tried = _tried(actions)
    if _mux_refusal(source, tried, container, beside) is None:
        return actions
    settled = tuple(_settle(action, source, container, beside) if action in tried else action
                    for action in actions)
    refusal = _mux_refusal(source, _tried(settled), container, beside)
    if refusal is not None:
        raise UsageError(f"the streams of {source.name} cannot go in {container} together ({refusal}): "
                         "use another output container")
    return settled


def _tried(actions: tuple[StreamAction, ...]) -> tuple[StreamAction, ...]:
    return tuple(a for a in actions if a.codec == "copy" and a.stream.kind != "attachment")


def _settle(action: StreamAction, source: Path, container: str, beside: Path | None) -> StreamAction:
    refusal = _mux_refusal(source, (action,), container, beside)
    if refusal is None:
        return action
    if action.stream.kind == "audio":
        return refused_audio(action.stream, container, refusal)
    advice = "" if container == "matroska" else f": use {MKV_OUTPUT}"
    raise UsageError(f"stream {action.stream.describe()} cannot go in {container} ({refusal}){advice}")


def _mux_refusal(source: Path, copied: tuple[StreamAction, ...], container: str,
                 beside: Path | None) -> str | None:
    """The muxer's words when it refuses these streams copied from `source`; None when it takes them."""
    if not copied:
        return None
    with trial_file(beside) as trial:
        args = commands.stream_trial_args(source, [a.stream.index for a in copied], container, trial)
        result = run_tool([ffmpeg_exe(), *args])
    if result.returncode == 0:
        return None
    refusal = _TRIAL_STREAM.sub("", _own_lines(result.stderr, container))
    if not refusal:  # not the muxer: the trial itself failed
        raise FFmpegError(f"ffmpeg failed to copy the streams of {source.name} into {container}: "
                          f"{last_lines(result.stderr)}")
    return refusal


@contextmanager
def trial_file(beside: Path | None) -> Iterator[Path]:
    """A hidden file in the folder of `beside` (the output), removed after; without `beside`, in a
    temporary folder."""
    if beside is None:
        with tempfile.TemporaryDirectory(prefix="animesr-trial-") as folder:
            yield Path(folder) / "trial"
        return
    handle, name = tempfile.mkstemp(prefix=f".{beside.name}.trial-", dir=beside.parent)
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


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
