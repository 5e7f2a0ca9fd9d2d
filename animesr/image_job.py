"""The folder job behind `animesr upscale-image`: files in → Upscaler → files out.

No typer or rich here: the CLI (or any caller) follows progress through `ImageCallbacks`.
A file that cannot be read, upscaled or written is recorded as failed and the job goes
on; only problems that make the whole job impossible (no inputs, an output folder that
cannot be written, two inputs that would write the same output) raise up front, and a
model that gives NaN or infinite values stops the job at the first image it spoils.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from animesr.atomic import NAME_MAX, check_writable_folder, removed_if_left_empty
from animesr.callbacks import JobCallbacks, ignore
from animesr.config import ImageJob
from animesr.errors import (AnimeSRError, ImageTooLargeError, InputError, ModelOutputError, OutputError,
                            StoppedByModel, output_replaces_input)
from animesr.imaging import WRITE_FORMATS, keeps_profile, list_images, read_image_and_profile, write_image

if TYPE_CHECKING:
    from animesr.inference.upscaler import Upscaler

FORMATS = ("same",) + WRITE_FORMATS
# input suffix -> (format to write, suffix to keep) for --format same
_SAME_FORMAT = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".jfif": "jpg", ".webp": "webp"}


@dataclass(frozen=True)
class ImageTask:
    """One input file and where its result goes."""

    source: Path
    target: Path
    fmt: str  # png | jpg | webp
    # (pixels, ICC profile) of a lone image, read at planning; None for the images of a folder
    read_ahead: tuple[np.ndarray, bytes | None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ImageCallbacks(JobCallbacks):
    """`index` counts from 0 over the whole plan; `warn` hears of out-of-memory retries."""

    on_start: Callable[[int], None] = ignore  # number of images
    on_image: Callable[[int, ImageTask], None] = ignore  # before an image is read
    on_tile: Callable[[int, int], None] = ignore  # tiles (steps) done, total, of the current image
    on_done: Callable[[int, ImageTask], None] = ignore
    on_skipped: Callable[[int, ImageTask], None] = ignore  # output exists, no --overwrite
    on_failed: Callable[[int, ImageTask, str], None] = ignore  # message names the file


@dataclass
class JobSummary:
    """What a folder job (of images or of videos) did with each input."""

    done: list[Path] = field(default_factory=list)  # written outputs
    skipped: list[Path] = field(default_factory=list)  # existing outputs left alone
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, message)

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> dict[str, int]:
        return {"done": len(self.done), "skipped": len(self.skipped), "failed": len(self.failed)}

    def line(self) -> str:
        return f"done {len(self.done)}, skipped {len(self.skipped)}, failed {len(self.failed)}"

def output_format(source: Path, fmt: str) -> tuple[str, str]:
    """(format to encode, file suffix) for an input file and the --format choice."""
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "same":
        suffix = source.suffix.lower()
        if suffix in _SAME_FORMAT:
            return _SAME_FORMAT[suffix], source.suffix
        return "png", ".png"
    return fmt, "." + fmt


def plan_images(job: ImageJob, prepare: bool = True) -> list[ImageTask]:
    """Expand the inputs, name every output, and (with `prepare`) create the output folder
    and make sure it is writable; without `prepare` nothing is created.

    Raises InputError (missing input, folder without images, two inputs → one output, a lone
    image that cannot be read) and OutputError (output folder is a file or cannot be created
    or written).
    """
    if not job.inputs:
        raise InputError("no input given")
    found = list_images(list(job.inputs), job.recursive, skip=job.output_dir)
    tasks: list[ImageTask] = []
    claimed: dict[Path, Path] = {}
    for source, relative in found:
        fmt, suffix = output_format(source, job.fmt)
        target = job.output_dir / relative.parent / f"{relative.stem}{job.suffix}{suffix}"
        if len(os.fsencode(target.name)) > NAME_MAX:
            raise InputError(f"{source}: its output name would be longer than {NAME_MAX} bytes; "
                             "use a shorter --suffix or rename it")
        key = _path_key(target)
        if key in claimed:
            raise InputError(f"{claimed[key]} and {source} would both be written to {target}; "
                             "use separate runs or --suffix")
        if key == _path_key(source) or target.exists() and target.resolve() == source.resolve():
            raise output_replaces_input(source, advice="use --suffix or another -o")
        claimed[key] = source
        tasks.append(ImageTask(source, target, fmt))
    # an input that is another input's output (a_x2.png beside a.png, -o the same folder):
    # an earlier run's result, not a picture to upscale again
    tasks = [task for task in tasks if claimed.get(_path_key(task.source), task.source) == task.source]
    if job.output_dir.exists() and not job.output_dir.is_dir():
        raise OutputError(f"output folder {job.output_dir} is an existing file")
    tasks = _read_lone_image(job, tasks)
    if prepare:
        prepare_output_dir(job.output_dir)
    else:
        check_writable_folder(job.output_dir)
    return tasks


def _read_lone_image(job: ImageJob, tasks: list[ImageTask]) -> list[ImageTask]:
    """One image named on its own is read before any work, and kept for it: when it cannot be read,
    that is the job's error, not one failed file of a folder job."""
    lone = len(job.inputs) == 1 and job.inputs[0].is_file()
    if lone and tasks and not _is_skipped(tasks[0], job):
        return [replace(tasks[0], read_ahead=_read_source(tasks[0], job)), *tasks[1:]]
    return tasks


def _is_skipped(task: ImageTask, job: ImageJob) -> bool:
    return task.target.exists() and not job.overwrite


def _read_source(task: ImageTask, job: ImageJob) -> tuple[np.ndarray, bytes | None]:
    """The picture and its ICC colour profile."""
    try:
        return read_image_and_profile(task.source, max_pixels=job.max_pixels)
    except ImageTooLargeError as error:
        raise ImageTooLargeError(f"{error}; --max-pixels raises it") from None


def _path_key(path: Path) -> Path:
    return Path(os.path.normcase(os.path.abspath(path)))


def prepare_output_dir(output_dir: Path) -> None:
    """Create `output_dir` if needed and prove it takes files (OutputError otherwise)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"output folder {output_dir} is an existing file")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output folder {output_dir}: {error.strerror or error}") from None
    check_writable_folder(output_dir)


def upscale_images(
    job: ImageJob,
    upscaler: Upscaler,
    callbacks: ImageCallbacks | None = None,
    tasks: list[ImageTask] | None = None,
) -> JobSummary:
    """Upscale every image of `job` (or of an already made `plan_images(job)`)."""
    callbacks = callbacks or ImageCallbacks()
    if upscaler.scale != job.scale:
        raise InputError(f"the model is x{upscaler.scale}, but the job asks for x{job.scale}")
    if tasks is None:
        tasks = plan_images(job, prepare=False)
    with removed_if_left_empty([job.output_dir, *(task.target.parent for task in tasks)]):
        prepare_output_dir(job.output_dir)
        return _upscale_tasks(job, upscaler, callbacks, tasks)


def _upscale_tasks(job: ImageJob, upscaler: Upscaler, callbacks: ImageCallbacks,
                   tasks: list[ImageTask]) -> JobSummary:
    summary = JobSummary()
    callbacks.on_start(len(tasks))
    for index, task in enumerate(tasks):
        if _is_skipped(task, job):
            summary.skipped.append(task.target)
            callbacks.on_skipped(index, task)
            continue
        callbacks.on_image(index, task)
        try:
            _upscale_one(task, job, upscaler, callbacks)
        except ModelOutputError as error:  # the model's fault, not the file's: every other one would fail too
            raise stopped_by_model(task.source, error, summary) from None
        except AnimeSRError as error:
            message = str(error)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
            message = f"{task.source}: {type(error).__name__}: {error}"
        else:
            summary.done.append(task.target)
            callbacks.on_done(index, task)
            continue
        if str(task.source) not in message:
            message = f"{task.source}: {message}"
        summary.failed.append((task.source, message))
        callbacks.on_failed(index, task, message)
    return summary


def stopped_by_model(source: Path, error: ModelOutputError, summary: JobSummary) -> StoppedByModel:
    """The error that stops a job at `source`, saying what of the job is kept."""
    written = len(summary.done)
    kept = f"{written} output(s) written before it are kept" if written else "nothing was written"
    return StoppedByModel(f"{source}: {error}; {kept}", summary)


def _upscale_one(task: ImageTask, job: ImageJob, upscaler: Upscaler, callbacks: ImageCallbacks) -> None:
    if task.target.exists() and task.target.resolve() == task.source.resolve():
        raise output_replaces_input(task.source, advice="use --suffix or another -o")
    image, profile = task.read_ahead if task.read_ahead is not None else _read_source(task, job)
    result = upscaler.upscale(image, on_tile=callbacks.on_tile, notice=callbacks.warn)
    try:
        task.target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create folder {task.target.parent}: {error.strerror or error}") from None
    for loss in format_losses(image, task.fmt, profile):
        callbacks.warn(f"{task.source}: {loss}")
    write_image(task.target, result, task.fmt, icc_profile=profile)


def format_losses(image: np.ndarray, fmt: str, icc_profile: bytes | None = None) -> list[str]:
    """What the output format cannot hold of the picture (the README says it; the run says it too)."""
    losses = []
    if icc_profile and not keeps_profile(image, fmt, icc_profile):
        losses.append(f"{fmt.upper()} stores grey as RGB: the grey ICC colour profile is left out "
                      "(png or jpg keep it)")
    if fmt == "jpg" and image.ndim == 3 and image.shape[2] in (2, 4):
        losses.append("JPEG has no transparency: the picture is put on white (png or webp keep it)")
    if fmt in ("jpg", "webp") and image.dtype == np.uint16:
        losses.append(f"{fmt.upper()} holds 8 bits per channel: the 16-bit picture is rounded (png keeps it)")
    return losses
