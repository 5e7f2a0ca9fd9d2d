"""Single frames of a video, decoded the way upscale-video decodes them (the same timing filters:
inverse telecine or deinterlacing included), and a search for the most detailed ones."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from animesr.config import PREVIEW_CANDIDATES, VideoJob
from animesr.errors import InputError
from animesr.video import commands
from animesr.video.ffmpeg import FrameReader
from animesr.video.pipeline import scan_timeline
from animesr.video.probe import VideoInfo

# seconds decoded before the asked time: the frame on screen then started earlier, and the field
# filters need the frames around it
_LEAD = {"ivtc": 0.5, "deinterlace": 0.2}
_LEAD_PROGRESSIVE = 0.1
_WINDOW = 0.5  # seconds decoded after it


def frame_at(info: VideoInfo, field_mode: str, seconds: float) -> tuple[float, np.ndarray]:
    """(the frame's own time, H×W×3 uint8 RGB): the frame shown at `seconds` into the video."""
    if info.duration is not None and seconds >= info.duration:
        raise InputError(f"--at {seconds:g} is past the end of {info.path.name} ({info.duration:.3f} s)")
    start = max(0.0, seconds - _LEAD.get(field_mode, _LEAD_PROGRESSIVE))
    # no seek at all from the start: a stream without an index (raw H.264) cannot seek, even to 0
    job = VideoJob(input=info.path, output=Path("unused.mkv"), scale=2, field_mode=field_mode, start=start or None,
                   duration=seconds - start + _WINDOW)
    timeline = scan_timeline(info, job, window=f"the {job.duration:g} s from {start:g} s")
    times = [float(p * timeline.time_base) for p in timeline.pts]
    shown = [i for i, t in enumerate(times) if t <= seconds - start + 1e-6] or [0]
    index = shown[-1]  # the last frame that started by then is the one on screen
    reader = FrameReader(commands.decode_args(info, job, index), info.width, info.height,
                         what=f"decode {info.path.name} at {seconds:g} s")
    try:
        frame = reader.read()
    finally:
        reader.kill()
    if frame is None:
        raise InputError(f"{info.path.name} has no frame at {seconds:g} s")
    return start + times[index], frame.copy()


def detail(frame: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey picture: high where there are lines and texture."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def most_detailed_frames(info: VideoInfo, field_mode: str, count: int) -> list[tuple[float, np.ndarray]]:
    """The `count` most detailed of the frames at PREVIEW_CANDIDATES places spread over the video (fewer
    when a short or static video shows one picture at several places), in time order."""
    duration = info.duration or 0.0
    places = [duration * (i + 0.5) / PREVIEW_CANDIDATES for i in range(PREVIEW_CANDIDATES)] if duration > 0 else [0.0]
    found = _distinct(_frames_that_decode(info, field_mode, places))
    ranked = sorted(found, key=lambda item: detail(item[1]), reverse=True)
    chosen: list[tuple[float, np.ndarray]] = []
    for item in ranked:  # the most detailed frame of each shot first
        if not any(_alike(item[1], other[1]) for other in chosen):
            chosen.append(item)
    chosen += [item for item in ranked if not any(item is c for c in chosen)]  # repeats only when short
    return sorted(chosen[:count], key=lambda item: item[0])


def _distinct(frames: list[tuple[float, np.ndarray]]) -> list[tuple[float, np.ndarray]]:
    """Each picture once, at the first time it was seen: a short or static video shows one frame at
    several places (seeks give it slightly different times)."""
    first_seen: dict[bytes, tuple[float, np.ndarray]] = {}
    for seconds, frame in frames:
        first_seen.setdefault(hashlib.blake2b(np.ascontiguousarray(frame).data).digest(), (seconds, frame))
    return list(first_seen.values())


def _frames_that_decode(info: VideoInfo, field_mode: str, places: list[float]) -> list[tuple[float, np.ndarray]]:
    """The frame at each place that has one: a truncated file claims a duration its frames do not reach."""
    found, failure = [], None
    for seconds in places:
        try:
            found.append(frame_at(info, field_mode, seconds))
        except InputError as error:
            failure = error
    if not found and failure is not None:
        raise failure
    return found


def _alike(a: np.ndarray, b: np.ndarray) -> bool:
    """The same shot: thumbnails within 12 grey levels on average."""
    small = [cv2.resize(x, (64, 36), interpolation=cv2.INTER_AREA).astype(np.int16) for x in (a, b)]
    return float(np.abs(small[0] - small[1]).mean()) < 12
