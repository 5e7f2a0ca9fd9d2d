"""`animesr preview`: a side-by-side sheet (source, bicubic, each model) on a few crops, in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from animesr.cli import app
from animesr.cli.common import console, fail, guarded, note, warn
from animesr.callbacks import JobCallbacks
from animesr.config import DEFAULT_PREVIEW_CROP, FIELD_MODES, InferenceSettings, PreviewJob
from animesr.errors import InputError


@app.command("preview")
def preview(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", show_default=False,
                                               help="A video or an image.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The sheet: .png, .jpg or .webp.")],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2, 3 or 4.")] = 2,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", metavar="MODEL", help="A model to show: clean, real or a model file (repeat for "
                                               "several, side by side); default: clean.")] = None,
    denoise: Annotated[list[float] | None, typer.Option(
        "--denoise", metavar="S", help="Also show the shipped clean and real models mixed at S (0..1; "
                                       "repeat for several).")] = None,
    at: Annotated[list[str] | None, typer.Option(
        "--at", metavar="TIME", help="A time in the video to show (seconds or [HH:]MM:SS[.ms]; repeat for several); "
                     "default: the most detailed frames.")] = None,
    frames: Annotated[int, typer.Option("--frames", help="How many frames to pick without --at (1 to 12).")] = 2,
    crop: Annotated[int, typer.Option("--crop", help="Side of each crop in source pixels (the most "
                                                     "detailed square of each frame).")] = DEFAULT_PREVIEW_CROP,
    field_mode: Annotated[str, typer.Option("--field-mode", help="As upscale-video: auto, ivtc, deinterlace or "
                                                                 "progressive.")] = "progressive",
    ivtc: Annotated[bool, typer.Option("--ivtc", help="Same as --field-mode ivtc.")] = False,
    deinterlace: Annotated[bool, typer.Option("--deinterlace", help="Same as --field-mode deinterlace.")] = False,
    tile: Annotated[int | None, typer.Option("--tile", "-t", help="Tile size in input pixels.")] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda or cuda:N.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing sheet.")] = False,
) -> None:
    """Show what upscaling will give, before a long job: source, bicubic and each model, side by side."""
    from animesr.cli.upscale_video import _field_mode, parse_time
    from animesr.model.a2n import SUPPORTED_SCALES

    if scale not in SUPPORTED_SCALES:
        raise fail(f"--scale must be 2, 3 or 4, not {scale}", InputError.exit_code)
    mode = _field_mode(None if field_mode == "progressive" else field_mode, ivtc=ivtc, deinterlace=deinterlace)
    if field_mode not in FIELD_MODES:
        raise fail(f"--field-mode must be one of {', '.join(FIELD_MODES)}, not {field_mode!r}", InputError.exit_code)
    try:
        job = PreviewJob(input=input_path, output=output, scale=scale, models=tuple(model or ()),
                         denoise=tuple(denoise or ()),
                         at=tuple(parse_time(t, "--at") for t in at or ()), frames=frames, crop=crop,
                         field_mode=mode, overwrite=overwrite, inference=InferenceSettings(device=device, tile=tile))
    except ValueError as error:
        raise fail(str(error), InputError.exit_code) from None

    from animesr.preview import make_preview  # torch only when there is work

    result = guarded(lambda: make_preview(job, JobCallbacks(note=note, warn=warn)))
    note(f"rows: {', '.join(result.rows)}; columns: {', '.join(result.columns)}")
    console.print(f"done in {result.seconds:.1f} s → {result.output} ({result.size[0]}×{result.size[1]})",
                  markup=False)
