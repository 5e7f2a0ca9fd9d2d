"""Every frame's timestamp, read once from a decode of the source (or from the packets of an
output), and the `setpts` expression that gives a chunk of upscaled frames the same times."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction

from animesr.errors import FFmpegError
from animesr.video.extents import read_framecrc

_DIMENSIONS = re.compile(r"^#dimensions 0: (\d+)x(\d+)")
_MILLISECOND = Fraction(1, 1000)


@dataclass(frozen=True)
class Timeline:
    time_base: Fraction
    pts: tuple[int, ...]  # in time_base units, presentation order
    durations: tuple[int, ...]
    decoded: int | None = None  # frames decoded from the source, when the filters dropped some (IVTC)
    unconverted_end: float | None = None  # seconds: where the frames ended before --fps converted them

    @property
    def count(self) -> int:
        return len(self.pts)

    def seconds(self) -> float:
        """From the first frame's start to the last frame's end."""
        if not self.pts:
            return 0.0
        return float((self.pts[-1] + self.durations[-1] - self.pts[0]) * self.time_base)

    def start_seconds(self) -> float:
        return float(self.pts[0] * self.time_base) if self.pts else 0.0

    def window_seconds(self) -> float:
        """From the first frame's start to where the source's frames end: the last frame's end, or
        with --fps, the end of the frames it converted (which its frames must reach)."""
        if self.unconverted_end is None:
            return self.seconds()
        return self.unconverted_end - self.start_seconds()

    def constant_step(self) -> int | None:
        """The one pts step between frames, or None for variable frame rate."""
        steps = {b - a for a, b in zip(self.pts, self.pts[1:])}
        if len(steps) == 1:
            return steps.pop()
        return None if steps else (self.durations[0] if self.durations and self.durations[0] > 0 else None)

    def steady(self) -> bool:
        """Constant rate up to the container's rounding (Matroska stores whole milliseconds, which
        a filter that doubles the time base, like a deinterlacer, turns into two units)."""
        steps = [b - a for a, b in zip(self.pts, self.pts[1:])]
        return not steps or max(steps) - min(steps) <= max(1, _MILLISECOND / self.time_base)

    def rate(self, fallback: Fraction) -> Fraction:
        step = self.constant_step()
        return 1 / (step * self.time_base) if step else fallback

    def span_seconds(self, start: int, stop: int) -> Fraction:
        """How long frames start..stop-1 last: up to the next frame, or the last one's end."""
        end = self.pts[stop] if stop < self.count else self.pts[-1] + self.durations[-1]
        return (end - self.pts[start]) * self.time_base

    def pts_expression(self, start: int, stop: int) -> str:
        """setpts expression giving frame N of a chunk (frames start..stop-1) its timestamp,
        relative to the chunk's first frame: a line for constant steps, else a binary search."""
        relative = [p - self.pts[start] for p in self.pts[start:stop]]
        steps = {b - a for a, b in zip(relative, relative[1:])}
        if len(steps) <= 1:
            return f"N*{steps.pop() if steps else 0}"
        return _search_tree(relative, 0, len(relative))

    def to_json(self) -> str:
        return json.dumps({"time_base": str(self.time_base), "pts": self.pts, "durations": self.durations,
                           **({"decoded": self.decoded} if self.decoded is not None else {}),
                           **({"unconverted_end": self.unconverted_end} if self.unconverted_end is not None else {})})

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        data = json.loads(text)
        return cls(Fraction(data["time_base"]), tuple(data["pts"]), tuple(data["durations"]), data.get("decoded"),
                   data.get("unconverted_end"))


def _search_tree(values: list[int], low: int, high: int) -> str:
    if high - low == 1:
        return str(values[low])
    middle = (low + high) // 2
    return f"if(lt(N,{middle}),{_search_tree(values, low, middle)},{_search_tree(values, middle, high)})"


def parse_framecrc(text: str, *, rate_converted: bool = False) -> Timeline:
    """Stream 0's frames (or packets), in presentation order. Stream 1 lists the frames before the
    rate conversion when `rate_converted` (--fps), else the decoded frames (IVTC), counted."""
    time_bases, packets = read_framecrc(text)
    frames = sorted((pts, duration) for stream, pts, duration in packets if stream == 0)
    time_base = time_bases.get(0)
    if time_base is None:
        if not frames:
            return Timeline(Fraction(1, 1000), (), ())
        raise FFmpegError("ffmpeg's frame list has no time base")
    listed = [(pts, duration) for stream, pts, duration in packets if stream == 1]
    pts, durations = tuple(p for p, _ in frames), tuple(d for _, d in frames)
    if rate_converted:
        end = max((p + max(d, 0) for p, d in listed), default=0)
        return Timeline(time_base, pts, durations, unconverted_end=float(end * time_bases[1]) if listed else None)
    return Timeline(time_base, pts, durations, len(listed) or None)


def decoded_size(text: str) -> tuple[int, int] | None:
    """(width, height) of the frames in a framecrc listing of decoded frames (stream 0)."""
    match = next((m for m in map(_DIMENSIONS.match, text.splitlines()) if m), None)
    return (int(match.group(1)), int(match.group(2))) if match else None

