"""animesr prepare: images → HDF5 training pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from animesr.cli import app
from animesr.cli.common import console, guarded, note, progress_bar, warn
from animesr.config import PrepareSettings
from animesr.errors import UsageError


def parse_scales(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise UsageError(f"--scales must be a comma-separated list like 2,4, not {text!r}") from None


@app.command("prepare")
def prepare(
    sources: Annotated[list[Path], typer.Argument(help="Image files and folders (walked recursively).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The HDF5 file to write.")],
    crop: Annotated[int, typer.Option(help="HR sub-image size in pixels.")] = 480,
    stride: Annotated[int, typer.Option(help="Pixels between sub-images.")] = 200,
    scales: Annotated[str, typer.Option(help="Comma-separated scales to make LR images for.")] = "2,4",
    min_size: Annotated[int | None, typer.Option(
        help="Skip images whose shorter side is below this (default and least: --crop).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Cut HR sub-images from anime pictures and store them with their bicubic LR pairs.

    Ctrl-C, SIGTERM or SIGHUP stops between two samples and leaves nothing behind (exit 130, 143, 129)."""
    from animesr.data.prepare import check_settings, prepare_dataset

    settings = guarded(lambda: PrepareSettings(tuple(sources), output, crop, stride, parse_scales(scales),
                                               min_size, overwrite))
    guarded(lambda: check_settings(settings))

    def run() -> None:
        with progress_bar(opened=False) as progress:  # opened at the first image, once the inputs are checked
            task = progress.add_task("images", total=None)

            def on_image(done: int, total: int, name: str) -> None:
                progress.update(task, completed=done, total=total, description=name[:30] or "images")
                progress.start()

            report = prepare_dataset(settings, on_image)
        for name, reason in report.skipped:
            warn(f"skipped {name}: {reason}")
        note(f"{output}: {report.samples} samples from {report.images_used} images "
             f"({len(report.skipped)} skipped)")

    guarded(run)
    console.file.flush()
