"""A PNG of training loss and validation PSNR from the metrics log."""

from __future__ import annotations

import json
from pathlib import Path

from animesr.atomic import replaced_on_success


def read_metrics(log: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    losses, psnrs = [], []
    if not log.is_file():
        return losses, psnrs
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a full disk or a crash
            continue
        if "loss" in record:
            losses.append((record["step"], record["loss"]))
        if "val_psnr" in record:
            psnrs.append((record["step"], record["val_psnr"]))
    return losses, psnrs


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def write_plot(log: Path, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses, psnrs = read_metrics(log)
    fig, left = plt.subplots(figsize=(8, 4.5), dpi=100)
    if losses:
        steps, values = zip(*losses)
        left.plot(steps, _smooth(list(values), 25), color="tab:blue", label="loss (moving mean of 25)")
        left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("Charbonnier loss", color="tab:blue")
    if psnrs:
        right = left.twinx()
        steps, values = zip(*psnrs)
        right.plot(steps, values, "o-", color="tab:red", label="validation Y-PSNR")
        right.set_ylabel("validation Y-PSNR (dB)", color="tab:red")
    fig.tight_layout()
    with replaced_on_success(output, suffix=".png") as temporary:
        fig.savefig(temporary)
    plt.close(fig)
