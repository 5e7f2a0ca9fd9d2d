"""`animesr upscale-image`: files and folders of images, upscaled into one output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID

from animesr.cli import app
from animesr.cli.common import (BackendOption, CompileOption, DenoiseOption, DeviceOption, ModelOption,
                                 PrecisionOption, ScaleOption, TtaOption, console, fail, guarded, note,
                                 progress_bar, summary_before_a_stop, warn)
from animesr.config import DEFAULT_MAX_PIXELS, ImageJob, InferenceSettings
from animesr.errors import InputError
from animesr.image_job import FORMATS, ImageCallbacks, ImageTask, plan_images, upscale_images


@app.command("upscale-image")
def upscale_image(
    inputs: Annotated[list[Path], typer.Argument(metavar="INPUT", show_default=False,
                                                 help="Image files and/or folders of images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created if missing).")],
    scale: ScaleOption,
    model: ModelOption = None,
    denoise: DenoiseOption = None,
    tile: Annotated[int | None, typer.Option(
        "--tile", "-t", help="Tile size in input pixels (exact: same result as untiled). "
                             "Default: the whole image where it fits in memory, else tiles sized to it.")] = None,
    device: DeviceOption = "auto",
    backend: BackendOption = "auto",
    precision: PrecisionOption = "auto",
    tta: TtaOption = False,
    compiled: CompileOption = False,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="Output format: same (the input's, png when it cannot be written), "
                               "png, jpg, webp.")] = "same",
    suffix: Annotated[str, typer.Option("--suffix", help="Appended to each output's file name, e.g. _x2.")] = "",
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Descend into sub-folders and mirror them (the output folder is skipped).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (default: skip them).")] = False,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", help="Largest input image, in pixels (width × height); larger ones fail, "
                             "checked before decoding.")] = DEFAULT_MAX_PIXELS,
) -> None:
    """Upscale images with A2N. Existing outputs are skipped unless --overwrite."""
    job = _build_job(inputs=inputs, output=output, scale=scale, model=model, denoise=denoise, tile=tile,
                     device=device, tta=tta, fmt=fmt, suffix=suffix, recursive=recursive, overwrite=overwrite,
                     max_pixels=max_pixels, backend=backend, precision=precision, compiled=compiled)
    tasks = guarded(lambda: plan_images(job, prepare=False))  # nothing created before the model loads

    from animesr.inference import Upscaler  # torch is imported only when there is work
    from animesr.pretrained import resolve_model

    loaded = guarded(lambda: resolve_model(job.model, job.scale, job.denoise))
    upscaler = guarded(lambda: Upscaler(loaded, job.inference))
    note(f"{len(tasks)} image(s), x{job.scale}, model {loaded.source}, {upscaler.describe()}")

    with progress_bar() as progress:
        callbacks = _progress_callbacks(progress, len(tasks))
        summary = guarded(lambda: summary_before_a_stop(lambda: upscale_images(job, upscaler, callbacks, tasks),
                                                        job.output_dir))

    console.print(f"{summary.line()} → {job.output_dir}", markup=False)
    if summary.failed:
        names = "\n".join(f"  {escape(str(source))}" for source, _ in summary.failed)
        raise fail(f"{len(summary.failed)} image(s) failed:\n{names}", 1)


def _build_job(*, inputs: list[Path], output: Path, scale: int, model: str | None, denoise: float | None,
               tile: int | None, device: str, tta: bool, fmt: str, suffix: str, recursive: bool,
               overwrite: bool, max_pixels: int, backend: str = "auto", precision: str = "auto",
               compiled: bool = False) -> ImageJob:
    from animesr.model.a2n import SUPPORTED_SCALES
    from animesr.pretrained import check_model_choice, model_choice

    if scale not in SUPPORTED_SCALES:
        raise fail(f"--scale must be 2, 3 or 4, not {scale}", InputError.exit_code)
    fmt = fmt.lower()
    if fmt == "jpeg":
        fmt = "jpg"
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}", InputError.exit_code)
    if any(sep in suffix for sep in ("/", "\\")):
        raise fail(f"--suffix must not contain a path separator: {suffix!r}", InputError.exit_code)
    chosen = guarded(lambda: model_choice(model))
    try:
        settings = InferenceSettings(device=device, tile=tile, tta=tta, backend=backend, precision=precision,
                                     compile=compiled)
        job = ImageJob(
            inputs=tuple(inputs), output_dir=output, scale=scale, model=chosen, fmt=fmt, suffix=suffix,
            recursive=recursive, overwrite=overwrite, max_pixels=max_pixels, inference=settings, denoise=denoise,
        )
    except ValueError as error:
        raise fail(str(error), InputError.exit_code) from None
    guarded(lambda: check_model_choice(chosen, scale, denoise))
    return job


def _progress_callbacks(progress: Progress, total: int) -> ImageCallbacks:
    images = progress.add_task("images", total=total)
    tiles: dict[str, TaskID | None] = {"task": None}

    def finish_tiles() -> None:
        if tiles["task"] is not None:
            progress.remove_task(tiles["task"])
            tiles["task"] = None

    def on_image(index: int, task: ImageTask) -> None:
        progress.update(images, description=f"images ({task.source.name})")

    def on_tile(done: int, steps: int) -> None:
        if tiles["task"] is None:
            tiles["task"] = progress.add_task("  tiles", total=steps)
        progress.update(tiles["task"], completed=done, total=steps)

    def on_done(index: int, task: ImageTask) -> None:
        finish_tiles()
        progress.advance(images)

    def on_skipped(index: int, task: ImageTask) -> None:
        note(f"skipped {task.source}: {task.target} exists (use --overwrite to replace it)")
        progress.advance(images)

    def on_failed(index: int, task: ImageTask, message: str) -> None:
        finish_tiles()
        warn(f"failed: {message}")
        progress.advance(images)

    return ImageCallbacks(on_image=on_image, on_tile=on_tile, on_done=on_done, on_skipped=on_skipped,
                          on_failed=on_failed, warn=warn)
