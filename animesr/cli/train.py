"""animesr train: A2N on an HDF5 dataset, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TextColumn

from animesr.cli import app
from animesr.cli.common import guarded, note, progress_bar
from animesr.config import TrainSettings


@app.command("train")
def train(
    data: Annotated[Path, typer.Option(help="HDF5 file from `animesr prepare`.")],
    scale: Annotated[int, typer.Option(help="Upscaling factor: 2, 3 or 4.")],
    out: Annotated[Path, typer.Option(help="Run folder: best/last checkpoints, state, metrics, plot.")],
    iters: Annotated[int, typer.Option(help="Total optimiser steps.")] = 100_000,
    batch_size: Annotated[int, typer.Option(help="Global batch (split across processes under torchrun).")] = 32,
    patch: Annotated[int, typer.Option(help="LR patch size in pixels (HR = patch × scale).")] = 64,
    min_detail: Annotated[float, typer.Option(
        help="Redraw flat LR patches: mean absolute gradient under N grey levels (0 keeps all).")] = 2.0,
    lr: Annotated[float, typer.Option(help="Adam learning rate; halved at 50%, 75% and 90% of --iters.")] = 5e-4,
    val: Annotated[Path | None, typer.Option(help="Folder of HR images for validation.")] = None,
    val_every: Annotated[int, typer.Option(help="Validate every N steps.")] = 1000,
    val_crop: Annotated[int | None, typer.Option(
        help="Centre-crop validation images to N pixels (faster; at least 16 × scale).")] = None,
    checkpoint_every: Annotated[int, typer.Option(
        help="Write last.safetensors and the resumable state every N steps.")] = 100,
    init: Annotated[Path | None, typer.Option(
        help="Start from this checkpoint, taking every tensor whose shape fits.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.")] = False,
    new_data: Annotated[bool, typer.Option(
        help="With --resume: continue on a --data file whose samples differ from the run's so far "
             "(otherwise refused; the checkpoints record each segment's data).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed for weights and patch sampling.")] = 0,
    ema: Annotated[float, typer.Option(help="EMA decay of the weights, in [0, 1) (0 disables).")] = 0.999,
    amp: Annotated[str, typer.Option(help="Mixed precision on CUDA: auto (bf16), bf16, fp16, off.")] = "auto",
    channels: Annotated[int, typer.Option(help="Trunk channels (A2N: 40).")] = 40,
    up_channels: Annotated[int, typer.Option(help="Reconstruction channels (A2N: 24).")] = 24,
    blocks: Annotated[int, typer.Option(help="Attention-in-attention blocks (A2N: 16).")] = 16,
    degrade: Annotated[str, typer.Option(
        help="LR made on the fly from the HR crop: clean (bicubic), dvd, web, vhs, real (a mix), "
             "or your own mix such as dvd:0.6,web:0.3,vhs:0.1.")] = "clean",
    clean_share: Annotated[float, typer.Option(
        help="With --degrade other than clean: share of samples kept clean (0..1).")] = 0.35,
    sharpen_target: Annotated[float, typer.Option(
        help="Unsharp-mask the HR targets with this weight (0 off; 0.5 typical).")] = 0.0,
    gan_weight: Annotated[float, typer.Option(
        help="Adversarial stage: weight of a U-Net discriminator's loss beside the pixel loss "
             "(0 off; 0.01–0.1 typical, fine-tuning a trained model with --init).")] = 0.0,
    gan_lr: Annotated[float, typer.Option(help="The discriminator's learning rate.")] = 1e-4,
) -> None:
    """Train A2N: Adam, Charbonnier loss on [0, 1] pixels, EMA, best-by-validation checkpoints.

    Ctrl-C, SIGTERM or SIGHUP stops at the next step, saves a resumable state and exits (130, 143, 129)."""
    from animesr.errors import TrainingInterrupted
    from animesr.training import distributed
    from animesr.training.loop import TrainCallbacks, check_settings, train as run_training

    settings = TrainSettings(
        data=data, scale=scale, out=out, iters=iters, batch_size=batch_size, patch=patch,
        min_detail=min_detail, lr=lr,
        val_dir=val, val_every=val_every, val_crop=val_crop, checkpoint_every=checkpoint_every,
        init=init, resume=resume, new_data=new_data, device=device, workers=workers, seed=seed,
        ema_decay=ema or None, amp=amp, channels=channels, up_channels=up_channels, blocks=blocks,
        degrade=degrade, clean_share=clean_share, sharpen_target=sharpen_target,
        gan_weight=gan_weight, gan_lr=gan_lr,
    )
    guarded(lambda: check_settings(settings, distributed.world_size()))

    def run() -> None:
        with progress_bar(TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
                          TextColumn("val {task.fields[psnr]}"), show=main, opened=False) as progress:
            task = None  # the bar opens once the data, --init, --val and the run folder have been checked

            def on_start(start: int, total: int) -> None:
                nonlocal task
                task = progress.add_task("training", total=total, completed=start, loss="-", speed="-", psnr="-")
                progress.start()

            def on_step(step: int, loss: float, lr_now: float) -> None:
                speed = progress.tasks[task].speed
                progress.update(task, completed=step, loss=f"{loss:.5f}",
                                speed=f"{speed:.2f} it/s" if speed else "-")

            def on_validation(step: int, psnr: float, ssim: float, best: bool) -> None:
                progress.update(task, psnr=f"{psnr:.2f} dB{' (best)' if best else ''}")

            callbacks = TrainCallbacks(on_start=on_start, on_step=on_step, on_validation=on_validation,
                                       note=note)
            result = run_training(settings, callbacks)
        best = f", best validation {result.best_psnr:.2f} dB" if result.best_psnr is not None else ""
        if main:
            note(f"finished at step {result.step}{best}; models in {out}/best.safetensors and last.safetensors")

    def run_quietly() -> None:  # the other torchrun processes: the first one speaks for the run
        try:
            run()
        except TrainingInterrupted as stopped:
            raise typer.Exit(stopped.exit_code) from None

    main = distributed.launched_rank() == 0
    guarded(run if main else run_quietly)
