"""animesr prepare: images → HDF5 training pairs."""

from __future__ import annotations

from pathlib import Path

import typer

from animesr.cli import app
from animesr.cli.common import console, guarded, note, progress_bar, warn
from animesr.config import PrepareSettings
from animesr.errors import InputError


def parse_scales(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise InputError(f"--scales must be a comma-separated list like 2,4, not {text!r}") from None


@app.command("prepare")
def prepare(
    sources: list[Path] = typer.Argument(..., help="Image files and folders (walked recursively)."),
    output: Path = typer.Option(..., "-o", "--output", help="The HDF5 file to write."),
    crop: int = typer.Option(480, help="HR sub-image size in pixels."),
    stride: int = typer.Option(200, help="Pixels between sub-images."),
    scales: str = typer.Option("2,4", help="Comma-separated scales to make LR images for."),
    min_size: int = typer.Option(None, help="Skip images whose shorter side is below this (default: --crop)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
) -> None:
    """Cut HR sub-images from anime pictures and store them with their bicubic LR pairs."""
    from animesr.data.prepare import prepare_dataset

    def run() -> None:
        settings = PrepareSettings(tuple(sources), output, crop, stride, parse_scales(scales), min_size, overwrite)
        with progress_bar() as progress:
            task = progress.add_task("images", total=None)

            def on_image(done: int, total: int, name: str) -> None:
                progress.update(task, completed=done, total=total, description=name[:30] or "images")

            report = prepare_dataset(settings, on_image)
        for name, reason in report.skipped:
            warn(f"skipped {name}: {reason}")
        note(f"{output}: {report.samples} samples from {report.images_used} images "
             f"({len(report.skipped)} skipped)")

    guarded(run)
    console.file.flush()
