"""animesr train: A2N on an HDF5 dataset, resumable."""

from __future__ import annotations

import signal
from pathlib import Path

import typer
from rich.progress import TextColumn

from animesr.cli import app
from animesr.cli.common import guarded, note, progress_bar
from animesr.config import TrainSettings


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_cleanly_on_signals() -> None:
    """Ctrl-C and SIGTERM (a service manager, `kill`) both save a resumable state. SIGINT is
    re-armed because a shell may start background jobs with it ignored."""
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)


@app.command("train")
def train(
    data: Path = typer.Option(..., help="HDF5 file from `animesr prepare`."),
    scale: int = typer.Option(..., help="Upscaling factor: 2, 3 or 4."),
    out: Path = typer.Option(..., help="Run folder: best/last checkpoints, state, metrics, plot."),
    iters: int = typer.Option(100_000, help="Total optimiser steps."),
    batch_size: int = typer.Option(32, help="Global batch (split across processes under torchrun)."),
    patch: int = typer.Option(64, help="LR patch size in pixels (HR = patch × scale)."),
    min_detail: float = typer.Option(
        2.0, help="Redraw flat LR patches: mean absolute gradient under N grey levels (0 keeps all)."),
    lr: float = typer.Option(5e-4, help="Adam learning rate; halved at 50%, 75% and 90% of --iters."),
    val: Path = typer.Option(None, help="Folder of HR images for validation."),
    val_every: int = typer.Option(1000, help="Validate every N steps."),
    val_crop: int = typer.Option(None, help="Centre-crop validation images to N pixels (faster)."),
    checkpoint_every: int = typer.Option(100, help="Write last.safetensors and the resumable state every N steps."),
    init: Path = typer.Option(None, help="Start from this checkpoint, taking every tensor whose shape fits."),
    resume: bool = typer.Option(False, help="Continue the run in --out exactly where it stopped."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(2, help="DataLoader worker processes."),
    seed: int = typer.Option(0, help="Seed for weights and patch sampling."),
    ema: float = typer.Option(0.999, help="EMA decay of the weights (0 disables)."),
    amp: str = typer.Option("auto", help="Mixed precision on CUDA: auto (bf16), bf16, fp16, off."),
    channels: int = typer.Option(40, help="Trunk channels (A2N: 40)."),
    up_channels: int = typer.Option(24, help="Reconstruction channels (A2N: 24)."),
    blocks: int = typer.Option(16, help="Attention-in-attention blocks (A2N: 16)."),
    degrade: str = typer.Option("clean", help="LR made on the fly from the HR crop: clean (bicubic), dvd, web, vhs or real (a mix)."),
    clean_share: float = typer.Option(0.25, help="With --degrade other than clean: share of samples kept clean (0..1)."),
    sharpen_target: float = typer.Option(0.0, help="Unsharp-mask the HR targets with this weight (0 off; 0.5 typical)."),
) -> None:
    """Train A2N: Adam, Charbonnier loss on [0, 1] pixels, EMA, best-by-validation checkpoints."""
    from animesr.training.loop import TrainCallbacks, train as run_training

    settings = TrainSettings(
        data=data, scale=scale, out=out, iters=iters, batch_size=batch_size, patch=patch,
        min_detail=min_detail, lr=lr,
        val_dir=val, val_every=val_every, val_crop=val_crop, checkpoint_every=checkpoint_every,
        init=init, resume=resume, device=device, workers=workers, seed=seed,
        ema_decay=ema or None, amp=amp, channels=channels, up_channels=up_channels, blocks=blocks,
        degrade=degrade, clean_share=clean_share, sharpen_target=sharpen_target,
    )

    def run() -> None:
        _stop_cleanly_on_signals()
        with progress_bar(TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
                          TextColumn("val {task.fields[psnr]}")) as progress:
            task = progress.add_task("training", total=iters, loss="-", speed="-", psnr="-")

            def on_step(step: int, loss: float, lr_now: float) -> None:
                speed = progress.tasks[task].speed
                progress.update(task, completed=step, loss=f"{loss:.5f}",
                                speed=f"{speed:.2f} it/s" if speed else "-")

            def on_validation(step: int, psnr: float, ssim: float, best: bool) -> None:
                progress.update(task, psnr=f"{psnr:.2f} dB{' (best)' if best else ''}")

            callbacks = TrainCallbacks(
                on_start=lambda start, total: progress.update(task, completed=start, total=total),
                on_step=on_step, on_validation=on_validation, on_notice=lambda m: progress.console.print(m),
            )
            result = run_training(settings, callbacks)
        best = f", best validation {result.best_psnr:.2f} dB" if result.best_psnr is not None else ""
        note(f"finished at step {result.step}{best}; models in {out}/best.safetensors and last.safetensors")

    guarded(run)
