"""Which container OUTPUT is, and what happens to each audio, subtitle and attachment stream of
the source in it: copied, converted (when the container cannot hold it as it is), or dropped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from animesr.errors import InputError
from animesr.video.probe import StreamInfo

CONTAINERS = {".mkv": "matroska", ".mka": "matroska", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov",
              ".webm": "webm"}
DEFAULT_CONTAINER = "matroska"

TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text", "microdvd"})
# what this ffmpeg's muxers take as they are (each stream-copied in, measured): MP4 takes TrueHD only
# with -strict experimental; MOV ("only supported in MP4") takes no Opus, FLAC or TrueHD
_MOV_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "mp2", "dts"})
_MP4_AUDIO = _MOV_AUDIO | {"opus", "flac"}
_WEBM_AUDIO = frozenset({"opus", "vorbis"})
_VIDEO_FAMILIES = {"matroska": None, "mp4": {"h264", "hevc", "av1", "vp9"}, "mov": {"h264", "hevc", "av1", "vp9"},
                   "webm": {"vp8", "vp9", "av1"}}


@dataclass(frozen=True)
class StreamAction:
    stream: StreamInfo
    codec: str | None  # "copy", an encoder name, or None when dropped
    reason: str = ""  # why it is converted or dropped

    @property
    def kept(self) -> bool:
        return self.codec is not None


def container_for(output: Path) -> str:
    if not output.suffix:
        return DEFAULT_CONTAINER
    try:
        return CONTAINERS[output.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(CONTAINERS))
        raise InputError(f"cannot write {output.suffix!r} video: use one of {known}, or no extension for MKV") from None


def check_codec_exists(codec: str, encoders: frozenset[str]) -> None:
    if codec not in encoders:
        raise InputError(f"--codec {codec}: this ffmpeg has no such video encoder (`ffmpeg -encoders` lists them)")


# the remedy for what only Matroska holds, for one output file and for a folder job
MKV_OUTPUT = "an MKV output (.mkv, or --container mkv for a folder)"


def check_video_codec(container: str, codec: str, encoders: frozenset[str]) -> None:
    check_codec_exists(codec, encoders)
    allowed = _VIDEO_FAMILIES.get(container)
    family = video_family(codec)
    if allowed is not None and family is not None and family not in allowed:
        raise InputError(f"--codec {codec} ({family}) cannot go in {container}: "
                         f"use {' or '.join(sorted(allowed))}, or {MKV_OUTPUT}")


def video_family(codec: str) -> str | None:
    for marker, family in (("264", "h264"), ("265", "hevc"), ("hevc", "hevc"), ("av1", "av1"),
                           ("vp9", "vp9"), ("vp8", "vp8"), ("ffv1", "ffv1")):
        if marker in codec:
            return family
    return None


def plan_streams(streams: tuple[StreamInfo, ...], container: str) -> tuple[StreamAction, ...]:
    return tuple(_action(s, container) for s in streams if s.kind in ("audio", "subtitle", "attachment"))


@dataclass(frozen=True)
class _Limits:
    """What a container other than Matroska holds as it is, and what the rest becomes."""

    label: str
    audio: frozenset[str]
    audio_encoder: str
    audio_encoder_label: str
    text_subtitle: str  # the one text subtitle codec it holds; others are converted to it
    text_subtitle_label: str
    holds_pcm: bool = False


_LIMITS = {
    "mp4": _Limits("mp4", _MP4_AUDIO, "aac", "AAC", "mov_text", "mov_text"),
    "mov": _Limits("mov", _MOV_AUDIO, "aac", "AAC", "mov_text", "mov_text", holds_pcm=True),
    "webm": _Limits("WebM", _WEBM_AUDIO, "libopus", "Opus", "webvtt", "WebVTT"),
}


def _action(stream: StreamInfo, container: str) -> StreamAction:
    if container == "matroska":
        return _for_matroska(stream)
    return _for_limited(stream, _LIMITS[container])


def _for_matroska(stream: StreamInfo) -> StreamAction:
    if stream.kind == "subtitle" and stream.codec == "mov_text":
        return StreamAction(stream, "srt", "Matroska has no mov_text: converted to SubRip")
    return StreamAction(stream, "copy")


def _for_limited(stream: StreamInfo, limits: _Limits) -> StreamAction:
    name = limits.label
    if stream.kind == "attachment":
        return StreamAction(stream, None, f"{name} cannot hold attachments")
    if stream.kind == "audio":
        if stream.codec in limits.audio or (limits.holds_pcm and stream.codec.startswith("pcm_")):
            return StreamAction(stream, "copy")
        return StreamAction(stream, limits.audio_encoder,
                            f"{name} cannot hold {stream.codec} audio: converted to {limits.audio_encoder_label}")
    if stream.codec == limits.text_subtitle:
        return StreamAction(stream, "copy")
    if stream.codec in TEXT_SUBTITLES:
        return StreamAction(stream, limits.text_subtitle,
                            f"{name} cannot hold {stream.codec}: converted to {limits.text_subtitle_label}")
    return StreamAction(stream, None, f"{name} cannot hold {stream.codec} subtitles and they are pictures")


_MATROSKA_CONVERSION = ("Matroska", "flac", "FLAC")  # it holds nearly everything: lose nothing


def refused_audio(stream: StreamInfo, container: str, refusal: str) -> StreamAction:
    """An audio stream the container's muxer refused to take as it is, converted to its own codec."""
    limits = _LIMITS.get(container)
    name, encoder, label = ((limits.label, limits.audio_encoder, limits.audio_encoder_label) if limits
                            else _MATROSKA_CONVERSION)
    return StreamAction(stream, encoder, f"{name} cannot hold {stream.codec} audio ({refusal}): converted to {label}")


def stream_args(actions: tuple[StreamAction, ...], window_end: float, *, cut: bool) -> list[str]:
    """-map and -c for input 1 (the source, `cut` when read from --start); output stream 0 is the
    video. Every kept stream keeps its title and flags, and is held to the video's window
    [0, window_end] seconds: audio packets from before the start are dropped (see
    `audio_start_args`), subtitles are cut to the window (a cue begun before the start shows from
    0, one running past the end stops there)."""
    args: list[str] = []
    output_index = 1
    for action in actions:
        if not action.kept:
            continue
        args += ["-map", f"1:{action.stream.index}", f"-c:{output_index}", action.codec,
                 *stream_tags(action.stream, output_index)]
        if action.stream.kind == "audio":
            args += audio_start_args(action, output_index, cut)
        elif action.stream.kind == "subtitle":
            args += [f"-bsf:{output_index}", subtitle_window_filter(window_end)]
        output_index += 1
    return args


def stream_tags(stream: StreamInfo, output_index: int) -> list[str]:
    """The stream's title and disposition flags, set explicitly: the MP4 reader keeps a title as
    `name` (not copied back as a title), and the muxers add or drop `default` on their own."""
    args = [f"-disposition:{output_index}", "+".join(stream.dispositions) or "0"]
    if stream.title and stream.kind != "attachment":
        args += [f"-metadata:s:{output_index}", f"title={stream.title}"]
    return args


# Codecs whose encoder delay a container carries (Matroska's CodecDelay, an MP4 edit list): a
# player discards that much from the first packet. Copied from a cut, their first packet must be
# the one across the cut, or a whole packet of the window's own sound is discarded instead.
ENCODER_DELAY_CODECS = ("aac", "opus")
# drop the packets that end before the window; keep the one across its start, and the one ending
# exactly there: a whole file's first packet, the encoder's priming (pts -1024, duration 1024 for
# AAC), which the delay discards. Without it the delay is discarded from the first real packet.
AUDIO_LEAD_IN_FILTER = "noise=drop=lt(pts+duration\\,0)"


def audio_start_args(action: StreamAction, output_index: int, cut: bool) -> list[str]:
    """Where a copied audio stream starts. Uncut, at the packet that reaches 0: any codec may start
    with a priming packet before it (MP3, AC-3, Vorbis...). Cut at --start, at the packet across the
    cut for codecs with an encoder delay the container carries (it discards the part before the
    cut), at the first packet after it for the others (audio never plays before the first frame)."""
    if action.codec == "copy" and (not cut or action.stream.codec in ENCODER_DELAY_CODECS):
        return [f"-bsf:{output_index}", AUDIO_LEAD_IN_FILTER]
    return [f"-copypriorss:{output_index}", "0"]


def subtitle_window_filter(window_end: float) -> str:
    """A `setts` bitstream filter: each cue moved and shortened to lie inside [0, window_end]."""
    end = f"{window_end:.6f}/TB"
    return (f"setts=pts=max(PTS\\,0):dts=max(DTS\\,0)"
            f":duration=max(min(PTS+DURATION\\,{end})-max(PTS\\,0)\\,0)")


def metadata_losses(source_video: StreamInfo, actions: tuple[StreamAction, ...],
                    written: tuple[StreamInfo, ...], container: str) -> list[str]:
    """One line per title, language or flag of a kept stream that the written file lacks."""
    kept = [source_video, *(a.stream for a in actions if a.kept)]
    out = [s for s in written if s.kind != "data"]
    lines = []
    for source, result in zip(kept, out):
        lost = [f"flag {flag!r}" for flag in source.dispositions
                if flag not in result.dispositions and flag != "attached_pic"]
        if source.title and source.kind != "attachment" and result.title != source.title:
            lost.insert(0, f"title {source.title!r}")
        if source.language and result.language != source.language:
            lost.insert(0, f"language {source.language!r}")
        if lost:
            lines.append(f"stream {source.describe()}: {container} did not keep its {', '.join(lost)}")
    return lines
