"""train(settings, callbacks): Adam + Charbonnier on random HDF5 patches (and an optional
adversarial loss: adversarial.py), EMA, validation, atomic checkpoints, exact resume, AMP on CUDA
and DDP under torchrun.

Pixel values are in [0, 1] throughout training (the saved checkpoints say so), and the
Charbonnier loss `mean(sqrt((sr - hr)² + eps²))` is applied on that range.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from animesr import stopping
from animesr.atomic import replaced_together
from animesr.callbacks import JobCallbacks, ignore
from animesr.checkpoint import (SHAPE_LIMITS, LoadedModel, load_checkpoint, on_unit_range, save_checkpoint,
                                training_record)
from animesr.config import InferenceSettings, TrainSettings
from animesr.data.dataset import PairedPatches, StepSampler
from animesr.data.degrade import Degradation, parse_preset
from animesr.errors import CheckpointError, OutputError, TrainingError, TrainingInterrupted, UsageError
from animesr.inference.upscaler import Upscaler
from animesr.model import A2N, A2NConfig
from animesr.model.a2n import SUPPORTED_SCALES
from animesr.training import distributed
from animesr.training.adversarial import Adversary
from animesr.training.plot import write_plot
from animesr.training.state import STATE_NAME, load_state, random_states, restore_random_states, write_state
from animesr.training.validation import (
    MIN_VALIDATION_LR, check_image_sizes, load_hr_images, mean_score, score_images,
)

VALUE_RANGE = 1.0
AMP_MODES = ("auto", "off", "bf16", "fp16")
LOG_NAME = "metrics.jsonl"
VALIDATION_SEED = 0  # the degraded validation LR is the same at every validation and in `evaluate --seed 0`


@dataclass(frozen=True)
class TrainCallbacks(JobCallbacks):
    on_start: Callable[[int, int], None] = ignore  # step to start from, total steps
    on_step: Callable[[int, float, float], None] = ignore  # step, loss, learning rate
    on_validation: Callable[[int, float, float, bool], None] = ignore  # step, PSNR, SSIM, is best


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
        self.adversary = (Adversary(settings.gan_lr, processes.device, processes.world > 1)
                          if settings.gan_weight else None)
        self.step = 0
        self.best_psnr: float | None = None
        self.validated: tuple[int, float] | None = None  # (step, PSNR) of the latest validation
        self.origin: str | None = None  # the --init file the run started from, kept across resumes
        self.notes: list[str] = []  # for the user, once the run has started
        self.segments: list[dict[str, Any]] = []  # one per start or resume: what each ran with

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "step": self.step,
            "best_psnr": self.best_psnr,
            "validated": self.validated,
            "init": self.origin,
            "config": asdict(self.config),
            "random": random_states(),
            "segments": self.segments,
            "adversary": self.adversary.state() if self.adversary else None,
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
        self.validated = tuple(state["validated"]) if state.get("validated") else None
        self.origin = state.get("init")
        self.segments = list(state.get("segments", []))
        restore_random_states(state["random"])
        if self.adversary is not None and state.get("adversary"):
            self.adversary.restore(state["adversary"])
        elif self.adversary is not None:
            self.notes.append("the adversarial stage starts here: a new discriminator")
        elif state.get("adversary"):
            self.notes.append("--gan-weight 0: this run's discriminator is dropped (the stage ends here)")

    def start_segment(self, data_id: str) -> None:
        s = self.settings
        previous = self.segments[-1] if self.segments else None
        segment = {
            "from_step": self.step, "iters": s.iters, "data": s.data.name, "data_id": data_id,
            "batch_size": s.batch_size, "patch": s.patch,
            "min_detail": s.min_detail, "lr": s.lr, "ema_decay": s.ema_decay, "processes": self.processes.world,
            "degrade": s.degrade, "clean_share": s.clean_share, "sharpen_target": s.sharpen_target,
            "gan_weight": s.gan_weight, "gan_lr": s.gan_lr if s.gan_weight else None,
        }
        if previous:
            self._compare_data(previous, segment)
            self._note_changed_settings(previous, segment)
        self.segments.append(segment)

    def _compare_data(self, previous: dict[str, Any], segment: dict[str, Any]) -> None:
        """Other samples end an exact resume: refused unless --new-data says it is meant. The same
        samples under another name (a moved file) are the same data. Segments written before data
        was recorded cannot be compared."""
        if previous.get("data_id") is None:
            self.notes.append(f"{_steps(previous, segment)} predate data ids: --data "
                              f"{segment['data']} cannot be compared with the data it was trained on")
            return
        if previous["data_id"] == segment["data_id"]:
            return
        before = f"{previous.get('data')} (id {previous['data_id']})"
        now = f"{segment['data']} (id {segment['data_id']})"
        if not self.settings.new_data:
            raise TrainingError(f"{self.settings.out} was trained on {before}; {now} holds other samples: "
                                "pass --new-data to continue this run on it")
        self.notes.append(f"resumed on other data than {_steps(previous, segment)}: {before} → {now}")

    def _note_changed_settings(self, previous: dict[str, Any], segment: dict[str, Any]) -> None:
        unnoted = ("from_step", "iters", "data", "data_id")  # iters may grow; the data has its own check
        changed = [f"{key} {previous[key]} → {value}" for key, value in segment.items()
                   if key not in unnoted and key in previous and previous[key] != value]
        if changed:
            self.notes.append(f"resumed with other settings than {_steps(previous, segment)}: {', '.join(changed)}")

    def initialise_from(self, path: Path) -> None:
        source = on_unit_range(_load_for_init(path, self.config.scale))
        ours = self.model.state_dict()
        fitting = {k: v for k, v in source.state_dict().items() if k in ours and ours[k].shape == v.shape}
        self.model.load_state_dict(fitting, strict=False)
        if self.ema is not None:
            self.ema.load_state_dict(self.model.state_dict())
        self.origin = path.name
        self.notes.append(f"initialised {len(fitting)} of {len(ours)} tensors from {path.name}")
        if source.scale != self.config.scale:
            self.notes.append(f"{path.name} is an x{source.scale} model and this run is x{self.config.scale}: "
                              "its upsampler starts from another scale's weights")

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
    """Ctrl-C or SIGTERM stops the run at the next step boundary (see animesr.stopping), saves a
    resumable state and raises TrainingInterrupted."""
    check_settings(settings, distributed.world_size())
    with stopping.stop_at_safe_points():
        processes = distributed.start_processes(settings.device)
        try:
            return _train(settings, callbacks, processes)
        finally:
            distributed.stop_processes(processes)


# what a run leaves beside its state, which a new run in the same folder would replace
_EARLIER_RUN_FILES = ("last.safetensors", "best.safetensors", LOG_NAME)


def _prepare_run(settings: TrainSettings, processes: distributed.Processes, data_id: str) -> _Run:
    _require_run_files_are_files(settings.out)
    has_state = (settings.out / STATE_NAME).exists()
    if settings.resume and not has_state:
        raise TrainingError(f"{settings.out} has no training state to resume ({STATE_NAME} missing)")
    if has_state and not settings.resume:
        raise TrainingError(f"{settings.out} already holds a run: pass --resume to continue it, or another --out")
    left = next((name for name in _EARLIER_RUN_FILES if (settings.out / name).exists()), None)
    if left is not None and not has_state:
        raise TrainingError(f"{settings.out} holds {left} of an earlier run without its {STATE_NAME}: a new run "
                            "would replace it; choose another --out or move it away")
    run = _Run(settings, processes)
    if settings.resume:
        run.restore(load_state(settings.out))
        run.best_psnr = _best_on_disk(settings.out, run.best_psnr, run.notes)
    elif settings.init:
        run.initialise_from(settings.init)
    run.start_segment(data_id)
    return run


def _steps(previous: dict[str, Any], segment: dict[str, Any]) -> str:
    """The steps the previous segment trained, which the new one continues: 'steps 10–20'."""
    return f"steps {previous['from_step']}–{segment['from_step']}"


def _require_run_files_are_files(out: Path) -> None:
    """A folder where the run writes a file would stop it at its first save, after steps were spent."""
    for name in (STATE_NAME, *_EARLIER_RUN_FILES, "plot.png"):
        path = out / name
        if path.exists() and not path.is_file():
            raise OutputError(f"{path} is not a file: remove it or choose another --out")


def _best_on_disk(out: Path, recorded: float | None, notes: list[str]) -> float | None:
    """A stop between writing best.safetensors and the next state leaves the file ahead of the state: the
    file's own validation PSNR counts, so a worse model never replaces it. A damaged file counts for
    nothing: the next validation writes a new one."""
    best = out / "best.safetensors"
    try:
        on_disk = training_record(best).get("val_psnr") if best.is_file() else None
    except CheckpointError as error:
        notes.append(f"{best} cannot be read ({error}); the next validation writes a new best")
        return None
    if on_disk is None:
        return recorded
    return on_disk if recorded is None else max(on_disk, recorded)


def _make_run_folder(out: Path) -> None:
    """Create the run folder and prove it takes a file, before any step is spent."""
    probe = out / f".write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputError(f"cannot write to the run folder {out}: {error.strerror or error}") from None


@contextmanager
def _writing(what: Path, after: str = "") -> Iterator[None]:
    """A failed write (a full disk, a file system gone read-only) as one OutputError line."""
    try:
        yield
    except (OSError, SafetensorError) as error:
        raise OutputError(f"cannot write {what}: {_reason(error)}{after}") from None


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)  # safetensors: "Error while serializing: I/O error: No space left on device (os error 28)"
    match = re.search(r"I/O error: (.+?) \(os error \d+\)", text)
    return match.group(1) if match else text.strip().splitlines()[0]


def _train(settings: TrainSettings, callbacks: TrainCallbacks, processes: distributed.Processes) -> TrainResult:
    dataset = PairedPatches(settings.data, settings.scale, settings.patch, settings.seed, settings.min_detail,
                            degradation=Degradation(parse_preset(settings.degrade), settings.clean_share),
                            sharpen=settings.sharpen_target)
    validation_images = None
    if settings.val_dir:
        validation_images = load_hr_images([settings.val_dir], settings.val_crop)
        check_image_sizes(validation_images, settings.scale)
    run = _prepare_run(settings, processes, dataset.content_id)
    _make_run_folder(settings.out)
    for message in run.notes if processes.is_main else ():  # under torchrun, said once
        callbacks.note(message)
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
    batches = iter(loader)
    try:
        for lr_batch, hr_batch in batches:
            lr_now = learning_rate(run.step, settings)
            for group in run.optimizer.param_groups:
                group["lr"] = lr_now
            lr_batch = lr_batch.to(processes.device, non_blocking=True, memory_format=torch.channels_last)
            hr_batch = hr_batch.to(processes.device, non_blocking=True, memory_format=torch.channels_last)
            with torch.autocast(processes.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                sr = network(lr_batch)
            loss = charbonnier(sr.float(), hr_batch, settings.charbonnier_eps)
            total, adversarial = loss, {}
            if run.adversary:
                fooling = run.adversary.generator_loss(sr)
                total = loss + settings.gan_weight * fooling
            run.optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(run.optimizer)
            scaler.update()
            if run.adversary:
                adversarial = {"g_adversarial": float(fooling.detach()), "d_loss": run.adversary.train_step(sr, hr_batch)}
            run.step += 1
            run.update_ema()
            loss_value = float(distributed.mean_across(loss.detach(), processes))
            _require_finite({"loss": loss_value, **adversarial}, run.step)
            losses.append(loss_value)
            if log:
                log.write({"step": run.step, "loss": loss_value, "lr": lr_now, **adversarial})
            callbacks.on_step(run.step, loss_value, lr_now)
            if validation_images and (run.step % settings.val_every == 0 or run.step == settings.iters):
                _validate(run, validation_images, settings, callbacks, log)
            if run.step % settings.checkpoint_every == 0 or run.step == settings.iters:
                _save(run, settings)
            # every process stops at the same step, or the others would wait for it forever
            if distributed.any_across(stopping.requested(), processes):
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        _shut_down(batches)
        _save(run, settings)
        raise TrainingInterrupted(
            f"stopped at step {run.step}; state saved in {settings.out}, continue with --resume",
            exit_code=stopping.exit_code(),
        ) from None
    finally:
        _shut_down(batches)
    return TrainResult(run.step, loss_value, run.best_psnr, tuple(losses))


def _shut_down(batches: Iterator) -> None:
    """Stop the DataLoader's workers now. Left to garbage collection, a worker could outlive the
    interrupted loop; at exit, multiprocessing then sends it SIGTERM, which workers ignore (below),
    and waits for it forever."""
    shut_down_workers = getattr(batches, "_shutdown_workers", None)
    if shut_down_workers is not None:
        shut_down_workers()


def _leave_termination_to_the_main_process(worker_id: int) -> None:
    """`kill` on the whole process group must not kill workers mid-batch: the main process
    saves a resumable state and then shuts its workers down."""
    for number in stopping.SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def check_settings(s: TrainSettings, processes: int = 1) -> None:
    """Every option, once, before any work: a value that cannot work is a UsageError (exit 2)."""
    ema = s.ema_decay or 0.0
    problems = [
        (s.scale not in SUPPORTED_SCALES, f"--scale must be 2, 3 or 4, not {s.scale}"),
        (s.batch_size % processes != 0, f"--batch-size {s.batch_size} does not split across {processes} processes"),
        (s.iters < 1, "--iters must be at least 1"),
        (s.batch_size < 1, "--batch-size must be at least 1"),
        (s.patch < 4, "--patch must be at least 4 LR pixels"),
        (not 0 <= s.min_detail < math.inf, "--min-detail must be 0 or more"),
        (not 0 < s.lr < math.inf, "--lr must be positive"),
        (s.val_every < 1, "--val-every must be at least 1"),
        (s.val_crop is not None and s.val_crop < MIN_VALIDATION_LR * s.scale,
         f"--val-crop must be at least {MIN_VALIDATION_LR * s.scale} pixels at x{s.scale}"),
        (s.workers < 0, "--workers cannot be negative"),
        (not 0 <= s.seed < 2**63, "--seed must be between 0 and 2^63 - 1"),
        (s.checkpoint_every < 1, "--checkpoint-every must be at least 1"),
        (not 0 <= ema < 1, f"--ema must be at least 0 (0 disables) and below 1, not {ema:g}"),
        (s.amp not in AMP_MODES, f"--amp must be one of {', '.join(AMP_MODES)}"),
        *((not low <= getattr(s, name) <= high, f"--{name.replace('_', '-')} must be between {low} and {high}, "
           "the shapes a checkpoint may have") for name, (low, high) in SHAPE_LIMITS.items()),
        (not 0 <= s.clean_share <= 1, "--clean-share must be between 0 and 1"),
        (not 0 <= s.sharpen_target <= 2, "--sharpen-target must be between 0 and 2"),
        (not 0 <= s.gan_weight <= 1, "--gan-weight must be between 0 (off) and 1"),
        (not 0 < s.gan_lr < math.inf, "--gan-lr must be positive"),
        (s.resume and s.init is not None, "--init starts a new run and --resume continues one: give one of them"),
        (s.new_data and not s.resume, "--new-data continues a run on other data: it needs --resume"),
    ]
    for failed, message in problems:
        if failed:
            raise UsageError(message)
    try:
        preset = parse_preset(s.degrade)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if s.clean_share == 1 and not preset.is_clean:
        raise UsageError(f"--clean-share 1 makes every sample clean, so --degrade {s.degrade} would never "
                         "be used: lower it")


def _autocast(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    return {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _require_finite(losses: dict[str, float], step: int) -> None:
    """Stop on the first loss that is NaN or infinite, naming it and the rate that governs it."""
    for name, value in losses.items():
        if not math.isfinite(value):
            rate = "--gan-lr" if name == "d_loss" else "--lr"
            raise TrainingError(f"the {name.replace('_', ' ')} became {value} at step {step}; lower {rate}")


def _validate(run: _Run, images, settings: TrainSettings, callbacks: TrainCallbacks,
              log: _MetricsLog | None) -> None:
    if run.processes.is_main:
        model = copy.deepcopy(run.export_model()).float()
        loaded = LoadedModel(model=model.eval(), value_range=VALUE_RANGE, source="validation")
        device = str(run.processes.device)
        # one process may stop between images; under DDP the others wait at the barrier below
        between_images = (lambda done, total: stopping.check()) if run.processes.world == 1 else None
        scores = score_images(images, Upscaler(loaded, InferenceSettings(device=device, precision="fp32", backend="torch")),
                              between_images, preset=parse_preset(settings.degrade), seed=VALIDATION_SEED)
        mean = mean_score(scores)
        run.validated = (run.step, mean.psnr)
        is_best = run.best_psnr is None or mean.psnr > run.best_psnr
        if is_best:
            best = settings.out / "best.safetensors"
            run.best_psnr = mean.psnr
            with _writing(best):
                save_checkpoint(best, run.export_model(), VALUE_RANGE, _provenance(run, settings))
        if log:
            log.write({"step": run.step, "val_psnr": mean.psnr, "val_ssim": mean.ssim,
                       "val_bicubic_psnr": mean.bicubic_psnr})
            _plot(settings)
        callbacks.on_validation(run.step, mean.psnr, mean.ssim, is_best)
    distributed.barrier(run.processes)


def _save(run: _Run, settings: TrainSettings) -> None:
    """last.safetensors and state.pt (and best.safetensors without validation) are written in
    full first and only then renamed into place: a full disk keeps the previous pair, which
    always belong to the same step."""
    if run.processes.is_main:
        provenance = _provenance(run, settings)
        names = ["last.safetensors", *(["best.safetensors"] if settings.val_dir is None else []), STATE_NAME]
        after = (f"; the state of the previous save is kept in {settings.out}"
                 if (settings.out / STATE_NAME).is_file() else "")
        with _writing(settings.out, after), replaced_together(*(settings.out / n for n in names)) as temporaries:
            for name, temporary in zip(names, temporaries):
                if name == STATE_NAME:
                    write_state(temporary, run.state())
                else:
                    save_checkpoint(temporary, run.export_model(), VALUE_RANGE, provenance)
        if settings.val_dir is None:  # otherwise validation redraws the plot
            _plot(settings)
    distributed.barrier(run.processes)


def _plot(settings: TrainSettings) -> None:
    with _writing(settings.out / "plot.png"):
        write_plot(settings.out / LOG_NAME, settings.out / "plot.png")


def _provenance(run: _Run, settings: TrainSettings) -> dict[str, Any]:
    """val_psnr is this checkpoint's own validation (None when its step was not validated);
    best_val_psnr is the run's best so far."""
    own = run.validated[1] if run.validated and run.validated[0] == run.step else None
    return {
        "step": run.step,
        "data": settings.data.name,
        "data_id": run.segments[-1]["data_id"],
        "iters": settings.iters,
        "batch_size": settings.batch_size,
        "patch": settings.patch,
        "min_detail": settings.min_detail,
        "lr": settings.lr,
        "lr_milestones": list(settings.lr_milestones),
        "seed": settings.seed,
        "ema_decay": settings.ema_decay,
        "loss": f"charbonnier eps={settings.charbonnier_eps} on [0,1]" + (
            f" + {settings.gan_weight:g} × adversarial (U-Net discriminator, spectral norm, lr {settings.gan_lr:g})"
            if settings.gan_weight else ""),
        "degrade": settings.degrade,
        "clean_share": settings.clean_share if settings.degrade != "clean" else None,
        "sharpen_target": settings.sharpen_target,
        "validation": f"degrade={settings.degrade} seed={VALIDATION_SEED}",
        "init": run.origin,
        "val_psnr": own,
        "best_val_psnr": run.best_psnr,
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
        with _writing(self.path), self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
