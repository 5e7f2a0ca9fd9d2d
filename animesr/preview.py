"""`make_preview(job)`: a side-by-side sheet to judge before a long job. One row per frame (the
image, or frames of a video), one column per method: the source enlarged with nearest neighbour
(its own pixels), bicubic, then each model. Each row shows the frame's most detailed crop, so a
sheet is quick to make even with the real network on a CPU."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from animesr.atomic import require_folder_for
from animesr.callbacks import JobCallbacks, Message
from animesr.config import PreviewJob
from animesr.errors import InputError, OutputError, output_replaces_input
from animesr.imaging import IMAGE_SUFFIXES, WRITE_FORMATS, bicubic_resize, read_image, to_rgb8, write_image

MARGIN = 16  # source pixels of context around a crop, so the network sees what borders it
GAP = 6  # pixels between panels
LABEL_HEIGHT = 24
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)


@dataclass(frozen=True)
class PreviewResult:
    output: Path
    size: tuple[int, int]  # width, height of the sheet
    columns: tuple[str, ...]  # panel labels, left to right
    rows: tuple[str, ...]  # what each row shows ("image", "12.345 s")
    boxes: tuple[tuple[int, int, int, int], ...]  # per row: x, y, width, height of the crop in the source
    field_mode: str  # what the frames went through (a video's, after `auto`)
    seconds: float


def make_preview(job: PreviewJob, callbacks: JobCallbacks = JobCallbacks()) -> PreviewResult:
    began = time.perf_counter()
    _check_output(job)
    models = _load_models(job)  # a bad model fails before any decoding
    frames, field_mode = _frames(job, callbacks.note, callbacks.warn)
    rows, boxes, panels = [], [], []
    for label, frame in frames:
        box = most_detailed_box(frame, job.crop)
        rows.append(label)
        boxes.append(box)
        panels.append(_row(frame, box, job.scale, models))
    columns = ("source (nearest)", "bicubic", *(name for name, _ in models))
    sheet = compose(panels, [[f"{c} - {r}" if i == 0 else c for i, c in enumerate(columns)] for r in rows])
    write_image(job.output, sheet)
    return PreviewResult(job.output, (sheet.shape[1], sheet.shape[0]), columns, tuple(rows), tuple(boxes),
                         field_mode, time.perf_counter() - began)


# ---- inputs ---------------------------------------------------------------------------------


_MOVING_SUFFIXES = (".gif", ".apng", ".avifs")  # animations, previewed as videos are


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.suffix.lower() not in _MOVING_SUFFIXES


def _check_output(job: PreviewJob) -> None:
    if job.output.suffix.lower().lstrip(".").replace("jpeg", "jpg") not in WRITE_FORMATS:
        raise OutputError(f"cannot write a {job.output.suffix or 'suffix-less'} sheet: name it .png, .jpg or .webp")
    if job.output.exists() and job.input.exists() and job.output.resolve() == job.input.resolve():
        raise output_replaces_input(job.input)
    if job.output.exists() and not job.overwrite:
        raise OutputError(f"{job.output} exists: add --overwrite to replace it")
    require_folder_for(job.output)
    if not job.input.is_file():
        raise InputError(f"input not found: {job.input}")
    if is_image(job.input) and (job.at or job.field_mode != "progressive"):
        raise InputError("--at and --field-mode are for videos; the input is an image")


def _load_models(job: PreviewJob) -> list[tuple[str, object]]:
    """(column label, Upscaler) for each --model (a file or a shipped model's name) and --denoise
    mix; none asked: the default shipped model for --scale."""
    from animesr.inference import Upscaler
    from animesr.pretrained import model_choice, resolve_model

    asked: list[tuple[object, float | None]] = [(model_choice(m), None) for m in job.models]
    asked += [(None, strength) for strength in job.denoise]
    models = []
    for choice, strength in asked or [(None, None)]:
        loaded = resolve_model(choice, job.scale, strength)
        if strength is not None:
            name = f"denoise {strength:g}"
        else:
            name = choice if isinstance(choice, str) else loaded.label
        models.append((name, Upscaler(loaded, job.inference)))
    return models


def _frames(job: PreviewJob, note: Message, warn: Message) -> tuple[list[tuple[str, np.ndarray]], str]:
    if is_image(job.input):
        return [("image", to_rgb8(read_image(job.input)))], "progressive"
    from animesr.video.fields import settle_field_mode
    from animesr.video.probe import probe
    from animesr.video.stills import frame_at, most_detailed_frames

    info = probe(job.input)
    field_mode = settle_field_mode(info, job.field_mode, note=note, warn=warn)
    found = ([frame_at(info, field_mode, t) for t in job.at] if job.at
             else most_detailed_frames(info, field_mode, job.frames))
    if not job.at and len(found) < job.frames:
        why = "its duration is unknown" if not info.duration else "the others would repeat a frame"
        note(f"{job.input.name} gave {len(found)} distinct frame(s) of the {job.frames} asked for: {why}")
    return [(f"{t:.3f} s", frame) for t, frame in found], field_mode


# ---- panels ---------------------------------------------------------------------------------


def most_detailed_box(frame: np.ndarray, crop: int) -> tuple[int, int, int, int]:
    """x, y, width, height of the crop × crop square with the most lines and texture in it."""
    height, width = frame.shape[:2]
    size = min(crop, width, height)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    energy = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
    summed = cv2.boxFilter(energy, -1, (size, size), normalize=False, anchor=(0, 0),
                           borderType=cv2.BORDER_CONSTANT)[: height - size + 1, : width - size + 1]
    y, x = np.unravel_index(int(summed.argmax()), summed.shape)
    return int(x), int(y), size, size


def _row(frame: np.ndarray, box: tuple[int, int, int, int], scale: int, models: list) -> list[np.ndarray]:
    x, y, w, h = box
    crop = frame[y: y + h, x: x + w]
    left, top = max(0, x - MARGIN), max(0, y - MARGIN)
    context = frame[top: min(frame.shape[0], y + h + MARGIN), left: min(frame.shape[1], x + w + MARGIN)]
    inner = (slice((y - top) * scale, (y - top + h) * scale), slice((x - left) * scale, (x - left + w) * scale))

    def cut(upscaled: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(upscaled[inner])

    nearest = np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1)
    bicubic = cut(bicubic_resize(context, context.shape[1] * scale, context.shape[0] * scale))
    return [nearest, bicubic, *(cut(upscaler.upscale(context)) for _, upscaler in models)]


def compose(rows: list[list[np.ndarray]], labels: list[list[str]]) -> np.ndarray:
    """Panels in a grid on a dark background, each under its label."""
    panel_h = max(p.shape[0] for row in rows for p in row)
    panel_w = max(p.shape[1] for row in rows for p in row)
    columns = max(len(row) for row in rows)
    width = columns * panel_w + (columns + 1) * GAP
    height = len(rows) * (panel_h + LABEL_HEIGHT) + (len(rows) + 1) * GAP
    sheet = np.empty((height, width, 3), np.uint8)
    sheet[:] = BACKGROUND
    for r, (row, row_labels) in enumerate(zip(rows, labels)):
        top = GAP + r * (panel_h + LABEL_HEIGHT + GAP)
        for c, (panel, label) in enumerate(zip(row, row_labels)):
            left = GAP + c * (panel_w + GAP)
            _label(sheet, label, left, top, panel_w)
            sheet[top + LABEL_HEIGHT: top + LABEL_HEIGHT + panel.shape[0], left: left + panel.shape[1]] = panel
    return sheet


def _label(sheet: np.ndarray, text: str, left: int, top: int, width: int) -> None:
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    text = text.encode("ascii", "replace").decode()
    while len(text) > 4 and cv2.getTextSize(text, font, size, 1)[0][0] > width - 4:
        text = text[:-4] + "..."
    cv2.putText(sheet, text, (left + 2, top + LABEL_HEIGHT - 8), font, size, TEXT, 1, cv2.LINE_AA)
