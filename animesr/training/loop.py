"""train(settings, callbacks): Adam + Charbonnier on random HDF5 patches, EMA, validation,
atomic checkpoints, exact resume, AMP on CUDA and DDP under torchrun.

Pixel values are in [0, 1] throughout training (the saved checkpoints say so), and the
Charbonnier loss `mean(sqrt((sr - hr)² + eps²))` is applied on that range.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from animesr.checkpoint import LoadedModel, load_checkpoint, on_unit_range, save_checkpoint
from animesr.config import InferenceSettings, TrainSettings
from animesr.data.dataset import PairedPatches, StepSampler
from animesr.data.degrade import PRESETS, Degradation
from animesr.errors import CheckpointError, TrainingError, TrainingInterrupted
from animesr.inference.upscaler import Upscaler
from animesr.model import A2N, A2NConfig
from animesr.training import distributed
from animesr.training.plot import write_plot
from animesr.training.state import STATE_NAME, load_state, random_states, restore_random_states, save_state
from animesr.training.validation import load_hr_images, mean_score, score_images

VALUE_RANGE = 1.0
AMP_MODES = ("auto", "off", "bf16", "fp16")
LOG_NAME = "metrics.jsonl"
VALIDATION_SEED = 0  # the degraded validation LR is the same at every validation and in `evaluate --seed 0`


@dataclass
class TrainCallbacks:
    on_start: Callable[[int, int], None] = lambda start, total: None
    on_step: Callable[[int, float, float], None] = lambda step, loss, lr: None
    on_validation: Callable[[int, float, float, bool], None] = lambda step, psnr, ssim, best: None
    on_notice: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class TrainResult:
    step: int
    last_loss: float
    best_psnr: float | None
    losses: tuple[float, ...] = field(default_factory=tuple)


def learning_rate(step: int, settings: TrainSettings) -> float:
    """--lr halved at each milestone (fractions of --iters) already reached. A pure function of
    the step, so a run resumed with a larger --iters follows the new schedule."""
    passed = sum(step >= max(1, int(f * settings.iters)) for f in settings.lr_milestones)
    return settings.lr * 0.5**passed


def charbonnier(sr: torch.Tensor, hr: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt((sr - hr) ** 2 + eps**2).mean()


class _Run:
    """The mutable parts of one training run, built from settings (fresh, --init or --resume)."""

    def __init__(self, settings: TrainSettings, processes: distributed.Processes) -> None:
        self.settings, self.processes = settings, processes
        torch.manual_seed(settings.seed)
        self.config = A2NConfig(scale=settings.scale, channels=settings.channels,
                                up_channels=settings.up_channels, blocks=settings.blocks)
        # channels-last: 1.5–1.8× faster A2N convolutions on the CPU (benchmarks/bench_upscale.py)
        self.model = A2N(self.config).to(processes.device, memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if settings.ema_decay else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.autocast = _autocast(settings.amp, processes.device)
        self.scaler = torch.amp.GradScaler(enabled=self.autocast == torch.float16)
        self.step = 0
        self.best_psnr: float | None = None
        self.init_note = ""
        self.segments: list[dict[str, Any]] = []  # one per start or resume: what each ran with

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "step": self.step,
            "best_psnr": self.best_psnr,
            "config": asdict(self.config),
            "random": random_states(),
            "segments": self.segments,
        }

    def restore(self, state: dict[str, Any]) -> None:
        if state["config"] != asdict(self.config):
            raise TrainingError(f"the run in {self.settings.out} is {state['config']}, not {asdict(self.config)}")
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            # a run that trained without EMA starts averaging from its current weights
            self.ema.load_state_dict(state["ema"] if state["ema"] is not None else state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.step, self.best_psnr = state["step"], state["best_psnr"]
        self.segments = list(state.get("segments", []))
        restore_random_states(state["random"])

    def start_segment(self) -> None:
        s = self.settings
        self.segments.append({
            "from_step": self.step, "iters": s.iters, "batch_size": s.batch_size, "patch": s.patch,
            "min_detail": s.min_detail, "lr": s.lr, "ema_decay": s.ema_decay, "processes": self.processes.world,
            "degrade": s.degrade, "clean_share": s.clean_share, "sharpen_target": s.sharpen_target,
        })

    def initialise_from(self, path: Path) -> None:
        source = on_unit_range(_load_for_init(path, self.config.scale))
        ours = self.model.state_dict()
        fitting = {k: v for k, v in source.state_dict().items() if k in ours and ours[k].shape == v.shape}
        self.model.load_state_dict(fitting, strict=False)
        if self.ema is not None:
            self.ema.load_state_dict(self.model.state_dict())
        self.init_note = f"initialised {len(fitting)} of {len(ours)} tensors from {path.name}"

    def update_ema(self) -> None:
        if self.ema is None:
            return
        decay = min(self.settings.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for averaged, current in zip(self.ema.parameters(), self.model.parameters()):
                averaged.lerp_(current, 1.0 - decay)

    def export_model(self) -> A2N:
        return self.ema if self.ema is not None else self.model


def _load_for_init(path: Path, scale: int) -> LoadedModel:
    """Ours say their scale. The authors' files do not: an x4 file loads as x4, any other as
    x2 (x2 and x3 files share every tensor shape); only the fitting tensors are used anyway."""
    if path.suffix == ".safetensors":
        return load_checkpoint(path)
    try:
        return load_checkpoint(path, scale=scale)
    except CheckpointError:
        return load_checkpoint(path, scale=2 if scale == 4 else 4)


def train(settings: TrainSettings, callbacks: TrainCallbacks = TrainCallbacks()) -> TrainResult:
    processes = distributed.start_processes(settings.device)
    try:
        return _train(settings, callbacks, processes)
    finally:
        distributed.stop_processes(processes)


def _prepare_run(settings: TrainSettings, processes: distributed.Processes) -> _Run:
    has_state = (settings.out / STATE_NAME).is_file()
    if settings.resume and not has_state:
        raise TrainingError(f"{settings.out} has no training state to resume ({STATE_NAME} missing)")
    if has_state and not settings.resume:
        raise TrainingError(f"{settings.out} already holds a run: pass --resume to continue it, or another --out")
    run = _Run(settings, processes)
    if settings.resume:
        run.restore(load_state(settings.out))
    elif settings.init:
        run.initialise_from(settings.init)
    run.start_segment()
    return run


def _train(settings: TrainSettings, callbacks: TrainCallbacks, processes: distributed.Processes) -> TrainResult:
    _check_settings(settings, processes.world)
    dataset = PairedPatches(settings.data, settings.scale, settings.patch, settings.seed, settings.min_detail,
                            degradation=Degradation(PRESETS[settings.degrade], settings.clean_share),
                            sharpen=settings.sharpen_target)
    validation_images = load_hr_images([settings.val_dir], settings.val_crop) if settings.val_dir else None
    settings.out.mkdir(parents=True, exist_ok=True)
    run = _prepare_run(settings, processes)
    if run.init_note:
        callbacks.on_notice(run.init_note)
    network: nn.Module = run.model
    if processes.world > 1:
        network = DistributedDataParallel(run.model, device_ids=[processes.device.index]
                                          if processes.device.type == "cuda" else None)
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size // processes.world,
        sampler=StepSampler(run.step, settings.iters, settings.batch_size, processes.rank, processes.world),
        num_workers=settings.workers,
        pin_memory=processes.device.type == "cuda",
        persistent_workers=False,
        worker_init_fn=_leave_termination_to_the_main_process,
    )
    autocast, scaler = run.autocast, run.scaler
    callbacks.on_start(run.step, settings.iters)
    losses: list[float] = []
    log = _MetricsLog(settings.out / LOG_NAME) if processes.is_main else None
    loss_value = math.nan
    try:
        for lr_batch, hr_batch in loader:
            lr_now = learning_rate(run.step, settings)
            for group in run.optimizer.param_groups:
                group["lr"] = lr_now
            lr_batch = lr_batch.to(processes.device, non_blocking=True, memory_format=torch.channels_last)
            hr_batch = hr_batch.to(processes.device, non_blocking=True, memory_format=torch.channels_last)
            with torch.autocast(processes.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                sr = network(lr_batch)
            loss = charbonnier(sr.float(), hr_batch, settings.charbonnier_eps)
            run.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(run.optimizer)
            scaler.update()
            run.step += 1
            run.update_ema()
            loss_value = float(distributed.mean_across(loss.detach(), processes))
            if not math.isfinite(loss_value):
                raise TrainingError(f"the loss became {loss_value} at step {run.step}; lower --lr")
            losses.append(loss_value)
            if log:
                log.write({"step": run.step, "loss": loss_value, "lr": lr_now})
            callbacks.on_step(run.step, loss_value, lr_now)
            if validation_images and (run.step % settings.val_every == 0 or run.step == settings.iters):
                _validate(run, validation_images, settings, callbacks, log)
            if run.step % settings.checkpoint_every == 0 or run.step == settings.iters:
                _save(run, settings)
    except KeyboardInterrupt:
        _save(run, settings)
        raise TrainingInterrupted(
            f"stopped at step {run.step}; state saved in {settings.out}, continue with --resume"
        ) from None
    return TrainResult(run.step, loss_value, run.best_psnr, tuple(losses))


def _leave_termination_to_the_main_process(worker_id: int) -> None:
    """`kill` on the whole process group must not kill workers mid-batch: the main process
    saves a resumable state and then shuts its workers down."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_settings(s: TrainSettings, processes: int = 1) -> None:
    problems = [
        (s.batch_size % processes != 0, f"--batch-size {s.batch_size} does not split across {processes} processes"),
        (s.iters < 1, "--iters must be at least 1"),
        (s.batch_size < 1, "--batch-size must be at least 1"),
        (s.patch < 4, "--patch must be at least 4 LR pixels"),
        (s.min_detail < 0, "--min-detail cannot be negative"),
        (not s.lr > 0, "--lr must be positive"),
        (s.val_every < 1, "--val-every must be at least 1"),
        (s.workers < 0, "--workers cannot be negative"),
        (s.checkpoint_every < 1, "--checkpoint-every must be at least 1"),
        (s.amp not in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}"),
        (s.degrade not in PRESETS, f"--degrade must be one of {', '.join(PRESETS)}"),
        (not 0 <= s.clean_share <= 1, "--clean-share must be between 0 and 1"),
        (not 0 <= s.sharpen_target <= 2, "--sharpen-target must be between 0 and 2"),
    ]
    for failed, message in problems:
        if failed:
            raise TrainingError(message)


def _autocast(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    return {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _validate(run: _Run, images, settings: TrainSettings, callbacks: TrainCallbacks,
              log: _MetricsLog | None) -> None:
    if run.processes.is_main:
        model = copy.deepcopy(run.export_model()).float()
        loaded = LoadedModel(model=model.eval(), value_range=VALUE_RANGE, source="validation")
        device = str(run.processes.device)
        scores = score_images(images, Upscaler(loaded, InferenceSettings(device=device, precision="fp32")),
                              preset=PRESETS[settings.degrade], seed=VALIDATION_SEED)
        mean = mean_score(scores)
        is_best = run.best_psnr is None or mean.psnr > run.best_psnr
        if is_best:
            run.best_psnr = mean.psnr
            save_checkpoint(settings.out / "best.safetensors", run.export_model(), VALUE_RANGE,
                            _provenance(run, settings, mean.psnr))
        if log:
            log.write({"step": run.step, "val_psnr": mean.psnr, "val_ssim": mean.ssim,
                       "val_bicubic_psnr": mean.bicubic_psnr})
            write_plot(settings.out / LOG_NAME, settings.out / "plot.png")
        callbacks.on_validation(run.step, mean.psnr, mean.ssim, is_best)
    distributed.barrier(run.processes)


def _save(run: _Run, settings: TrainSettings) -> None:
    if run.processes.is_main:
        provenance = _provenance(run, settings, run.best_psnr)
        save_checkpoint(settings.out / "last.safetensors", run.export_model(), VALUE_RANGE, provenance)
        save_state(settings.out, run.state())
        if settings.val_dir is None:  # otherwise validation keeps the best and redraws the plot
            save_checkpoint(settings.out / "best.safetensors", run.export_model(), VALUE_RANGE, provenance)
            write_plot(settings.out / LOG_NAME, settings.out / "plot.png")
    distributed.barrier(run.processes)


def _provenance(run: _Run, settings: TrainSettings, val_psnr: float | None) -> dict[str, Any]:
    return {
        "step": run.step,
        "data": settings.data.name,
        "iters": settings.iters,
        "batch_size": settings.batch_size,
        "patch": settings.patch,
        "min_detail": settings.min_detail,
        "lr": settings.lr,
        "lr_milestones": list(settings.lr_milestones),
        "seed": settings.seed,
        "ema_decay": settings.ema_decay,
        "loss": f"charbonnier eps={settings.charbonnier_eps} on [0,1]",
        "degrade": settings.degrade,
        "clean_share": settings.clean_share if settings.degrade != "clean" else None,
        "sharpen_target": settings.sharpen_target,
        "validation": f"degrade={settings.degrade} seed={VALIDATION_SEED}",
        "init": settings.init.name if settings.init else None,
        "val_psnr": val_psnr,
        "processes": run.processes.world,
        "segments": run.segments,
    }


class _MetricsLog:
    """JSON lines, one record per step or validation; appends across resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.time()

    def write(self, record: dict[str, Any]) -> None:
        record = {**record, "time": round(time.time() - self.started, 3)}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
