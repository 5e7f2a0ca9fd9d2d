"""Many videos in one command: files and folders in, one output folder out, every video with the
same settings, each resumable and verified on its own. A video that fails is reported and the
rest go on, except when the model gives NaN or infinite values: that stops the batch. An existing
output is skipped unless --overwrite. No typer or rich here."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from animesr.atomic import removed_if_left_empty
from animesr.callbacks import JobCallbacks, Message, ignore
from animesr.config import VideoJob
from animesr.errors import AnimeSRError, InputError, ModelOutputError, OutputError, output_replaces_input
from animesr.image_job import JobSummary, prepare_output_dir, stopped_by_model
from animesr.inputs import folder_inside, list_inputs
from animesr.video.workdir import WORK_SUFFIXES

VIDEO_SUFFIXES = frozenset({".mkv", ".mp4", ".m4v", ".mov", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mpg",
                            ".mpeg", ".vob", ".wmv", ".flv", ".ogv", ".3gp", ".nut", ".y4m"})
OUTPUT_MARKERS = WORK_SUFFIXES  # our own leftovers, never inputs


@dataclass(frozen=True)
class VideoTask:
    source: Path
    target: Path


def list_videos(paths: list[Path], recursive: bool, skip: Path | None = None) -> list[tuple[Path, Path]]:
    """Expand files and folders into (video file, path relative to its root folder). Files under
    `skip` (the output folder) inside a folder are left out, as upscale-image does."""
    def wanted(path: Path, root: Path) -> bool:
        inner = folder_inside(skip, root)
        return (path.suffix.lower() in VIDEO_SUFFIXES and not any(marker in path.name for marker in OUTPUT_MARKERS)
                and not (inner and path.resolve().is_relative_to(inner)))

    return list_inputs(paths, recursive, wanted, "videos")


def plan_videos(inputs: list[Path], output_dir: Path, recursive: bool, container: str, *, overwrite: bool = False,
                note: Message = ignore) -> list[VideoTask]:
    """Name every output (OUT_DIR/relative/stem.CONTAINER); two inputs onto one output, or an
    output onto an input, is refused before any work. Without `overwrite`, an input that is where
    another input's output goes (an earlier run into the input folder) is left out, with a note:
    that output then exists and is skipped."""
    tasks: list[VideoTask] = []
    claimed: dict[Path, Path] = {}
    found = list_videos(inputs, recursive, skip=output_dir)

    def target_of(relative: Path) -> Path:
        return output_dir / relative.parent / f"{relative.stem}.{container}"

    if not overwrite:
        found = _without_earlier_outputs(found, {_key(target_of(r)): source for source, r in found}, note)
    sources = {_key(source) for source, _ in found}
    for source, relative in found:
        target = target_of(relative)
        key = _key(target)
        if key in claimed:
            raise InputError(f"{claimed[key]} and {source} would both be written to {target}: "
                             "use separate runs or output folders")
        if key in sources:
            raise output_replaces_input(source)
        claimed[key] = source
        tasks.append(VideoTask(source, target))
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"output folder {output_dir} is an existing file")
    return tasks


def _without_earlier_outputs(found: list[tuple[Path, Path]], producers: dict[Path, Path],
                             note: Message) -> list[tuple[Path, Path]]:
    kept = []
    for source, relative in found:
        producer = producers.get(_key(source))
        if producer is not None and producer != source:
            note(f"{source} is left out: it is where {producer}'s output goes (an earlier run's output)")
            continue
        kept.append((source, relative))
    return kept


def _key(path: Path) -> Path:
    return Path(os.path.normcase(os.path.abspath(path)))


@dataclass(frozen=True)
class BatchCallbacks(JobCallbacks):
    on_video: Callable[[int, int, VideoTask], None] = ignore  # number from 1, total, the video
    on_done: Callable[[VideoTask, object], None] = ignore  # result: a VideoResult
    on_skipped: Callable[[VideoTask], None] = ignore
    on_failed: Callable[[VideoTask, str], None] = ignore  # message names the file


def upscale_videos(template: VideoJob, output_dir: Path, tasks: list[VideoTask],
                   run_one: Callable[[VideoJob], object], callbacks: BatchCallbacks = BatchCallbacks()
                   ) -> JobSummary:
    """Run `run_one` (upscale_video with its callbacks and engine) on each task's job: `template`
    with the task's input and output. Ctrl-C stops the whole batch (each video resumes later)."""
    with removed_if_left_empty([output_dir, *(task.target.parent for task in tasks)]):
        prepare_output_dir(output_dir)
        return _upscale_tasks(template, tasks, run_one, callbacks)


def _upscale_tasks(template: VideoJob, tasks: list[VideoTask], run_one: Callable[[VideoJob], object],
                   callbacks: BatchCallbacks) -> JobSummary:
    summary = JobSummary()
    for number, task in enumerate(tasks, 1):
        if task.target.exists() and not template.overwrite:
            summary.skipped.append(task.target)
            callbacks.on_skipped(task)
            continue
        callbacks.on_video(number, len(tasks), task)
        try:
            task.target.parent.mkdir(parents=True, exist_ok=True)
            result = run_one(replace(template, input=task.source, output=task.target))
        except ModelOutputError as error:  # the model's fault, not the video's: every other would fail too
            raise stopped_by_model(task.source, error, summary) from None
        except AnimeSRError as error:
            message = f"{task.source}: {error}"
            summary.failed.append((task.source, message))
            callbacks.on_failed(task, message)
            continue
        except OSError as error:
            message = f"{task.source}: cannot write {task.target.parent}: {error.strerror}"
            summary.failed.append((task.source, message))
            callbacks.on_failed(task, message)
            continue
        summary.done.append(task.target)
        callbacks.on_done(task, result)
    return summary
