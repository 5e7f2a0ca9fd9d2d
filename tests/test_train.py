"""animesr train: exact resume, --init, validation checkpoints, Ctrl-C, atomic saves, DDP."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from animesr.checkpoint import load_checkpoint, save_checkpoint
from animesr.cli import _register, app
from animesr.config import PrepareSettings, TrainSettings
from animesr.data.prepare import prepare_dataset
from animesr.errors import CheckpointError, OutputError, TrainingError, TrainingInterrupted, UsageError
from animesr.imaging import write_image
from animesr.inference.upscaler import Upscaler
from animesr.training import loop
from animesr.training.loop import TrainCallbacks, train
from animesr.training.state import load_state, write_state
from conftest import dies_with_pytest, handled, smooth_image, tiny_model

_register()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train-data")
    for seed in range(3):
        write_image(folder / f"{seed}.png", smooth_image(80, 96, seed=seed))
    out = folder / "d.h5"
    prepare_dataset(PrepareSettings((folder,), out, crop=32, stride=16, scales=(2, 4)))
    return out


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layout of `dataset`, from other pictures."""
    folder = tmp_path_factory.mktemp("other-data")
    write_image(folder / "o.png", smooth_image(64, 80, seed=7))
    out = folder / "o.h5"
    prepare_dataset(PrepareSettings((folder,), out, crop=32, stride=16, scales=(2, 4)))
    return out


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("val")
    write_image(folder / "v.png", smooth_image(40, 48, seed=9))
    return folder


def tiny_settings(data: Path, out: Path, **changes) -> TrainSettings:
    base = dict(data=data, scale=2, out=out, iters=10, batch_size=4, patch=8, lr=1e-3, workers=0,
                channels=8, up_channels=8, blocks=1, checkpoint_every=5, seed=0, device="cpu")
    return TrainSettings(**{**base, **changes})


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_ten_steps_equal_five_plus_resume_plus_five(dataset: Path, tmp_path: Path) -> None:
    whole = train(tiny_settings(dataset, tmp_path / "whole"))
    # Run 5 steps of a 10-step schedule, stop, then resume for the rest.
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(dataset, tmp_path / "split"), TrainCallbacks(on_step=_interrupt_at(5)))
    second = train(tiny_settings(dataset, tmp_path / "split", resume=True))
    assert second.step == 10
    assert whole.losses[5:] == second.losses
    a, b = weights(tmp_path / "whole" / "last.safetensors"), weights(tmp_path / "split" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    segments = load_checkpoint(tmp_path / "split" / "last.safetensors").training["segments"]
    assert [(s["from_step"], s["iters"]) for s in segments] == [(0, 10), (5, 10)]
    assert (tmp_path / "whole" / "plot.png").stat().st_size > 1000  # drawn without --val too


def _interrupt_at(step_to_stop: int):
    def on_step(step: int, loss: float, lr: float) -> None:
        if step == step_to_stop:
            raise KeyboardInterrupt

    return on_step


def test_ctrl_c_saves_a_resumable_state(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingInterrupted, match="step 3"):
        train(tiny_settings(dataset, tmp_path, checkpoint_every=100), TrainCallbacks(on_step=_interrupt_at(3)))
    state = load_state(tmp_path)
    assert state["step"] == 3
    assert load_checkpoint(tmp_path / "last.safetensors").training["step"] == 3


def test_turning_ema_on_at_resume_starts_it_from_the_trained_weights(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(dataset, tmp_path, ema_decay=None), TrainCallbacks(on_step=_interrupt_at(3)))
    trained = weights(tmp_path / "last.safetensors")
    train(tiny_settings(dataset, tmp_path, iters=4, lr=1e-12, ema_decay=0.999, resume=True))
    averaged = weights(tmp_path / "last.safetensors")  # the EMA weights are the ones exported
    assert all(torch.allclose(averaged[k], trained[k], atol=1e-6) for k in trained)


def test_validation_picks_best_and_writes_log_and_plot(dataset: Path, val_dir: Path, tmp_path: Path) -> None:
    psnrs: list[float] = []
    result = train(tiny_settings(dataset, tmp_path, val_dir=val_dir, val_every=5),
                   TrainCallbacks(on_validation=lambda step, psnr, ssim, best: psnrs.append(psnr)))
    assert len(psnrs) == 2 and result.best_psnr == max(psnrs)
    best = load_checkpoint(tmp_path / "best.safetensors", scale=2)
    assert best.value_range == 1.0 and best.training["val_psnr"] == pytest.approx(max(psnrs))
    assert load_checkpoint(tmp_path / "last.safetensors").training["step"] == 10
    log = (tmp_path / "metrics.jsonl").read_text()
    assert log.count('"loss"') == 10 and log.count('"val_psnr"') == 2
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = smooth_image(20, 24)
    assert Upscaler(best).upscale(image).shape == (40, 48, 3)


def test_each_checkpoint_records_its_own_validation_and_the_runs_best(dataset: Path, val_dir: Path,
                                                                       tmp_path: Path, monkeypatch) -> None:
    from animesr.training.validation import ImageScore

    scores = iter([30.0, 20.0])  # step 5, then a worse step 10
    monkeypatch.setattr(loop, "mean_score", lambda _: ImageScore("mean", 0.0, 0.0, next(scores), 0.5))
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(dataset, tmp_path, val_dir=val_dir, val_every=5), TrainCallbacks(on_step=_interrupt_at(7)))
    at_7 = load_checkpoint(tmp_path / "last.safetensors").training
    assert at_7["step"] == 7 and at_7["val_psnr"] is None and at_7["best_val_psnr"] == 30.0
    train(tiny_settings(dataset, tmp_path, val_dir=val_dir, val_every=5, resume=True))
    last = load_checkpoint(tmp_path / "last.safetensors").training
    assert last["step"] == 10 and last["val_psnr"] == 20.0 and last["best_val_psnr"] == 30.0
    best = load_checkpoint(tmp_path / "best.safetensors").training
    assert best["step"] == 5 and best["val_psnr"] == best["best_val_psnr"] == 30.0


def test_a_best_checkpoint_ahead_of_the_state_is_never_replaced_by_a_worse_one(dataset: Path, val_dir: Path,
                                                                               tmp_path: Path, monkeypatch) -> None:
    """A stop after best.safetensors was written but before the state: the file's PSNR counts on resume."""
    train(tiny_settings(dataset, tmp_path, iters=5, val_dir=val_dir, val_every=5))
    state = load_state(tmp_path)
    state["best_psnr"] -= 10.0  # the state written before that validation
    torch.save(state, tmp_path / "state.pt")
    best_before = weights(tmp_path / "best.safetensors")
    on_disk = load_checkpoint(tmp_path / "best.safetensors").training["val_psnr"]
    from animesr.training.validation import ImageScore

    worse = ImageScore("mean", 0.0, 0.0, on_disk - 1.0, 0.5)
    monkeypatch.setattr(loop, "mean_score", lambda scores: worse)  # a later validation, worse than the file
    result = train(tiny_settings(dataset, tmp_path, iters=10, val_dir=val_dir, val_every=5, resume=True))
    assert result.best_psnr == pytest.approx(on_disk)
    after = weights(tmp_path / "best.safetensors")
    assert all(torch.equal(after[k], best_before[k]) for k in best_before)


def test_resume_needs_state_and_a_run_is_not_silently_replaced(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no training state"):
        train(tiny_settings(dataset, tmp_path, resume=True))
    train(tiny_settings(dataset, tmp_path, iters=2))
    with pytest.raises(TrainingError, match="--resume"):
        train(tiny_settings(dataset, tmp_path, iters=2))


def test_init_takes_every_tensor_whose_shape_fits(dataset: Path, tmp_path: Path) -> None:
    x2 = train(tiny_settings(dataset, tmp_path / "x2", iters=2))
    assert x2.step == 2
    notices: list[str] = []
    train(tiny_settings(dataset, tmp_path / "x4", scale=4, iters=1, lr=1e-12, ema_decay=None,
                        init=tmp_path / "x2" / "last.safetensors"), TrainCallbacks(note=notices.append))
    # x4 has a second upsampling step the x2 model lacks: 6 more tensors.
    assert notices and "initialised" in notices[0]
    taken, total = (int(n) for n in notices[0].split()[1::2][:2])
    assert total - taken == 6
    assert "is an x2 model and this run is x4" in notices[1]
    source = weights(tmp_path / "x2" / "last.safetensors")
    target = weights(tmp_path / "x4" / "last.safetensors")
    assert torch.allclose(source["blocks.0.attention.k1.weight"], target["blocks.0.attention.k1.weight"], atol=1e-6)


def test_a_resumed_run_keeps_recording_the_checkpoint_it_started_from(dataset: Path, tmp_path: Path) -> None:
    train(tiny_settings(dataset, tmp_path / "source", iters=1))
    source = tmp_path / "source" / "last.safetensors"
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(dataset, tmp_path / "run", init=source), TrainCallbacks(on_step=_interrupt_at(3)))
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").training["init"] == "last.safetensors"
    train(tiny_settings(dataset, tmp_path / "run", resume=True))  # --init is not repeated on resume
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").training["init"] == "last.safetensors"


@pytest.mark.slow
def test_init_from_the_authors_x2_file_into_an_x4_run(dataset: Path, tmp_path: Path, authors_x2: Path) -> None:
    """The authors' weights work on 0..255 pixels; training works on 0..1: --init converts."""
    notices: list[str] = []
    settings = tiny_settings(dataset, tmp_path, scale=4, iters=1, lr=1e-12, ema_decay=None, channels=40,
                             up_channels=24, blocks=16, init=authors_x2, batch_size=2)
    train(settings, TrainCallbacks(note=notices.append))
    assert notices and notices[0].startswith("initialised") and "aan_x2.pt" in notices[0]
    authors = load_checkpoint(authors_x2, scale=2).model.state_dict()
    ours = weights(tmp_path / "last.safetensors")
    assert torch.allclose(ours["head.weight"], authors["head.weight"] * 255, rtol=1e-5)
    assert torch.allclose(ours["blocks.7.non_attention.weight"], authors["blocks.7.non_attention.weight"], atol=1e-6)


def test_init_from_another_architecture_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "animesr", "arch": "rrdb"})
    with pytest.raises(CheckpointError, match="not A2N"):
        train(tiny_settings(dataset, tmp_path / "run", init=other))


def test_a_crash_while_saving_keeps_the_previous_checkpoint(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    train(tiny_settings(dataset, tmp_path, iters=2, checkpoint_every=1))
    before = (tmp_path / "last.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("animesr.checkpoint.save_file", crash)
    model = load_checkpoint(tmp_path / "last.safetensors").model
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "last.safetensors", model, 1.0)
    assert (tmp_path / "last.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_cli_train_bad_inputs_are_one_line_errors(dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", "--scale", "2", "--out", str(tmp_path / "run"), "--iters", "1", "--workers", "0",
            "--channels", "8", "--blocks", "1", "--up-channels", "8", "--batch-size", "2", "--patch", "8"]
    foreign = tmp_path / "x.h5"
    foreign.write_text("no")
    for extra, expected in [
        (["--data", str(foreign)], "not an HDF5 file"),
        (["--data", str(dataset), "--scale", "3"], "no x3 pairs"),
        (["--data", str(dataset), "--resume"], "no training state"),
        (["--data", str(dataset), "--val", str(tmp_path / "empty")], "no such file or folder"),
        (["--data", str(dataset), "--checkpoint-every", "0"], "--checkpoint-every"),
        (["--data", str(dataset), "--amp", "fp8"], "--amp must be one of"),
        (["--data", str(dataset), "--min-detail", "-1"], "--min-detail"),
    ]:
        result = runner.invoke(app, base + extra)
        assert result.exit_code != 0, (extra, result.output)
        assert expected in result.output and handled(result), (extra, result.output, result.exception)


def train_in_two_gloo_processes(out: Path, args: list[str]) -> str:
    """`animesr train --out OUT ARGS` under torchrun with 2 CPU processes; its stderr. It must succeed."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "animesr", "train", "--out", str(out), *args]
    launcher = subprocess.Popen(dies_with_pytest(torchrun), env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = launcher.communicate(timeout=300)
    finally:  # an interrupted or timed-out test must not leave torchrun's workers running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 0, stderr[-2000:]
    return stderr


def test_two_gloo_processes_train_like_one(dataset: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): each takes half of the global batch; the
    averaged gradients give the same weights as one process with the whole batch."""
    common = ["--data", str(dataset), "--scale", "2", "--iters", "3", "--batch-size", "4", "--patch", "8",
              "--workers", "0", "--channels", "8", "--blocks", "1", "--up-channels", "8", "--device", "cpu",
              "--ema", "0", "--init", str(tmp_path / "start.safetensors")]
    save_checkpoint(tmp_path / "start.safetensors", tiny_model(2, seed=3), 1.0)
    stderr = train_in_two_gloo_processes(tmp_path / "ddp", common)
    assert stderr.count("finished at step 3") == 1, stderr[-2000:]  # the first process speaks for the run
    assert stderr.count("initialised ") == 1, stderr[-2000:]  # and says its notes once
    single = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "one"), *common])
    assert single.exit_code == 0, single.output
    a, b = weights(tmp_path / "ddp" / "last.safetensors"), weights(tmp_path / "one" / "last.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert load_checkpoint(tmp_path / "ddp" / "last.safetensors").training["processes"] == 2


def test_charbonnier_matches_its_formula() -> None:
    sr, hr = torch.tensor([0.5, 0.2]), torch.tensor([0.1, 0.2])
    expected = (torch.sqrt(torch.tensor(0.16) + 1e-12) + 1e-6) / 2
    assert loop.charbonnier(sr, hr, 1e-6).item() == pytest.approx(expected.item(), rel=1e-6)


def test_settings_are_checked(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--iters"):
        train(replace(tiny_settings(dataset, tmp_path), iters=0))
    with pytest.raises(UsageError, match="does not split across 2 processes"):
        loop.check_settings(replace(tiny_settings(dataset, tmp_path), batch_size=3), processes=2)


def test_learning_rate_halves_at_each_milestone(dataset: Path, tmp_path: Path) -> None:
    settings = tiny_settings(dataset, tmp_path, iters=100, lr=4e-4)
    rates = [loop.learning_rate(step, settings) for step in (0, 49, 50, 74, 75, 89, 90, 99)]
    assert rates == [4e-4, 4e-4, 2e-4, 2e-4, 1e-4, 1e-4, 5e-5, 5e-5]


STOP_LIMIT_S = 30  # seconds from SIGTERM to exit; a stop normally takes 1-5 s, a hang never ends


def _signal_for(out: Path) -> int:
    return signal.SIGHUP if out.name in ("run1", "run4", "run6") else signal.SIGTERM


def _group_is_gone(pgid: int, wait_s: float = 5.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_sigterm_always_stops_within_seconds_and_saves(dataset: Path, val_dir: Path, tmp_path: Path) -> None:
    """`kill` (SIGTERM) or a closed terminal (SIGHUP) on a background job's process group (SIGINT
    ignored by the shell), at random moments, 8 times: each run must exit 143 or 129 within seconds
    with a resumable state and no DataLoader worker left. The KeyboardInterrupt of the old handler hung about 1 stop in 3 (interpreter exit waiting
    forever for a worker) and broke the save when it landed in matplotlib's import."""
    rng = random.Random(11)
    started: list[subprocess.Popen] = []

    def start(number: int) -> tuple[subprocess.Popen, Path]:
        out = tmp_path / f"run{number}"
        saves = ["--checkpoint-every", "3", "--val", str(val_dir), "--val-every", "2"] if number % 2 else []
        command = [sys.executable, "-m", "animesr", "train", "--data", str(dataset), "--scale", "2",
                   "--out", str(out), "--iters", "100000", "--checkpoint-every", "100000", "--batch-size", "2",
                   "--patch", "8", "--workers", "1", "--channels", "8", "--blocks", "1", "--up-channels", "8",
                   "--device", "cpu", *saves]
        process = subprocess.Popen(dies_with_pytest(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        started.append(process)
        return process, out

    def stop_early(runs: list[tuple[subprocess.Popen, Path]]) -> dict[Path, float]:
        """SIGTERM each run at a random moment just after its second step (when the hang struck)."""
        stopped: dict[Path, float] = {}
        due: dict[Path, float] = {}
        deadline = time.monotonic() + 300
        while len(stopped) < len(runs) and time.monotonic() < deadline:
            for process, out in runs:
                log = out / "metrics.jsonl"
                if out in stopped:
                    continue
                assert process.poll() is None, process.stderr.read()
                if out not in due and log.exists() and log.read_text().count("\n") >= 2:
                    due[out] = time.monotonic() + rng.uniform(0, 0.3)
                if out in due and time.monotonic() >= due[out]:
                    os.killpg(process.pid, _signal_for(out))  # the main process and its DataLoader worker alike
                    stopped[out] = time.monotonic()
            time.sleep(0.02)
        assert len(stopped) == len(runs), "a run did not reach step 2 in 300 s"
        return stopped

    try:
        for first in range(0, 8, 4):
            runs = [start(number) for number in range(first, first + 4)]
            stopped = stop_early(runs)
            for process, out in runs:
                try:
                    _, stderr = process.communicate(timeout=max(1.0, stopped[out] + STOP_LIMIT_S - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pytest.fail(f"{out.name}: still running {STOP_LIMIT_S} s after SIGTERM")
                assert process.returncode == 128 + _signal_for(out), stderr
                assert "stopped at step" in stderr and "continue with --resume" in stderr, stderr
                assert "Traceback" not in stderr and "error" not in stderr, stderr
                assert _group_is_gone(process.pid), f"{out.name}: a DataLoader worker outlived the run"
                assert load_state(out)["step"] >= 2
    finally:  # whatever failed, no run and no worker outlives the test
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _train_cli(dataset: Path, out: Path, *extra: str):
    base = ["train", "--data", str(dataset), "--scale", "2", "--out", str(out), "--iters", "2", "--workers", "0",
            "--channels", "8", "--blocks", "1", "--up-channels", "8", "--batch-size", "2", "--patch", "8",
            "--device", "cpu"]
    return CliRunner().invoke(app, [*base, *extra])


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_an_unwritable_run_folder_is_one_line_before_any_step(dataset: Path, tmp_path: Path, tmpfs) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    result = _train_cli(dataset, a_file / "run")  # ENOTDIR: a path under a regular file
    assert result.exit_code == OutputError.exit_code and handled(result), (result.output, result.exception)
    assert _error_lines(result.output) == [f"error: cannot write to the run folder {a_file / 'run'}: Not a directory"]
    read_only = tmpfs("1m", read_only=True)
    result = _train_cli(dataset, read_only / "run")
    assert result.exit_code == OutputError.exit_code and handled(result), (result.output, result.exception)
    assert "Read-only file system" in result.output and len(_error_lines(result.output)) == 1


def _steps_on_disk(out: Path) -> tuple[int, int]:
    return load_state(out)["step"], load_checkpoint(out / "last.safetensors").training["step"]


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_pair(dataset: Path, tmp_path: Path, tmpfs) -> None:
    """A real full file system: the run stops with one line and exit 3; state.pt and
    last.safetensors are both still those of the last good save, and resume works from them."""
    disk = tmpfs("4m")
    out = disk / "run"
    assert _train_cli(dataset, out, "--checkpoint-every", "1").exit_code == 0
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    result = _train_cli(dataset, out, "--resume", "--iters", "4", "--checkpoint-every", "1")
    assert result.exit_code == OutputError.exit_code and handled(result), (result.output, result.exception)
    assert len(_error_lines(result.output)) == 1 and "No space left on device" in result.output, result.output
    assert _steps_on_disk(out) == (2, 2)
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []
    filler.unlink()
    assert _train_cli(dataset, out, "--resume", "--iters", "4").exit_code == 0
    assert _steps_on_disk(out) == (4, 4)


def test_a_failed_state_write_publishes_neither_file(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """The same without a mountable disk: the state write fails (ENOSPC) after the checkpoint's
    has succeeded; last.safetensors must not move ahead of state.pt."""
    import errno

    real_write = loop.write_state
    calls = []

    def full_on_second_save(path: Path, state: dict) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, state)

    monkeypatch.setattr(loop, "write_state", full_on_second_save)
    with pytest.raises(OutputError, match="No space left on device"):
        train(tiny_settings(dataset, tmp_path, iters=4, checkpoint_every=2))
    assert _steps_on_disk(tmp_path) == (2, 2)
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_resume_never_runs_code_from_the_state_file(dataset: Path, tmp_path: Path) -> None:
    """state.pt is a pickle: loaded with weights_only=False it ran whatever it named."""
    assert _train_cli(dataset, tmp_path, "--checkpoint-every", "1").exit_code == 0
    marker = tmp_path / "payload-ran"
    state = load_state(tmp_path)
    state["segments"].append(_Payload(f"touch {marker}"))
    torch.save(state, tmp_path / "state.pt")
    result = _train_cli(dataset, tmp_path, "--resume", "--iters", "3")
    assert not marker.exists()
    assert result.exit_code == TrainingError.exit_code and handled(result), (result.output, result.exception)
    assert _error_lines(result.output) == [
        f"error: {tmp_path / 'state.pt'} holds more than training state (code or foreign objects); "
        "refused without running it"]


class _Payload:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_state_file_of_the_previous_format_still_resumes(dataset: Path, tmp_path: Path) -> None:
    """Earlier versions stored NumPy's random state as an array: a safe type, still accepted."""
    import numpy as np

    whole = train(tiny_settings(dataset, tmp_path / "whole", iters=4))
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(dataset, tmp_path / "old", iters=4), TrainCallbacks(on_step=_interrupt_at(2)))
    state = load_state(tmp_path / "old")
    kind, keys, position, has_gauss, cached = state["random"]["numpy"]
    state["random"]["numpy"] = (kind, keys.numpy().astype(np.uint32), position, has_gauss, cached)
    torch.save(state, tmp_path / "old" / "state.pt")
    resumed = train(tiny_settings(dataset, tmp_path / "old", iters=4, resume=True))
    assert resumed.losses == whole.losses[2:]


@pytest.mark.parametrize("option", [
    ["--channels", "0"], ["--up-channels", "0"], ["--blocks", "-1"], ["--val-crop", "1"], ["--ema", "-1"],
    ["--ema", "2"], ["--ema", "1"], ["--scale", "5"], ["--seed", "-1"], ["--lr", "0"], ["--iters", "0"],
    ["--min-detail", "-1"], ["--amp", "fp8"], ["--degrade", "foo"], ["--workers", "-1"], ["--patch", "2"],
    ["--val-every", "0"], ["--clean-share", "2"],
    ["--channels", "3"], ["--up-channels", "1025"], ["--blocks", "257"],  # trained, then refused by every loader
], ids=" ".join)
def test_every_bad_option_is_exit_2_before_any_work(dataset: Path, tmp_path: Path, option: list[str]) -> None:
    """--channels 0 gave a traceback, --val-crop 1 one at the first validation (every step lost),
    and --ema -1, --ema 2, --blocks -1 were accepted."""
    out = tmp_path / "run"
    result = _train_cli(dataset, out, *option)
    assert result.exit_code == UsageError.exit_code == 2 and handled(result), (result.output, result.exception)
    assert len(_error_lines(result.output)) == 1 and option[0] in result.output, result.output
    assert not out.exists()  # refused before any work


def test_validation_images_too_small_to_score_are_refused_before_training(dataset: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    write_image(small / "tiny.png", smooth_image(20, 24))
    result = _train_cli(dataset, tmp_path / "run", "--val", str(small))
    assert result.exit_code == 2 and handled(result), (result.output, result.exception)
    assert _error_lines(result.output) == ["error: tiny.png is 24×20: scoring at x2 needs at least 32 pixels a side"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["data", "data folder", "scale", "patch", "init", "val", "empty val", "resume",
                                  "existing run", "state folder"])
def test_what_is_wrong_with_the_inputs_is_said_before_the_training_bar(
        dataset: Path, tmp_path: Path, case: str) -> None:
    """Each of these was reported under an already drawn `training 0/N` bar, and later after the
    blank line an opened and closed display leaves: the output is the error line alone."""
    not_data = tmp_path / "text.h5"
    not_data.write_text("not HDF5")
    not_model = tmp_path / "text.safetensors"
    not_model.write_text("not a model")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    data = {"data": not_data, "data folder": tmp_path}.get(case, dataset)
    extra = {"scale": ["--scale", "3"], "patch": ["--patch", "17"],  # the dataset's x2 LR crops are 16 px
             "init": ["--init", str(not_model)], "val": ["--val", str(tmp_path / "no-such-folder")],
             "empty val": ["--val", str(tmp_path / "empty")], "resume": ["--resume"]}.get(case, [])
    if case == "existing run":
        assert _train_cli(dataset, out).exit_code == 0
    if case == "state folder":
        (out / "state.pt").mkdir(parents=True)
    result = _train_cli(data, out, *extra)
    assert result.exit_code not in (0, 1) and handled(result), (result.output, result.exception)
    assert result.output.splitlines() == _error_lines(result.output) and len(_error_lines(result.output)) == 1, \
        result.output


@pytest.mark.parametrize("left", ["last.safetensors", "best.safetensors", "metrics.jsonl"])
def test_a_new_run_never_replaces_an_earlier_runs_files_left_without_state(dataset: Path, tmp_path: Path,
                                                                           left: str) -> None:
    """A folder with an earlier run's checkpoints but no state.pt was trained over, without a word."""
    out = tmp_path / "run"
    out.mkdir()
    (out / left).write_bytes(b"an earlier run's file")
    result = _train_cli(dataset, out)
    assert result.exit_code == 8 and handled(result), (result.output, result.exception)
    assert _error_lines(result.output) == [f"error: {out} holds {left} of an earlier run without its state.pt: a new "
                                           "run would replace it; choose another --out or move it away"]
    assert (out / left).read_bytes() == b"an earlier run's file"


def test_a_resume_says_what_changed_and_what_it_cannot_use(dataset: Path, tmp_path: Path) -> None:
    """Changed settings, a dropped discriminator and a damaged best.safetensors were all silent (the
    last one blocked the resume with an error that did not name the run)."""
    gan = dict(gan_weight=0.1, patch=16, val_dir=None)
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(dataset, tmp_path, **gan), TrainCallbacks(on_step=_interrupt_at(2)))
    (tmp_path / "best.safetensors").write_bytes(b"damaged")
    notices: list[str] = []
    train(tiny_settings(dataset, tmp_path, resume=True, iters=3, lr=5e-4, patch=16, degrade="dvd",
                        clean_share=0.5), TrainCallbacks(note=notices.append))
    said = " | ".join(notices)
    assert "discriminator is dropped" in said, said
    assert "lr 0.001 → 0.0005" in said and "degrade clean → dvd" in said and "gan_weight 0.1 → 0.0" in said, said
    assert "best.safetensors cannot be read" in said, said


@pytest.mark.parametrize(("changes", "words"), [
    (dict(resume=True, init=Path("x.safetensors")), "give one of them"),
    (dict(new_data=True), "--new-data continues a run on other data: it needs --resume"),
    (dict(degrade="dvd", clean_share=1.0), "--degrade dvd would never be used"),
])
def test_contradicting_options_are_refused(dataset: Path, tmp_path: Path, changes: dict, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        train(tiny_settings(dataset, tmp_path, **changes))
    assert not tmp_path.joinpath("state.pt").exists()


def test_a_full_disk_while_writing_the_state_is_an_os_error(tmpfs) -> None:
    """torch.save's own writer said `RuntimeError: [enforce fail at inline_container.cc] unexpected
    pos`, which came out of `train` as a traceback."""
    from animesr.training.state import write_state

    disk = tmpfs("1m")
    with pytest.raises(OSError) as raised:
        write_state(disk / "state.pt", {"weights": torch.zeros(512, 1024)})  # 2 MB
    assert raised.value.errno == errno.ENOSPC


def test_a_resume_on_other_samples_is_refused_unless_meant_and_each_segment_records_its_data(
        dataset: Path, other_dataset: Path, tmp_path: Path) -> None:
    """A resume with another --data was silent, and the checkpoint named only the last file."""
    run = tmp_path / "run"
    train(tiny_settings(dataset, run, iters=2))
    with pytest.raises(TrainingError, match=f"trained on {dataset.name} .* {other_dataset.name} .* holds other "
                                            "samples: pass --new-data"):
        train(tiny_settings(other_dataset, run, iters=3, resume=True))
    assert load_state(run)["step"] == 2
    moved = tmp_path / "moved.h5"
    moved.write_bytes(dataset.read_bytes())  # the same samples under another name
    notices: list[str] = []
    train(tiny_settings(moved, run, iters=3, resume=True), TrainCallbacks(note=notices.append))
    assert notices == []
    train(tiny_settings(other_dataset, run, iters=4, resume=True, new_data=True), TrainCallbacks(note=notices.append))
    assert len(notices) == 1 and f"other data than steps 2–3: moved.h5 (id " in notices[0], notices
    training = load_checkpoint(run / "last.safetensors").training
    segments = [(s["from_step"], s["data"], s["data_id"]) for s in training["segments"]]
    first_id = segments[0][2]
    assert segments == [(0, dataset.name, first_id), (2, "moved.h5", first_id), (3, other_dataset.name, segments[2][2])]
    assert segments[2][2] != first_id and training["data_id"] == segments[2][2]


def test_a_run_from_before_data_ids_resumes_on_any_data_with_a_note(dataset: Path, other_dataset: Path,
                                                                     tmp_path: Path) -> None:
    """Its segments cannot be compared with --data: the resume went on without a word."""
    run = tmp_path / "run"
    train(tiny_settings(dataset, run, iters=2))
    state = load_state(run)
    assert state["segments"][0].pop("data_id") and state["segments"][0].pop("data")
    write_state(run / "state.pt", state)
    notices: list[str] = []
    train(tiny_settings(other_dataset, run, iters=3, resume=True), TrainCallbacks(note=notices.append))
    assert notices == [f"steps 0–2 predate data ids: --data {other_dataset.name} cannot be compared with "
                       "the data it was trained on"], notices
    assert load_state(run)["step"] == 3


def test_a_state_file_that_is_a_folder_is_named_so(dataset: Path, tmp_path: Path) -> None:
    """It was reported as `state.pt missing`."""
    (tmp_path / "state.pt").mkdir()
    with pytest.raises(TrainingError, match=r"state.pt is not a file"):
        load_state(tmp_path)
    for resume in (True, False):  # a new run would have stopped at its first save
        with pytest.raises(OutputError, match=r"state.pt is not a file"):
            train(tiny_settings(dataset, tmp_path, resume=resume))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_notes_naming_files_with_brackets_are_printed_as_they_are(dataset: Path, tmp_path: Path) -> None:
    """Notes went through rich markup, which took `[x]` in a file name for a style and dropped it."""
    train(tiny_settings(dataset, tmp_path / "source", iters=1))
    odd = tmp_path / "a[x]b[bold].safetensors"
    odd.write_bytes((tmp_path / "source" / "last.safetensors").read_bytes())
    result = _train_cli(dataset, tmp_path / "run", "--init", str(odd), "--iters", "1")
    assert result.exit_code == 0 and handled(result), (result.output, result.exception)
    assert "tensors from a[x]b[bold].safetensors" in result.output, result.output
