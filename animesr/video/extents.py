"""Where each stream and chapter of a file lies in time: from its packets (no decoding) and from
the chapter lines `ffmpeg -i` prints. The verification holds them to the video's window. No torch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

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
    maps = [arg for s in timed for arg in ("-map", f"0:{s.index}")]
    text = run_ffmpeg(["-hide_banner", "-nostdin", "-loglevel", "error", "-i", path_arg(path), *maps,
                       "-c", "copy", "-f", "framecrc", "-"], f"read the packets of {path.name}")
    return parse_extents(text, [f"#{s.index} {s.kind}" for s in timed])


def parse_extents(text: str, labels: list[str]) -> tuple[Extent, ...]:
    time_bases: dict[int, Fraction] = {}
    spans: dict[int, list[Fraction]] = {}  # output index -> [start, end, longest]
    for line in text.splitlines():
        if match := _TIME_BASE.match(line):
            time_bases[int(match.group(1))] = Fraction(int(match.group(2)), int(match.group(3)))
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            index, pts, duration = int(fields[0]), int(fields[2]), max(int(fields[3]), 0)
            base = time_bases[index]
            start, end, length = pts * base, (pts + duration) * base, duration * base
            if index in spans:
                span = spans[index]
                spans[index] = [min(span[0], start), max(span[1], end), max(span[2], length)]
            else:
                spans[index] = [start, end, length]
    return tuple(Extent(labels[i], float(s), float(e), float(n)) for i, (s, e, n) in sorted(spans.items()))


def chapter_extents(path: Path) -> tuple[Extent, ...]:
    banner = run_tool([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path_arg(path)]).stderr
    return parse_chapters(banner)


def parse_chapters(banner: str) -> tuple[Extent, ...]:
    found = (_CHAPTER.match(line) for line in banner.splitlines())
    return tuple(Extent(f"chapter {n + 1}", float(m.group(1)), float(m.group(2)))
                 for n, m in enumerate(m for m in found if m))
