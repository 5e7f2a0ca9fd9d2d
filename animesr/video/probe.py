"""What a video file holds: `probe(path) -> VideoInfo`, from ffprobe's JSON when ffprobe is
installed, else from the banner `ffmpeg -i` prints. No torch here.

A stream with a display rotation (phone clips) is described as ffmpeg decodes it: ffmpeg turns
(and flips) its frames upright, so a quarter turn swaps the width and height (and the sample
aspect ratio). Every command animesr builds lets ffmpeg do so, and writes an upright output."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from animesr.errors import FFmpegError, InputError
from animesr.video.ffmpeg import ffmpeg_exe, ffprobe_exe, last_lines, path_arg, run_tool

HD_HEIGHT = 720
INTERLACED_ORDERS = ("tt", "bb", "tb", "bt")
# ffmpeg -i prints rates rounded to 2 decimals; these are the fractions the rounding hides.
_NTSC_BASES = (24, 30, 48, 60, 120, 240)


@dataclass(frozen=True)
class StreamInfo:
    index: int  # absolute index in the input file
    kind: str  # video | audio | subtitle | attachment | data
    codec: str
    language: str = ""
    title: str = ""
    dispositions: tuple[str, ...] = ()  # ffmpeg's -disposition names: default, comment, forced, ...

    def describe(self) -> str:
        extra = ", ".join(x for x in (self.language, repr(self.title) if self.title else "") if x)
        return f"#{self.index} {self.kind} {self.codec}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    container: str
    width: int  # width, height and sar: of the frames ffmpeg decodes, turned upright (see `rotation`)
    height: int
    sar: Fraction
    frame_rate: Fraction
    frame_count: int
    frame_count_from_container: bool
    duration: float | None  # seconds of the video stream (or of the file when the stream has none)
    video_codec: str
    pix_fmt: str
    field_order: str  # progressive | tt | bb | tb | bt | unknown
    color_matrix: str | None  # ffmpeg names (bt709, smpte170m, bt470bg, ...); None when untagged
    color_range: str | None  # tv | pc
    color_primaries: str | None
    color_transfer: str | None
    streams: tuple[StreamInfo, ...]
    video_index: int
    chapters: int
    rotation: int = 0  # the stream's display rotation, degrees counterclockwise (ffmpeg's sign), 0..359

    @property
    def interlaced(self) -> bool:
        return self.field_order in INTERLACED_ORDERS

    @property
    def quarter_turned(self) -> bool:
        return is_quarter_turn(self.rotation)

    @property
    def is_hd(self) -> bool:
        stored_height = self.width if self.quarter_turned else self.height
        return stored_height >= HD_HEIGHT

    @property
    def decode_matrix(self) -> str:
        """The YUV matrix to decode with: the tag, else BT.601 for SD and BT.709 for HD."""
        if self.color_matrix and self.color_matrix not in ("unknown", "reserved", "gbr", "rgb"):
            return self.color_matrix
        return "bt709" if self.is_hd else "smpte170m"

    @property
    def decode_range(self) -> str:
        return self.color_range if self.color_range in ("tv", "pc") else "tv"

    def other_streams(self) -> tuple[StreamInfo, ...]:
        return tuple(s for s in self.streams if s.kind in ("audio", "subtitle", "attachment"))


def probe(path: Path) -> VideoInfo:
    """Raises InputError for a missing file, a file ffmpeg cannot read, or one without video."""
    if not path.is_file():
        raise InputError(f"input not found: {path}")
    probe_tool = ffprobe_exe()
    if probe_tool:
        return _from_ffprobe(path, _run_ffprobe(probe_tool, path))
    return _from_banner(path, _ffmpeg_banner(path))


def is_quarter_turn(rotation: int) -> bool:
    return rotation in (90, 270)


def display_rotation(degrees: float) -> int:
    """ffmpeg's rotation angle (-180..180, as printed) as whole degrees 0..359."""
    return round(degrees) % 360


def upright(width: int, height: int, sar: Fraction, rotation: int) -> tuple[int, int, Fraction]:
    """The stored frame size and sample aspect ratio as ffmpeg decodes them, turned upright."""
    return (height, width, 1 / sar) if is_quarter_turn(rotation) else (width, height, sar)


# ---- ffprobe ------------------------------------------------------------------------------


def _run_ffprobe(tool: str, path: Path) -> dict:
    args = [tool, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
            "-show_chapters", path_arg(path)]
    result = run_tool(args)
    if result.returncode != 0:
        raise InputError(f"{path.name} is not a video ffmpeg can read: {last_lines(result.stderr, 1)}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise FFmpegError(f"ffprobe printed no JSON for {path.name}") from None


def _from_ffprobe(path: Path, data: dict) -> VideoInfo:
    streams = tuple(_stream_from_json(s) for s in data.get("streams", []))
    raw_video = [s for s in data.get("streams", []) if s.get("codec_type") == "video"
                 and not s.get("disposition", {}).get("attached_pic")]
    if not raw_video:
        raise InputError(f"{path.name} has no video stream")
    v = raw_video[0]
    rate = _fraction(v.get("avg_frame_rate")) or _fraction(v.get("r_frame_rate")) or Fraction(25)
    fmt = data.get("format", {})
    duration = _float(v.get("duration")) or _tag_duration(v.get("tags", {})) or _float(fmt.get("duration"))
    container_count = _int(v.get("nb_frames")) or _int(v.get("tags", {}).get("NUMBER_OF_FRAMES"))
    rotation = _ffprobe_rotation(v)
    stored_sar = _fraction(v.get("sample_aspect_ratio", "1:1").replace(":", "/")) or Fraction(1)
    width, height, sar = upright(int(v["width"]), int(v["height"]), stored_sar, rotation)
    return VideoInfo(
        path=path,
        container=fmt.get("format_name", ""),
        width=width,
        height=height,
        sar=sar,
        frame_rate=rate,
        frame_count=container_count or _estimate_count(duration, rate),
        frame_count_from_container=bool(container_count),
        duration=duration,
        video_codec=v.get("codec_name", "unknown"),
        pix_fmt=v.get("pix_fmt", "unknown"),
        field_order=v.get("field_order", "unknown"),
        color_matrix=_known(v.get("color_space")),
        color_range=_known(v.get("color_range")),
        color_primaries=_known(v.get("color_primaries")),
        color_transfer=_known(v.get("color_transfer")),
        streams=streams,
        video_index=int(v["index"]),
        chapters=len(data.get("chapters", [])),
        rotation=rotation,
    )


def _ffprobe_rotation(stream: dict) -> int:
    """From the stream's display matrix: `side_data_list: [{"rotation": -90, ...}]`."""
    angles = (d.get("rotation") for d in stream.get("side_data_list", []))
    return display_rotation(float(next((a for a in angles if a is not None), 0)))


def _stream_from_json(s: dict) -> StreamInfo:
    tags = {k.lower(): v for k, v in s.get("tags", {}).items()}
    return StreamInfo(
        index=int(s["index"]),
        kind=s.get("codec_type", "data"),
        codec=s.get("codec_name", "none"),
        language="" if tags.get("language") == "und" else tags.get("language", ""),
        title=_title(tags),
        dispositions=tuple(sorted(k for k, v in s.get("disposition", {}).items() if v)),
    )


def _title(tags: dict[str, str]) -> str:
    # MP4 keeps a track's title in its `name` box; attachments are known by their file name
    return tags.get("title", "") or tags.get("name", "") or tags.get("filename", "")


# ---- ffmpeg -i ------------------------------------------------------------------------------

_INPUT = re.compile(r"^Input #0, ([^,]+(?:,[^,\s]+)*), from")
_DURATION = re.compile(r"^\s*Duration: (N/A|[\d:.]+)")
_STREAM = re.compile(r"^\s*Stream #0:(\d+)(?:\[[^\]]*\])?(?:\(([^)]*)\))?: (\w+): (.*)$")
_META = re.compile(r"^\s+(\w+)\s*: (.*)$")
_CHAPTER = re.compile(r"^\s*Chapter #0:\d+:")
# under a stream's `Side data:`; ffmpeg before 7.1 prints `displaymatrix:`
_ROTATION = re.compile(r"^\s+(?:displaymatrix|Display Matrix): rotation of (-?[\d.]+) degrees")
_SIZE = re.compile(r"^(\d+)x(\d+)")
_SAR = re.compile(r"SAR (\d+):(\d+)")
_FIELD_ORDERS = {"progressive": "progressive", "top first": "tt", "bottom first": "bb",
                 "top coded first (swapped)": "tb", "bottom coded first (swapped)": "bt"}


def _ffmpeg_banner(path: Path) -> str:
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path_arg(path)]
    result = run_tool(args)
    banner = result.stderr
    if "Input #0" not in banner:
        raise InputError(f"{path.name} is not a video ffmpeg can read: {last_lines(banner, 1)}")
    return banner


@dataclass
class _BannerStream:
    index: int
    kind: str
    language: str
    details: str
    tags: dict[str, str]
    rotation: int = 0


def _from_banner(path: Path, banner: str) -> VideoInfo:
    container, duration, chapters, parsed = _scan_banner(banner)
    streams = tuple(_stream_from_banner(s) for s in parsed)
    videos = [s for s in parsed if s.kind == "video" and "attached pic" not in s.details]
    if not videos:
        raise InputError(f"{path.name} has no video stream")
    v = videos[0]
    parts = _split_top_level(v.details)
    pix_fmt, colour = _pixel_format(parts[1] if len(parts) > 1 else "")
    size = next((m for m in (_SIZE.match(p) for p in parts) if m), None)
    if size is None:
        raise InputError(f"{path.name}: ffmpeg reports no frame size for its video stream")
    sar = next((m for m in (_SAR.search(p) for p in parts) if m), None)
    stored_sar = _sar_fraction(sar.group(1), sar.group(2)) if sar else Fraction(1)
    width, height, upright_sar = upright(int(size.group(1)), int(size.group(2)), stored_sar, v.rotation)
    rate = _banner_rate(parts)
    stream_duration = _tag_duration(v.tags) or duration
    container_count = _int(v.tags.get("NUMBER_OF_FRAMES"))
    return VideoInfo(
        path=path,
        container=container,
        width=width,
        height=height,
        sar=upright_sar,
        frame_rate=rate,
        frame_count=container_count or _estimate_count(stream_duration, rate),
        frame_count_from_container=bool(container_count),
        duration=stream_duration,
        video_codec=v.details.split(" ", 1)[0].rstrip(","),
        pix_fmt=pix_fmt,
        field_order=colour.get("field_order", "unknown"),
        color_matrix=colour.get("matrix"),
        color_range=colour.get("range"),
        color_primaries=colour.get("primaries"),
        color_transfer=colour.get("transfer"),
        streams=streams,
        video_index=v.index,
        chapters=chapters,
        rotation=v.rotation,
    )


def _scan_banner(banner: str) -> tuple[str, float | None, int, list[_BannerStream]]:
    container, duration, chapters = "", None, 0
    streams: list[_BannerStream] = []
    for line in banner.splitlines():
        if match := _INPUT.match(line):
            container = match.group(1)
        elif match := _DURATION.match(line):
            duration = None if match.group(1) == "N/A" else _clock(match.group(1))
        elif _CHAPTER.match(line):
            chapters += 1
        elif match := _STREAM.match(line):
            index, language, kind, details = match.groups()
            streams.append(_BannerStream(int(index), kind.lower(), language or "", details, {}))
        elif streams and (match := _ROTATION.match(line)):
            streams[-1].rotation = display_rotation(float(match.group(1)))
        elif streams and (match := _META.match(line)) and line.startswith("      "):
            streams[-1].tags.setdefault(match.group(1), match.group(2).strip())
    return container, duration, chapters, streams


def _stream_from_banner(s: _BannerStream) -> StreamInfo:
    codec = s.details.split(" ", 1)[0].rstrip(",") if s.details else "none"
    language = "" if s.language in ("und", "") else s.language
    tags = {k.lower(): v for k, v in s.tags.items()}
    return StreamInfo(s.index, s.kind, codec, language, _title(tags), _banner_dispositions(s.details))


# the flags `ffmpeg -i` prints after a stream, as -disposition names
_DISPOSITIONS = ("default", "dub", "original", "comment", "lyrics", "karaoke", "forced", "hearing impaired",
                 "visual impaired", "clean effects", "attached pic", "timed thumbnails", "non-diegetic",
                 "captions", "descriptions", "metadata", "dependent", "still image", "multilayer")


def _banner_dispositions(details: str) -> tuple[str, ...]:
    last = _split_top_level(details)[-1]
    found = re.findall(r"\(([a-z -]+)\)", last)
    return tuple(sorted(f.replace(" ", "_").replace("-", "_") for f in found if f in _DISPOSITIONS))


def _split_top_level(text: str) -> list[str]:
    """Split on ', ' outside parentheses and brackets."""
    parts, depth, current = [], 0, ""
    for i, char in enumerate(text):
        depth += char in "(["
        depth -= char in ")]"
        if char == "," and depth == 0 and text[i + 1: i + 2] == " ":
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def _pixel_format(part: str) -> tuple[str, dict[str, str]]:
    """'yuv420p(tv, bt709/bt709/bt709, top first)' -> ('yuv420p', {...})."""
    name, _, rest = part.partition("(")
    colour: dict[str, str] = {}
    items = [x.strip() for x in rest.removesuffix(")").split(", ")] if rest else []
    for item in items:
        if item in ("tv", "pc"):
            colour["range"] = item
        elif item in _FIELD_ORDERS:
            colour["field_order"] = _FIELD_ORDERS[item]
        elif "/" in item:
            names = [_known(x) for x in item.split("/")]
            colour.update({k: v for k, v in zip(("matrix", "primaries", "transfer"), names) if v})
        elif item:
            colour.update(matrix=item, primaries=item, transfer=item)
    return name.strip(), colour


def _banner_rate(parts: list[str]) -> Fraction:
    for suffix in (" fps", " tbr"):
        for part in parts:
            if part.endswith(suffix):
                return _snap_rate(part[: -len(suffix)])
    return Fraction(25)


def _snap_rate(text: str) -> Fraction:
    value = float(text.rstrip("k")) * (1000 if text.endswith("k") else 1)
    for base in _NTSC_BASES:
        ntsc = Fraction(base * 1000, 1001)
        if abs(value - float(ntsc)) < 0.006:
            return ntsc
    return Fraction(text).limit_denominator(1000) if "k" not in text else Fraction(int(value))


# ---- small parsers --------------------------------------------------------------------------


def _clock(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _tag_duration(tags: dict[str, str]) -> float | None:
    value = tags.get("DURATION") or tags.get("duration")
    try:
        return _clock(value[:15]) if value and value.count(":") == 2 else None
    except ValueError:
        return None


def _estimate_count(duration: float | None, rate: Fraction) -> int:
    return max(0, round(duration * rate)) if duration else 0


def _fraction(text: str | None) -> Fraction | None:
    try:
        value = Fraction(text) if text else None
    except (ValueError, ZeroDivisionError):
        return None
    return value if value else None


def _sar_fraction(num: str, den: str) -> Fraction:
    return Fraction(int(num), int(den)) if int(num) and int(den) else Fraction(1)


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "N/A") else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _known(name: str | None) -> str | None:
    return None if name in (None, "", "unknown", "unspecified", "reserved") else name
