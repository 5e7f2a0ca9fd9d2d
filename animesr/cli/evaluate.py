"""animesr evaluate: Y-PSNR and SSIM of a model against bicubic on HR images, on clean or degraded LR."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from animesr.cli import app
from animesr.cli.common import (BackendOption, CompileOption, DeviceOption, PrecisionOption, ScaleOption,
                                 TtaOption, console, fail, guarded, note, progress_bar, warn)
from animesr.atomic import check_writable_folder, require_folder_for
from animesr.config import InferenceSettings
from animesr.errors import OutputError, UsageError
from animesr.imaging import write_bytes_atomically


@app.command("evaluate")
def evaluate(
    hr: Annotated[list[Path], typer.Argument(help="HR images or folders (walked recursively).")],
    scale: ScaleOption,
    model: Annotated[str | None, typer.Option(
        help="clean, real or a checkpoint (ours or the A2N authors'); default: clean.")] = None,
    denoise: Annotated[float | None, typer.Option(
        help="0..1: evaluate the mix of the shipped clean (0) and real (1) models.")] = None,
    compare: Annotated[str | None, typer.Option(
        help="A second model (clean, real or a file), scored on the same LR.")] = None,
    degrade: Annotated[str, typer.Option(help="How the LR is made from each HR image: clean (bicubic), dvd, web, "
                                              "vhs, real or a mix such as dvd:0.6,web:0.4; "
                                              "reproducible from --seed.")] = "clean",
    seed: Annotated[int, typer.Option(help="Seed of the degradation (image i uses (seed, i)).")] = 0,
    crop: Annotated[int | None, typer.Option(
        help="Centre-crop each HR image to N pixels first (at least 16 × scale).")] = None,
    tile: Annotated[int | None, typer.Option(help="Tile size in input pixels (exact for A2N).")] = None,
    device: DeviceOption = "auto",
    backend: BackendOption = "auto",
    precision: PrecisionOption = "auto",
    tta: TtaOption = False,
    compiled: CompileOption = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the numbers to this JSON file.")] = None,
    save_pairs_to: Annotated[Path | None, typer.Option(
        "--save-pairs", help="Also write each HR crop and the LR it was scored on as DIR/hr/NAME.png and "
                             "DIR/lr/NAME.png, to score other tools on exactly the same input.")] = None,
) -> None:
    """Make the LR of each HR image (bicubic or degraded), upscale it, and compare with the HR image."""
    from animesr.data.degrade import parse_preset
    from animesr.inference.upscaler import Upscaler
    from animesr.model.a2n import SUPPORTED_SCALES
    from animesr.pretrained import check_model_choice, model_choice, resolve_model
    from animesr.training.validation import (
        MIN_VALIDATION_LR, check_image_sizes, load_hr_images, mean_score, save_pairs, score_images,
    )

    def check_options() -> InferenceSettings:
        problems = [
            (scale not in SUPPORTED_SCALES, f"--scale must be 2, 3 or 4, not {scale}"),
            (seed < 0, f"--seed must be 0 or more, not {seed}"),
            (crop is not None and crop < MIN_VALIDATION_LR * scale,
             f"--crop must be at least {MIN_VALIDATION_LR * scale} pixels at x{scale}"),
        ]
        for failed, message in problems:
            if failed:
                raise UsageError(message)
        try:
            parse_preset(degrade)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if json_path is not None:
            _check_json_path(json_path)
        if save_pairs_to is not None:
            _check_pairs_folder(save_pairs_to)
        try:
            return InferenceSettings(device=device, tile=tile, tta=tta, backend=backend, precision=precision,
                                     compile=compiled)
        except ValueError as error:
            raise UsageError(str(error)) from None

    settings = guarded(check_options)
    chosen, second = guarded(lambda: (model_choice(model), model_choice(compare, "--compare")))
    guarded(lambda: check_model_choice(chosen, scale, denoise))
    preset = parse_preset(degrade)

    left_out: list[str] = []

    def leave_out(message: str) -> None:
        warn(message)
        left_out.append(message)

    def run() -> None:
        models = [resolve_model(chosen, scale, denoise)]
        if compare is not None:
            models.append(resolve_model(second, scale))
        upscalers = [Upscaler(loaded, settings) for loaded in models]
        note(f"x{scale}, model {models[0].source}, {upscalers[0].describe()}")
        images = check_image_sizes(load_hr_images(list(hr), crop, skip=leave_out, warn=warn), scale, skip=leave_out)
        if save_pairs_to is not None:
            save_pairs(images, scale, preset, seed, save_pairs_to)
        with progress_bar() as progress:
            task = progress.add_task("evaluating", total=len(images) * len(upscalers))
            results = []
            for number, upscaler in enumerate(upscalers):
                def advance(done: int, total: int, base: int = number * len(images)) -> None:
                    progress.update(task, completed=base + done)

                results.append(score_images(images, upscaler, advance, preset=preset, seed=seed))
        names = [loaded.label for loaded in models]
        _print_table(results, names, scale, degrade, seed, tta)
        if json_path:
            payload = {"scale": scale, "model": models[0].source, "crop": crop, "tta": tta,
                       "degrade": degrade, "seed": seed,
                       "images": [asdict(s) for s in results[0]], "mean": asdict(mean_score(results[0]))}
            if len(results) > 1:
                payload["compare"] = {"model": models[1].source,
                                      "images": [asdict(s) for s in results[1]],
                                      "mean": asdict(mean_score(results[1]))}
            write_bytes_atomically(json_path, json.dumps(payload, indent=2).encode())

    guarded(run)
    if left_out:  # as a folder job with failed files: the scores stand, the exit code says what is missing
        raise fail(f"{len(left_out)} image(s) left out of the scores (above)", 1)


def _check_json_path(path: Path) -> None:
    """A report: an earlier .json is replaced, anything else (an input image, a folder) never is."""
    if path.suffix.lower() != ".json":
        raise UsageError(f"--json must name a .json file, not {path}")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    require_folder_for(path)
    check_writable_folder(path.parent)


def _check_pairs_folder(folder: Path) -> None:
    """New or empty DIR/hr and DIR/lr only: pairs are never mixed with, or written over, other files."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--save-pairs: {folder} is a file")
    if not folder.exists() and not folder.parent.is_dir():
        raise OutputError(f"--save-pairs: cannot make {folder}: folder {folder.parent} does not exist")
    for kind in ("hr", "lr"):
        if (folder / kind).exists() and (not (folder / kind).is_dir() or any((folder / kind).iterdir())):
            raise OutputError(f"--save-pairs: {folder / kind} is not empty; choose a new or empty folder")
    check_writable_folder(folder)


def _print_table(results, names: list[str], scale: int, degrade: str, seed: int, tta: bool) -> None:
    from animesr.training.validation import mean_score

    lr = "bicubic LR" if degrade == "clean" else f"{degrade} LR, seed {seed}"
    table = Table(title=f"x{scale} · {lr}{' · TTA ×8' if tta else ''} · Y channel, border {scale}")
    columns = ["image", "bicubic PSNR", "bicubic SSIM"]
    for name in names:
        columns += [f"{name} PSNR", f"{name} SSIM", "gain dB"]
    for column in columns:
        table.add_column(column, justify="left" if column == "image" else "right")
    rows = [list(per_image) for per_image in zip(*results)] + [[mean_score(r) for r in results]]
    for index, scores in enumerate(rows):
        first = scores[0]
        cells = [first.name if index < len(rows) - 1 else "mean", f"{first.bicubic_psnr:.2f}",
                 f"{first.bicubic_ssim:.4f}"]
        for s in scores:
            cells += [f"{s.psnr:.2f}", f"{s.ssim:.4f}", f"{s.psnr - s.bicubic_psnr:+.2f}"]
        table.add_row(*cells, end_section=index == len(rows) - 2)
    console.print(table)
