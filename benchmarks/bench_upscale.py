#!/usr/bin/env python
"""Upscaling throughput: the network alone, and `upscale-image` end to end.

    python benchmarks/bench_upscale.py [--size 256] [--repeats 3] [--images 2] [--json PATH]

1. Model only: input megapixels per second of a full-size A2N (random weights: speed does
   not depend on the values) at x2 and x4, fp32, contiguous vs channels-last memory layout,
   on the CPU and on CUDA when present (plus fp16 channels-last there).
2. End to end: the core of `animesr upscale-image` (`animesr.image_job.upscale_images`: PNG
   read, Upscaler, PNG write) on `--images` generated size×size PNGs, divided by the
   model-only time on the same images with the same settings. A ratio near 1 means the
   files cost little next to the network.

Prints a table and writes JSON (default benchmarks/results/bench_upscale.json).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from animesr.checkpoint import LoadedModel
from animesr.config import ImageJob, InferenceSettings
from animesr.image_job import upscale_images
from animesr.imaging import write_image
from animesr.inference import Upscaler
from animesr.model import A2N, A2NConfig
from report import machine, parser, write_report


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up: kernel selection, allocator
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def random_model(scale: int) -> A2N:
    torch.manual_seed(0)
    return A2N(A2NConfig(scale=scale)).eval()


def model_only(scale: int, size: int, device: torch.device, dtype: torch.dtype, channels_last: bool,
               repeats: int) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = random_model(scale).to(device, dtype, memory_format=fmt)
    x = (torch.rand(1, 3, size, size, device=device) * 255).to(dtype).contiguous(memory_format=fmt)

    @torch.inference_mode()
    def run() -> None:
        model(x)

    times = timed(run, device, repeats)
    median = statistics.median(times)
    return {
        "kind": "model", "scale": scale, "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "layout": "channels_last" if channels_last else "contiguous", "size": size,
        "seconds": median, "times": times, "input_mpix_per_s": size * size / 1e6 / median,
    }


def picture(size: int, seed: int) -> np.ndarray:
    """A cartoon-like RGB picture: flat regions, hard edges, a gradient (PNG-compressible like anime)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    image = np.zeros((size, size, 3), np.float32)
    image[:] = rng.uniform(0.3, 0.9, 3)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 16, size / 4)]
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    image *= (0.8 + 0.2 * x / size)[..., None]
    return (image * 255 + 0.5).astype(np.uint8)


def end_to_end(scale: int, size: int, device: torch.device, n_images: int, repeats: int) -> dict:
    settings = InferenceSettings(device=str(device), backend="torch")  # model-only below is torch too
    upscaler = Upscaler(LoadedModel(random_model(scale), 255.0, "random"), settings)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        images = [picture(size, seed) for seed in range(n_images)]
        for i, image in enumerate(images):
            write_image(src / f"frame{i:03d}.png", image)
        job = ImageJob(inputs=(src,), output_dir=out, scale=scale, model=None, fmt="png",
                       overwrite=True, inference=settings)

        def files() -> None:
            summary = upscale_images(job, upscaler)
            assert summary.ok and len(summary.done) == n_images, summary.failed

        tensors = [torch.from_numpy(image)[None] for image in images]

        def network() -> None:
            with torch.inference_mode():
                for pixels in tensors:  # same conversion and network path as upscale(), no files
                    x = pixels.to(upscaler.device).permute(0, 3, 1, 2).to(upscaler.dtype)
                    upscaler.model(x.contiguous(memory_format=torch.channels_last))

        e2e = statistics.median(timed(files, device, repeats))
        net = statistics.median(timed(network, device, repeats))
    return {
        "kind": "end_to_end", "scale": scale, "device": str(device), "dtype": str(upscaler.dtype).removeprefix("torch."),
        "layout": "channels_last", "size": size, "images": n_images,
        "seconds": e2e, "model_seconds": net, "ratio": e2e / net,
        "input_mpix_per_s": n_images * size * size / 1e6 / e2e,
    }


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__, "bench_upscale")
    options.add_argument("--size", type=int, default=256, help="input side in pixels (default 256)")
    options.add_argument("--repeats", type=int, default=3, help="timed runs per row, after one warm-up (default 3)")
    options.add_argument("--images", type=int, default=2, help="images for the end-to-end rows (default 2)")
    options.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    options.add_argument("--cpu-only", action="store_true", help="skip CUDA even when present")
    options.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = options.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))

    rows = []
    for device in devices:
        for scale in args.scales:
            for channels_last in (False, True):
                rows.append(model_only(scale, args.size, device, torch.float32, channels_last, args.repeats))
                print_row(rows[-1])
            if device.type == "cuda":
                rows.append(model_only(scale, args.size, device, torch.float16, True, args.repeats))
                print_row(rows[-1])
            rows.append(end_to_end(scale, args.size, device, args.images, args.repeats))
            print_row(rows[-1])

    result = {
        "benchmark": "bench_upscale",
        "machine": machine(),
        "settings": {"size": args.size, "repeats": args.repeats, "images": args.images},
        "rows": rows,
    }
    write_report(args.json, result)
    print(f"\nwrote {args.json}")
    return 0


_HEADER_PRINTED = False


def print_row(row: dict) -> None:
    global _HEADER_PRINTED
    if not _HEADER_PRINTED:
        print(f"{'what':<11} {'scale':>5} {'device':<7} {'dtype':<8} {'layout':<14} {'size':>5} "
              f"{'seconds':>8} {'in MP/s':>8} {'e2e/model':>9}")
        _HEADER_PRINTED = True
    ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
    print(f"{row['kind']:<11} {'x' + str(row['scale']):>5} {row['device']:<7} {row['dtype']:<8} {row['layout']:<14} "
          f"{row['size']:>5} {row['seconds']:>8.3f} {row['input_mpix_per_s']:>8.4g} {ratio:>9}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
