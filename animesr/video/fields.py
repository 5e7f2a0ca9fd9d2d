"""What the source's frames are made of, measured on a sample: progressive pictures, interlaced
fields, or film telecined to 29.97 fps (3:2 pulldown: 4 film frames become 5 video frames, either
as 2 combed frames of mixed fields or as 1 repeated frame in each cycle of 5).

`measure_fields` runs ffmpeg's `idet` (combed frames, repeated fields) and times how still each
frame is against the one before; `choose_field_mode` turns those numbers into ivtc, deinterlace
or progressive, with the reason in words. No torch."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from animesr.errors import FFmpegError
from animesr.video.ffmpeg import FrameReader, path_arg
from animesr.video.probe import VideoInfo

NTSC_VIDEO = Fraction(30000, 1001)
FILM_FROM_NTSC = Fraction(24000, 1001)
CYCLE = 5  # video frames per 4 film frames
_SAMPLE_SIZE = (320, 240)  # frames are compared at this size (area-averaged, grey)
_IDET_MULTI = re.compile(r"Multi frame detection: TFF:\s*(\d+) BFF:\s*(\d+) Progressive:\s*(\d+) "
                         r"Undetermined:\s*(\d+)")
_IDET_REPEATED = re.compile(r"Repeated Fields: Neither:\s*(\d+) Top:\s*(\d+) Bottom:\s*(\d+)")

# thresholds, measured on ../shared/data/video (see tests/test_fields.py and the README)
COMBED_SHARE = 0.15  # of the frames idet can decide: more than this is interlaced or telecined
REPEATED_SHARE = 0.05  # of all frames: a field repeated from the frame before (3:2 pulldown) ...
REPEATED_PER_COMBED = 0.15  # ... and per combed frame (true interlacing repeats none)
CADENCE_SHARE = 0.5  # of 5-frame cycles: the stillest frame keeps its place (a repeated frame)
MIN_CYCLES = 10


@dataclass(frozen=True)
class FieldStats:
    frames: int
    combed: int  # idet, multi-frame: top or bottom field first
    progressive: int
    repeated: int  # idet: a top or a bottom field repeated from the frame before
    cycles: int  # 5-frame cycles with motion in them
    cadence: float  # of those, the share whose stillest frame sits at the commonest place in the cycle

    @property
    def combed_share(self) -> float:
        return self.combed / max(self.combed + self.progressive, 1)

    @property
    def repeated_share(self) -> float:
        return self.repeated / max(self.frames, 1)

    def describe(self) -> str:
        return (f"{self.frames} frames sampled: {self.combed_share:.0%} combed, {self.repeated_share:.0%} "
                f"with a repeated field, a still frame at one place in {self.cadence:.0%} of {self.cycles} "
                "5-frame cycles")


@dataclass(frozen=True)
class FieldChoice:
    mode: str  # ivtc | deinterlace | progressive
    reason: str


def choose_field_mode(stats: FieldStats, rate: Fraction) -> FieldChoice:
    ntsc = abs(float(rate) - float(NTSC_VIDEO)) < 0.01
    if stats.combed_share >= COMBED_SHARE:
        if ntsc and stats.repeated_share >= REPEATED_SHARE and stats.repeated >= REPEATED_PER_COMBED * stats.combed:
            return FieldChoice("ivtc", "telecined: combed frames whose fields repeat in a 3:2 pattern")
        return FieldChoice("deinterlace", "interlaced: combed frames without a telecine pattern")
    if ntsc and stats.cycles >= MIN_CYCLES and stats.cadence >= CADENCE_SHARE:
        return FieldChoice("ivtc", "telecined: progressive frames, one repeated in every 5")
    return FieldChoice("progressive", "progressive: no combing" + (", no repeated-frame cadence" if ntsc else ""))


# ---- measuring ----------------------------------------------------------------------------


def sample_windows(info: VideoInfo, start: float | None, duration: float | None, windows: int,
                   window_frames: int) -> list[tuple[float, int]]:
    """(start seconds, frames) of each sample window: spread over the part of the video the job
    reads, or all of it when that is shorter than the windows together."""
    first = start or 0.0
    total = info.duration - first if info.duration else None
    if duration is not None:
        total = min(total, duration) if total is not None else duration
    window_seconds = window_frames / float(info.frame_rate)
    if total is None or total <= window_seconds * windows:
        return [(first, windows * window_frames)]
    return [(first + (total - window_seconds) * i / (windows - 1), window_frames) for i in range(windows)]


def measure_fields(info: VideoInfo, windows: list[tuple[float, int]]) -> FieldStats:
    parts = [_measure_window(info, at, frames) for at, frames in windows]
    cycles = sum(p[4] for p in parts)
    cadence = sum(p[5] * p[4] for p in parts) / cycles if cycles else 0.0
    return FieldStats(*(sum(p[i] for p in parts) for i in range(4)), cycles=cycles, cadence=cadence)


def _measure_window(info: VideoInfo, at: float, frames: int) -> tuple[int, int, int, int, int, float]:
    width, height = _SAMPLE_SIZE
    args = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-ss", f"{at:.3f}",
            "-i", path_arg(info.path), "-map", f"0:{info.video_index}", "-frames:v", str(frames),
            "-vf", f"idet,scale={width}:{height}:flags=area,format=rgb24", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    reader = FrameReader(args, width, height, what=f"sample the fields of {info.path.name}")
    try:
        pictures = []
        while (frame := reader.read()) is not None:
            pictures.append(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    finally:
        reader.kill()
    combed, progressive, repeated = parse_idet(reader.stderr.text())
    cycles, cadence = still_frame_cadence(pictures)
    return len(pictures), combed, progressive, repeated, cycles, cadence


def parse_idet(log: str) -> tuple[int, int, int]:
    """(combed, progressive, repeated fields) from idet's summary lines."""
    multi = _IDET_MULTI.findall(log)
    repeated = _IDET_REPEATED.findall(log)
    tff, bff, progressive, _ = (int(x) for x in multi[-1]) if multi else (0, 0, 0, 0)
    _, top, bottom = (int(x) for x in repeated[-1]) if repeated else (0, 0, 0)
    return tff + bff, progressive, top + bottom


def still_frame_cadence(pictures: list[np.ndarray]) -> tuple[int, float]:
    """In each cycle of 5 frames with motion, the place of the frame most like the one before it:
    a telecine's repeated frame keeps one place (the cadence), a held drawing has none. Returns
    (cycles with motion, share of them at the commonest place)."""
    changes = [_largest_block_change(a, b) for a, b in zip(pictures, pictures[1:])]
    cycles = np.array(changes[: len(changes) // CYCLE * CYCLE]).reshape(-1, CYCLE)
    moving = cycles[np.sort(cycles, axis=1)[:, 1] > 1.0]  # the second stillest still moves
    if not len(moving):
        return 0, 0.0
    places = np.bincount(moving.argmin(axis=1), minlength=CYCLE)
    return len(moving), float(places.max() / len(moving))


def _largest_block_change(a: np.ndarray, b: np.ndarray, block: int = 16) -> float:
    """The largest mean absolute difference of any block×block block (grey levels)."""
    diff = np.abs(a.astype(np.int16) - b)
    rows, cols = diff.shape[0] // block, diff.shape[1] // block
    return float(diff[: rows * block, : cols * block].reshape(rows, block, cols, block).mean(axis=(1, 3)).max())


# ---- the job's mode -------------------------------------------------------------------------

AUTO_WINDOWS, AUTO_WINDOW_FRAMES = 5, 200  # --field-mode auto: up to 1000 frames from 5 places
CHECK_WINDOWS, CHECK_WINDOW_FRAMES = 1, 150  # the check behind the warning when no mode is asked


def settle_field_mode(info: VideoInfo, field_mode: str, *, start: float | None = None,
                      duration: float | None = None, note: Callable[[str], None],
                      warn: Callable[[str], None]) -> str:
    """`auto` becomes what the frames show (said in a note); with no mode asked, a source that looks
    telecined or interlaced gets one warning naming the option."""
    if field_mode == "auto":
        stats = measure_fields(info, sample_windows(info, start, duration, AUTO_WINDOWS, AUTO_WINDOW_FRAMES))
        choice = choose_field_mode(stats, info.frame_rate)
        note(f"--field-mode auto: {choice.reason} ({stats.describe()}) → {choice.mode}")
        return choice.mode
    if field_mode != "progressive":
        return field_mode
    if info.interlaced:
        warn(f"the source is flagged interlaced ({info.field_order}): add --deinterlace, or --ivtc for "
             "telecined film, or --field-mode auto to let the frames decide")
    elif abs(float(info.frame_rate) - float(NTSC_VIDEO)) < 0.01:
        try:
            stats = measure_fields(info, sample_windows(info, start, duration, CHECK_WINDOWS, CHECK_WINDOW_FRAMES))
        except FFmpegError:  # only a hint: the job itself will say what is wrong with the file
            return field_mode
        choice = choose_field_mode(stats, info.frame_rate)
        if choice.mode != "progressive":
            warn(f"the source looks {choice.reason} ({stats.describe()}): add --{choice.mode}")
    return field_mode
