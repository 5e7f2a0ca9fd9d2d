"""animesr evaluate: Y-PSNR and SSIM of a model against bicubic on HR images."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from animesr.cli import app
from animesr.cli.common import console, guarded, progress_bar
from animesr.config import InferenceSettings
from animesr.imaging import write_bytes_atomically


@app.command("evaluate")
def evaluate(
    hr: list[Path] = typer.Argument(..., help="HR images or folders (walked recursively)."),
    scale: int = typer.Option(..., help="Upscaling factor: 2, 3 or 4."),
    model: Path = typer.Option(None, help="Checkpoint (ours or the A2N authors'); default: the shipped model."),
    crop: int = typer.Option(None, help="Centre-crop each HR image to N pixels first."),
    tile: int = typer.Option(None, help="Tile size in input pixels (exact for A2N)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    tta: bool = typer.Option(False, "--tta", help="Self-ensemble: average the model over the 8 rotations/mirrors (8× slower, slightly more accurate)."),
    json_path: Path = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
) -> None:
    """Make the bicubic LR of each HR image, upscale it, and compare with the HR image."""
    from animesr.inference.upscaler import Upscaler
    from animesr.pretrained import resolve_model
    from animesr.training.validation import load_hr_images, mean_score, score_images

    def run() -> None:
        loaded = resolve_model(model, scale)
        upscaler = Upscaler(loaded, InferenceSettings(device=device, tile=tile, tta=tta))
        images = load_hr_images(list(hr), crop)
        with progress_bar() as progress:
            task = progress.add_task("evaluating", total=len(images))
            scores = score_images(images, upscaler, lambda done, total: progress.update(task, completed=done))
        rows = [*scores, mean_score(scores)]
        table = Table(title=f"x{scale} · {Path(loaded.source).name}{' · TTA ×8' if tta else ''} · Y channel, border {scale}")
        for column in ("image", "bicubic PSNR", "bicubic SSIM", "model PSNR", "model SSIM", "gain dB"):
            table.add_column(column, justify="left" if column == "image" else "right")
        for r in rows:
            table.add_row(r.name, f"{r.bicubic_psnr:.2f}", f"{r.bicubic_ssim:.4f}", f"{r.psnr:.2f}",
                          f"{r.ssim:.4f}", f"{r.psnr - r.bicubic_psnr:+.2f}", end_section=r.name == scores[-1].name)
        console.print(table)
        if json_path:
            payload = {"scale": scale, "model": loaded.source, "crop": crop, "tta": tta,
                       "images": [asdict(s) for s in scores], "mean": asdict(rows[-1])}
            write_bytes_atomically(json_path, json.dumps(payload, indent=2).encode())

    guarded(run)
