"""Images → one HDF5 file of HR sub-images and their bicubic LR pairs (the source paper's recipe).

Layout: `hr` (N, crop, crop, 3) uint8; `lr_x{s}` (N, crop/s, crop/s, 3) uint8 per scale;
`source` (N,) index into the `sources` attribute; `position` (N, 2) top-left (y, x) in the
source. One sample per chunk, gzip-compressed. Images are streamed: one in memory at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from animesr import __version__, stopping
from animesr.atomic import replaced_on_success, require_folder_for
from animesr.config import PrepareSettings
from animesr.errors import (AnimeSRError, DatasetError, InputError, OutputError, UsageError,
                            output_replaces_input)
from animesr.imaging import IMAGE_SUFFIXES, decode_image, downscale, list_images, to_rgb8

FORMAT_NAME = "animesr-sr-pairs"
FORMAT_VERSION = 1
RESIZE_METHOD = "pillow-bicubic-antialiased"


@dataclass(frozen=True)
class PrepareReport:
    samples: int
    images_used: int
    skipped: tuple[tuple[str, str], ...]  # (file, reason)


ImageCallback = Callable[[int, int, str], None]


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Starts every `stride` pixels, plus an edge-aligned last one so the border is covered."""
    if length < crop:
        return []
    starts = list(range(0, length - crop + 1, stride))
    if starts[-1] != length - crop:
        starts.append(length - crop)
    return starts


def prepare_dataset(settings: PrepareSettings, on_image: ImageCallback | None = None) -> PrepareReport:
    """Ctrl-C or SIGTERM stops between two samples (see animesr.stopping): KeyboardInterrupt,
    and nothing is left behind."""
    check_settings(settings)
    files = [path for path, _ in list_images(list(settings.sources), recursive=True)]
    if any(path.resolve() == settings.output.resolve() for path in files):
        raise output_replaces_input(settings.output)
    if settings.output.exists() and not settings.overwrite:
        raise OutputError(f"{settings.output} exists; pass --overwrite to replace it")
    with stopping.stop_at_safe_points():
        try:
            with replaced_on_success(settings.output) as temporary:
                report = _write_file(temporary, files, settings, on_image)
                if report.samples == 0:
                    raise InputError("no usable image: every input was unreadable or smaller than the crop")
        except OSError as error:
            raise OutputError(f"cannot write {settings.output}: {_hdf5_reason(error)}") from None
    return report


def _write_file(temporary: Path, files: list[Path], settings: PrepareSettings,
                on_image: ImageCallback | None) -> PrepareReport:
    """HDF5 that meets a full disk is hard to stop: each buffered write fails again as its
    objects are freed (hundreds of tracebacks) and closing the file can crash the process. So
    the datasets stay open (see `_create_datasets`), the file is flushed after each image, and
    on any failure the partial file is emptied first, which gives HDF5 room to close it."""
    h5 = h5py.File(temporary, "w", track_order=True)
    try:
        report = _write_samples(h5, files, settings, on_image)
        h5.close()
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.truncate(temporary, 0)
        _discard_further_writes(h5)
        with contextlib.suppress(Exception):
            h5.close()
        if isinstance(error, (OSError, RuntimeError)) and not isinstance(error, AnimeSRError):
            raise OutputError(f"cannot write {settings.output}: {_hdf5_reason(error)}") from None
        raise
    return report


def _discard_further_writes(h5: h5py.File) -> None:
    """Point the file's descriptor at the null device: the file is being thrown away, and HDF5 still
    flushes buffered chunks as its objects are freed, which on a full disk can crash the process."""
    with contextlib.suppress(Exception):
        descriptor = h5.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, descriptor)
        os.close(null)


def _hdf5_reason(error: BaseException) -> str:
    """h5py's message names the failing call and ends with the system's reason; keep the reason."""
    text = str(error)
    match = re.search(r"error message = '([^']+)'", text)
    if match:
        return match.group(1)
    return getattr(error, "strerror", None) or text.splitlines()[0]


def check_settings(s: PrepareSettings) -> None:
    """Every option, once, before any work."""
    if not s.scales or any(scale not in (2, 3, 4) for scale in s.scales):
        raise UsageError(f"--scales must be a list of 2, 3 and/or 4, not {s.scales}")
    step = math.lcm(*s.scales)
    if s.crop <= 0 or s.crop % step:
        raise UsageError(f"--crop must be a positive multiple of {step} for scales {s.scales}")
    if s.stride <= 0:
        raise UsageError("--stride must be positive")
    if s.min_size is not None and s.min_size < s.crop:
        raise UsageError(f"--min-size must be at least --crop ({s.crop}): smaller images give no sample")
    require_folder_for(s.output)
    if s.output.is_dir():
        raise OutputError(f"cannot write {s.output}: it is a folder")
    if s.output.exists() and s.output.suffix.lower() in IMAGE_SUFFIXES:
        raise OutputError(f"{s.output} is a picture, never replaced by a dataset: name the output .h5")


def _create_datasets(h5: h5py.File, settings: PrepareSettings) -> dict[str, h5py.Dataset]:
    """Opened once and held: each `h5[name]` would open the dataset anew, and closing it again
    writes its buffered chunks inside a destructor, where a failed write cannot be reported."""
    def make(name: str, size: int) -> None:
        h5.create_dataset(name, shape=(0, size, size, 3), maxshape=(None, size, size, 3), dtype=np.uint8,
                          chunks=(1, size, size, 3), compression="gzip", compression_opts=4,
                          shuffle=True, track_times=False)

    make("hr", settings.crop)
    for scale in settings.scales:
        make(f"lr_x{scale}", settings.crop // scale)
    h5.create_dataset("source", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(4096,), track_times=False)
    h5.create_dataset("position", shape=(0, 2), maxshape=(None, 2), dtype=np.int32, chunks=(4096, 2),
                      track_times=False)
    return {name: h5[name] for name in h5}


def _write_samples(h5: h5py.File, files: list[Path], settings: PrepareSettings,
                   on_image: ImageCallback | None) -> PrepareReport:
    datasets = _create_datasets(h5, settings)
    sources: list[dict] = []
    skipped: list[tuple[str, str]] = []
    min_size = settings.min_size or settings.crop
    count = 0
    for index, path in enumerate(files):
        stopping.check()
        if on_image:
            on_image(index, len(files), path.name)
        try:
            content = path.read_bytes()
            image = to_rgb8(decode_image(content, path))
        except OSError as error:
            skipped.append((str(path), f"cannot read: {error.strerror or error}"))
            continue
        except AnimeSRError as error:
            skipped.append((str(path), str(error)))
            continue
        h, w = image.shape[:2]
        if min(h, w) < min_size:
            skipped.append((str(path), f"{w}×{h} is smaller than {min_size} px"))
            continue
        added = _append_image(datasets, image, len(sources), settings)
        h5.flush()  # a full disk shows here, at a known point, not when HDF5 frees its buffers
        sources.append({"name": path.name, "sha256": hashlib.sha256(content).hexdigest(), "width": w, "height": h,
                        "samples": added})
        count += added
    if on_image:
        on_image(len(files), len(files), "")
    _write_attributes(h5, settings, sources, count)
    return PrepareReport(samples=count, images_used=len(sources), skipped=tuple(skipped))


def _append_image(datasets: dict[str, h5py.Dataset], image: np.ndarray, source_index: int,
                  settings: PrepareSettings) -> int:
    h, w = image.shape[:2]
    crop = settings.crop
    positions = [(y, x) for y in window_starts(h, crop, settings.stride)
                 for x in window_starts(w, crop, settings.stride)]
    start = datasets["hr"].shape[0]
    end = start + len(positions)
    for dataset in datasets.values():
        dataset.resize(end, axis=0)
    for i, (y, x) in enumerate(positions):
        stopping.check()
        hr = np.ascontiguousarray(image[y: y + crop, x: x + crop])
        datasets["hr"][start + i] = hr
        for scale in settings.scales:
            datasets[f"lr_x{scale}"][start + i] = downscale(hr, scale)
    datasets["source"][start:end] = source_index
    datasets["position"][start:end] = np.asarray(positions, dtype=np.int32).reshape(-1, 2)
    return len(positions)


def _write_attributes(h5: h5py.File, settings: PrepareSettings, sources: list[dict], count: int) -> None:
    h5.attrs.update({
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "crop": settings.crop,
        "stride": settings.stride,
        "scales": list(settings.scales),
        "resize_method": RESIZE_METHOD,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool_version": __version__,
        "sources": json.dumps(sources),
        "samples": count,
    })


def check_dataset(path: Path, scale: int) -> dict:
    """Open `path` read-only and check, once, that it is ours, of a known version, laid out as
    `prepare` writes it and with `scale`; return its attributes. Each problem is one DatasetError."""
    _require_a_file(path)
    try:
        with h5py.File(path, "r") as h5:
            attrs = dict(h5.attrs)
            _check_attributes(path, attrs)
            if f"lr_x{scale}" not in h5 or scale not in _scales(attrs):
                have = ", ".join(f"x{s}" for s in _scales(attrs))
                raise DatasetError(f"{path} has no x{scale} pairs (it has {have}); prepare it with --scales {scale}")
            _check_layout(path, h5, attrs)
    except OSError as error:
        raise DatasetError(f"{path} is not an HDF5 file ({_hdf5_reason(error)})") from None
    return attrs


def _require_a_file(path: Path) -> None:
    if path.is_dir():
        raise DatasetError(f"{path} is a folder, not an HDF5 file from `animesr prepare`")
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset file")
    if not path.is_file():
        raise DatasetError(f"{path} is not a regular file, not an HDF5 file from `animesr prepare`")


# What decides the samples a run draws; a file's name and creation time do not.
SAMPLE_ATTRIBUTES = ("format_version", "crop", "stride", "resize_method", "sources", "samples")


def content_id(attrs: dict) -> str:
    """A short fingerprint of a checked dataset's samples, from its attributes: a moved, renamed or
    re-prepared copy of the same images with the same recipe has the same id, other images another."""
    recipe = {name: _plain(attrs.get(name)) for name in SAMPLE_ATTRIBUTES}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def _integer(path: Path, attrs: dict, name: str) -> int:
    value = attrs.get(name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DatasetError(f"{path}: attribute {name!r} is {value!r}, not an integer; run `animesr prepare` again")
    return int(value)


def _scales(attrs: dict) -> list[int]:
    return [int(s) for s in np.atleast_1d(attrs.get("scales", [])) if isinstance(s, (int, np.integer))]


def _check_attributes(path: Path, attrs: dict) -> None:
    name = attrs.get("format")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    if name != FORMAT_NAME:
        raise DatasetError(f"{path} is not an animesr dataset (make one with `animesr prepare`)")
    version = _integer(path, attrs, "format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(f"{path} has dataset format {version}; "
                           f"this animesr reads {FORMAT_VERSION}: run `animesr prepare` again")
    crop = _integer(path, attrs, "crop")
    scales = np.atleast_1d(attrs.get("scales", []))
    if scales.size == 0 or scales.dtype.kind not in "iu" or not set(scales.tolist()) <= {2, 3, 4}:
        raise DatasetError(f"{path}: attribute 'scales' is {attrs.get('scales')!r}, not a list of 2, 3 and/or 4")
    if crop <= 0 or any(crop % int(s) for s in scales):
        raise DatasetError(f"{path}: crop {crop} is not a positive multiple of every scale {scales.tolist()}")


def _check_layout(path: Path, h5: h5py.File, attrs: dict) -> None:
    crop = int(attrs["crop"])
    expected = {"hr": crop, **{f"lr_x{s}": crop // s for s in _scales(attrs)}}
    samples = None
    for name, size in expected.items():
        array = h5.get(name)
        if not isinstance(array, h5py.Dataset):
            what = "HR crops" if name == "hr" else f"x{name[len('lr_x'):]} LR crops"
            raise DatasetError(f"{path} holds no {what} ({name!r}); make it with `animesr prepare`")
        if array.ndim != 4 or array.shape[1:] != (size, size, 3):
            raise DatasetError(f"{path}: {name!r} is {array.shape}, not (N, {size}, {size}, 3) RGB crops")
        if array.dtype != np.uint8:
            raise DatasetError(f"{path}: {name!r} holds {array.dtype}, not 8-bit pixels (uint8)")
        if samples is not None and array.shape[0] != samples:
            raise DatasetError(f"{path}: {name!r} holds {array.shape[0]} samples, 'hr' {samples}")
        samples = array.shape[0]
