"""train --gan-weight: the U-Net discriminator, its losses, and exact resume with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize
from typer.testing import CliRunner

from animesr.checkpoint import load_checkpoint
from animesr.cli import app
from animesr.errors import TrainingError, TrainingInterrupted, UsageError
from animesr.training import loop
from animesr.training.adversarial import Adversary, UNetDiscriminator
from animesr.training.loop import TrainCallbacks, check_settings, train
from animesr.training.state import load_state
from test_train import _interrupt_at, dataset, tiny_settings, train_in_two_gloo_processes, weights  # noqa: F401

GAN = dict(gan_weight=0.1, gan_lr=1e-3, iters=6, checkpoint_every=3)


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 3, 27, 33), (1, 3, 8, 8)])
def test_the_discriminator_judges_every_pixel_of_any_size(shape) -> None:
    torch.manual_seed(0)
    discriminator = UNetDiscriminator(features=8)
    assert discriminator(torch.rand(shape)).shape == (shape[0], 1, *shape[2:])
    normalised = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d) and parametrize.is_parametrized(m)]
    assert len(normalised) == 8  # all but the first and the last convolution


def test_the_discriminator_learns_to_tell_real_from_fake() -> None:
    torch.manual_seed(0)
    adversary = Adversary(lr=2e-3, device=torch.device("cpu"), distributed=False)
    ramp = torch.linspace(0, 1, 32)
    real = (ramp.view(1, 1, 1, -1) * ramp.view(1, 1, -1, 1)).expand(4, 3, 32, 32)  # smooth
    fake = torch.rand(4, 3, 32, 32)  # noise
    first = adversary.train_step(fake, real)
    for _ in range(30):
        last = adversary.train_step(fake, real)
    with torch.no_grad():
        assert adversary.discriminator(real).mean() > adversary.discriminator(fake).mean()
    assert last < first
    # the generator's loss pushes the fake towards what the discriminator calls real, and trains no discriminator weight
    adversary.optimizer.zero_grad(set_to_none=True)
    fake = fake.clone().requires_grad_(True)
    adversary.generator_loss(fake).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in adversary.discriminator.parameters())
    assert all(p.requires_grad for p in adversary.discriminator.parameters())  # trainable again for its own step


def test_the_adversarial_stage_trains_logs_and_is_recorded(dataset: Path, tmp_path: Path) -> None:
    plain = train(tiny_settings(dataset, tmp_path / "plain", iters=6, checkpoint_every=3))
    gan = train(tiny_settings(dataset, tmp_path / "gan", **GAN))
    assert plain.losses[0] == gan.losses[0]  # same first batch and weights: the pixel loss alone is logged
    a, b = weights(tmp_path / "plain" / "last.safetensors"), weights(tmp_path / "gan" / "last.safetensors")
    assert a.keys() == b.keys()  # the discriminator is never in a checkpoint
    assert any(not torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(line) for line in (tmp_path / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert all("d_loss" in r and "g_adversarial" in r for r in records if "loss" in r)
    training = load_checkpoint(tmp_path / "gan" / "last.safetensors").training
    assert "adversarial" in training["loss"] and training["segments"][0]["gan_weight"] == 0.1
    assert load_state(tmp_path / "gan")["adversary"]["discriminator"]


def test_six_steps_with_the_adversary_equal_three_plus_resume_plus_three(dataset: Path, tmp_path: Path) -> None:
    whole = train(tiny_settings(dataset, tmp_path / "whole", **GAN))
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(dataset, tmp_path / "split", **GAN), TrainCallbacks(on_step=_interrupt_at(3)))
    second = train(tiny_settings(dataset, tmp_path / "split", resume=True, **GAN))
    assert whole.losses[3:] == second.losses
    a, b = weights(tmp_path / "whole" / "last.safetensors"), weights(tmp_path / "split" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    da, db = (load_state(tmp_path / name)["adversary"]["discriminator"] for name in ("whole", "split"))
    assert all(torch.equal(da[k], db[k]) for k in da)


def test_turning_the_adversary_on_at_resume_starts_a_new_discriminator(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingInterrupted):
        train(tiny_settings(dataset, tmp_path, iters=6, checkpoint_every=3), TrainCallbacks(on_step=_interrupt_at(3)))
    notices: list[str] = []
    result = train(tiny_settings(dataset, tmp_path, resume=True, **GAN), TrainCallbacks(note=notices.append))
    assert result.step == 6 and any("adversarial stage starts" in n for n in notices)
    assert [s["gan_weight"] for s in load_checkpoint(tmp_path / "last.safetensors").training["segments"]] == [0.0, 0.1]


@pytest.mark.parametrize(("changes", "message"), [
    ({"gan_weight": -0.1}, "--gan-weight"), ({"gan_weight": 2.0}, "--gan-weight"), ({"gan_lr": 0.0}, "--gan-lr"),
])
def test_bad_adversarial_options_are_refused_before_any_work(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_settings(tiny_settings(tmp_path / "none.h5", tmp_path / "out", **changes))


def test_two_gloo_processes_train_the_adversarial_stage_like_one(dataset: Path, tmp_path: Path) -> None:
    """Under torchrun the discriminator is a DDP module too: its gradients, like the network's, are
    averaged across the processes, so two half batches train like one whole batch."""
    common = ["--data", str(dataset), "--scale", "2", "--iters", "3", "--batch-size", "4", "--patch", "8",
              "--workers", "0", "--channels", "8", "--blocks", "1", "--up-channels", "8", "--device", "cpu",
              "--ema", "0", "--gan-weight", "0.1", "--gan-lr", "1e-3"]
    train_in_two_gloo_processes(tmp_path / "ddp", common)
    single = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "one"), *common])
    assert single.exit_code == 0, single.output
    a, b = weights(tmp_path / "ddp" / "last.safetensors"), weights(tmp_path / "one" / "last.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    da, db = (load_state(tmp_path / name)["adversary"]["discriminator"] for name in ("ddp", "one"))
    assert all(torch.allclose(da[k], db[k], atol=1e-5) for k in da)


@pytest.mark.parametrize("broken, message", [
    ("pixel", "the loss became nan at step 1; lower --lr"),
    ("discriminator", "the d loss became nan at step 1; lower --gan-lr"),
])
def test_a_loss_that_becomes_nan_stops_the_run_naming_that_loss(dataset: Path, tmp_path: Path, monkeypatch,
                                                               broken: str, message: str) -> None:
    if broken == "pixel":
        monkeypatch.setattr(loop, "charbonnier", lambda sr, hr, eps: (sr - hr).abs().mean() * float("nan"))
    else:
        monkeypatch.setattr(Adversary, "train_step", lambda self, sr, hr: float("nan"))
    with pytest.raises(TrainingError) as error:
        train(tiny_settings(dataset, tmp_path / "run", **GAN))
    assert str(error.value) == message
