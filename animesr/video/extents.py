"""Where each stream and chapter of a file lies in time: from its packets (no decoding) and from
the chapter lines `ffmpeg -i` prints. The verification holds them to the video's window. No torch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from animesr.video.commands import map_args
from animesr.video.ffmpeg import ffmpeg_exe, path_arg, run_ffmpeg, run_tool
from animesr.video.probe import StreamInfo

_TIME_BASE = re.compile(r"^#tb (\d+): (\d+)/(\d+)")
_CHAPTER = re.compile(r"^\s*Chapter #\d+:\d+: start (-?[\d.]+), end (-?[\d.]+)")
_TIMED_KINDS = ("video", "audio", "subtitle")


@dataclass(frozen=True)
class Extent:
    """The first packet's start and the last one's end, in seconds; `longest` packet, seconds."""

    label: str
    start: float
    end: float
    longest: float = 0.0


def stream_extents(path: Path, streams: tuple[StreamInfo, ...]) -> tuple[Extent, ...]:
    """One extent per video, audio and subtitle stream that has packets, in file order."""
    timed = [s for s in streams if s.kind in _TIMED_KINDS]
    if not timed:
        return ()
    text = _packet_listing(["-i", path_arg(path)], [s.index for s in timed], f"read the packets of {path.name}")
    return parse_extents(text, [f"#{s.index} {s.kind}" for s in timed])


def packet_spans(inputs: list[str], stream_indexes: list[int], what: str) -> dict[int, list[Span]]:
    """The packets of these streams of input 0 as ffmpeg reads them with `inputs` (a seek and a
    length read only that range), by position in `stream_indexes`; a stream with none is absent."""
    return parse_packets(_packet_listing(inputs, stream_indexes, what))


def _packet_listing(inputs: list[str], stream_indexes: list[int], what: str) -> str:
    return run_ffmpeg(["-hide_banner", "-nostdin", "-loglevel", "error", *inputs, *map_args(stream_indexes),
                       "-c", "copy", "-f", "framecrc", "-"], what)


def parse_extents(text: str, labels: list[str]) -> tuple[Extent, ...]:
    return tuple(Extent(labels[index], min(start for start, _ in spans), max(end for _, end in spans),
                        max(end - start for start, end in spans))
                 for index, spans in sorted(parse_packets(text).items()))


Span = tuple[float, float]  # (start, end) seconds


def parse_packets(text: str) -> dict[int, list[Span]]:
    """Each stream's packets (or decoded blocks) in a framecrc listing, in seconds, by output index;
    an unknown (negative) duration as 0."""
    time_bases, packets = read_framecrc(text)
    spans: dict[int, list[Span]] = {}
    for index, pts, duration in packets:
        base, duration = time_bases[index], max(duration, 0)
        spans.setdefault(index, []).append((float(pts * base), float((pts + duration) * base)))
    return spans


def read_framecrc(text: str) -> tuple[dict[int, Fraction], list[tuple[int, int, int]]]:
    """framecrc lines `stream, dts, pts, duration, size, checksum` as (stream, pts, duration), in
    each stream's time base (its `#tb N: a/b` line)."""
    time_bases: dict[int, Fraction] = {}
    packets = []
    for line in text.splitlines():
        if match := _TIME_BASE.match(line):
            time_bases[int(match.group(1))] = Fraction(int(match.group(2)), int(match.group(3)))
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            packets.append((int(fields[0]), int(fields[2]), int(fields[3])))
    return time_bases, packets


def chapter_extents(path: Path) -> tuple[Extent, ...]:
    banner = run_tool([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path_arg(path)]).stderr
    return parse_chapters(banner)


def parse_chapters(banner: str) -> tuple[Extent, ...]:
    found = (_CHAPTER.match(line) for line in banner.splitlines())
    return tuple(Extent(f"chapter {n + 1}", float(m.group(1)), float(m.group(2)))
                 for n, m in enumerate(m for m in found if m))
