"""Does data loading hold training back? Time per step with real HDF5 loading (DataLoader
workers) vs the model-only step on a batch already in memory, at x2 and x4; and the cost of
making one batch's degraded LR (`--degrade`, in the main process) against the model-only step.

    python benchmarks/bench_train.py --data anime.h5 [--steps 10] [--batch-size 16] [--patch 48]
                                     [--degrade real]

Makes a small dataset from generated pictures when --data is not given. Prints a table and
writes JSON (default benchmarks/results/bench_train.json). Ratio ≈ 1.0 means loading is hidden.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from animesr.config import PrepareSettings
from animesr.data.dataset import PairedPatches, StepSampler
from animesr.data.degrade import PRESETS, Degradation
from animesr.data.prepare import prepare_dataset
from animesr.imaging import write_image
from animesr.model import A2N, A2NConfig
from animesr.training.loop import charbonnier
from report import machine, parser, write_report


def generated_dataset(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        base = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
        image = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
        write_image(folder / f"{i}.png", image)
    out = folder / "bench.h5"
    prepare_dataset(PrepareSettings((folder,), out, crop=240, stride=120, scales=(2, 4)))
    return out


def train_step(model: A2N, optimizer: torch.optim.Optimizer, lr: torch.Tensor, hr: torch.Tensor) -> None:
    loss = charbonnier(model(lr), hr, 1e-6)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if lr.is_cuda:
        torch.cuda.synchronize()


def time_steps(args: argparse.Namespace, data: Path, scale: int, device: torch.device) -> dict:
    model = A2N(A2NConfig(scale=scale)).to(device, memory_format=torch.channels_last)  # as the training loop
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dataset = PairedPatches(data, scale, args.patch,
                            degradation=Degradation(PRESETS[args.degrade], 0.0))
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers,
                        sampler=StepSampler(0, args.steps + 1, args.batch_size),
                        pin_memory=device.type == "cuda")
    batches = iter(loader)
    lr, hr = (t.to(device, memory_format=torch.channels_last) for t in next(batches))
    train_step(model, optimizer, lr, hr)  # warm-up (and worker start-up) outside the timing
    start = time.perf_counter()
    for lr, hr in batches:
        train_step(model, optimizer, lr.to(device, non_blocking=True, memory_format=torch.channels_last),
                   hr.to(device, non_blocking=True, memory_format=torch.channels_last))
    with_loading = (time.perf_counter() - start) / args.steps
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(model, optimizer, lr, hr)
    model_only = (time.perf_counter() - start) / args.steps
    batch = _batch_seconds(dataset, args.batch_size, args.steps)
    plain = _batch_seconds(PairedPatches(data, scale, args.patch), args.batch_size, args.steps)
    return {"scale": scale, "device": str(device), "batch_size": args.batch_size, "patch": args.patch,
            "workers": args.workers, "degrade": args.degrade, "seconds_per_step_with_loading": with_loading,
            "seconds_per_step_model_only": model_only, "ratio": with_loading / model_only,
            "seconds_per_batch_samples": batch, "seconds_per_batch_degradation": batch - plain,
            "degradation_share_of_model_step": (batch - plain) / model_only}


def _batch_seconds(dataset: PairedPatches, batch_size: int, batches: int) -> float:
    """Time to make one batch of samples in this process (reading, cropping, degrading)."""
    start = time.perf_counter()
    for number in range(batch_size * batches):
        dataset[number]
    return (time.perf_counter() - start) / batches


def main() -> None:
    options = parser(__doc__, "bench_train")
    options.add_argument("--data", type=Path)
    options.add_argument("--steps", type=int, default=10)
    options.add_argument("--batch-size", type=int, default=16)
    options.add_argument("--patch", type=int, default=48)
    options.add_argument("--workers", type=int, default=2)
    options.add_argument("--scales", default="2,4")
    options.add_argument("--degrade", default="real", choices=sorted(PRESETS))
    args = options.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or generated_dataset(Path(scratch))
        rows = [time_steps(args, data, int(s), d) for d in devices for s in args.scales.split(",")]
    print(f"{'device':6} {'scale':>5} {'s/step loading':>15} {'s/step model':>13} {'ratio':>6} "
          f"{'s/batch degrade':>16} {'share':>6}")
    for r in rows:
        print(f"{r['device']:6} {'x' + str(r['scale']):>5} {r['seconds_per_step_with_loading']:15.3f} "
              f"{r['seconds_per_step_model_only']:13.3f} {r['ratio']:6.2f} "
              f"{r['seconds_per_batch_degradation']:16.3f} {r['degradation_share_of_model_step']:6.1%}")
    write_report(args.json, {"machine": machine(), "threads": torch.get_num_threads(), "results": rows})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
