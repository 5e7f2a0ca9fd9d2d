"""Inference backends on this machine: speed ratios against torch float32 channels-last, their
accuracy cost, a roofline line, and the memory of large images.

    python benchmarks/bench_backends.py [--repeats 3] [--frames 3] [--images] [--compiled] [--json PATH]

1. Model only: one 576×432 frame, the shipped x2 and x4 models, each backend and precision timed
   interleaved (A, B, C, A, B, C…) so a noisy shared CPU hits every row alike; ratio = torch
   float32 seconds on the whole frame (the baseline) ÷ this row's seconds. Rows run the product's
   default tiling (torch on the CPU: cache-sized exact tiles), named in the `tiles` column. GMAC/s achieved against the CPU's FP32 peak
   (cores × 16 FP32 MAC/cycle, AVX2 FMA × clock), and the largest difference from torch float32
   (grey levels) and PSNR of the frame against torch float32.
2. End to end: `upscale-video` (decode, network, encode; held-frame reuse off) on a 576×432
   clip of `--frames` frames, per backend, ÷ torch float32.
3. Cost of reduced precision: validation Y-PSNR against HR on ../shared/data/anime/val (centre
   crops) for exact and fast, and their difference (target: at most 0.05 dB).
4. With --images: `animesr upscale-image` on a 1920×1080 picture at x2 and x4 in a fresh process
   each: seconds and peak RSS, default settings against whole-image runs.

Prints a table and writes JSON (default benchmarks/results/bench_backends.json).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from animesr.checkpoint import LoadedModel, load_checkpoint
from animesr.config import InferenceSettings, VideoJob
from animesr.imaging import read_image, write_image
from animesr.inference import Upscaler
from animesr.inference.backends import installed
from animesr.pretrained import shipped_model_path
from report import SHARED, machine, parser, write_report

VAL = SHARED / "data" / "anime" / "val"
CLIP = SHARED / "data" / "video" / "w2xex_2_anime_360p.mp4"
SIZE = (576, 432)
WHOLE = 4096  # a --tile larger than any frame here: the whole frame in one call
# (backend, precision, tile): the baseline is the issue's, torch float32 channels-last on the whole frame;
# tile None is the default policy (torch on the CPU: cache-sized tiles)
BASELINE = ("torch", "fp32", WHOLE)


COMPILED = "torch-compiled"  # the torch backend with --compile (model-only rows, with --compiled)


def configurations(compiled: bool = False) -> list[tuple[str, str, int | None]]:
    rows = [BASELINE, ("torch", "fp32", None), *([(COMPILED, "fp32", None)] if compiled else [])]
    if installed("onnxruntime"):
        rows.append(("onnxruntime", "exact", None))
    if installed("openvino"):
        rows += [("openvino", "exact", None), ("openvino", "fast", None)]
    return rows


def settings(backend: str, precision: str, tile: int | None = None) -> InferenceSettings:
    if backend == COMPILED:
        return InferenceSettings(device="cpu", backend="torch", precision=precision, tile=tile, compile=True)
    return InferenceSettings(device="cpu", backend=backend, precision=precision, tile=tile)


def tiles(upscaler: Upscaler, x: torch.Tensor) -> str:
    tile = upscaler.settings.tile or upscaler._auto_tile(x)
    return "whole" if tile is None or tile >= max(x.shape[2:]) else f"tiles {tile}"


def picture() -> np.ndarray:
    """A 576×432 frame: a real anime picture when ../shared is here, else generated line art."""
    for path in sorted(VAL.glob("*")) if VAL.is_dir() else []:
        image = read_image(path)[..., :3]
        if image.shape[0] >= SIZE[1] and image.shape[1] >= SIZE[0] and image.dtype == np.uint8:
            top, left = (image.shape[0] - SIZE[1]) // 2, (image.shape[1] - SIZE[0]) // 2
            return np.ascontiguousarray(image[top: top + SIZE[1], left: left + SIZE[0]])
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIZE[1], 0:SIZE[0]]
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8) + rng.integers(60, 200, 3, dtype=np.uint8)
    for _ in range(20):
        cy, cx, r = rng.uniform(0, SIZE[1]), rng.uniform(0, SIZE[0]), rng.uniform(10, 90)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(0, 255, 3, dtype=np.uint8)
    return image


def model(scale: int) -> LoadedModel:
    path = shipped_model_path(scale)
    return load_checkpoint(path, scale=scale)


def gmacs(loaded: LoadedModel, height: int, width: int) -> float:
    """Multiply-accumulates of one forward pass (convolutions and linears), counted with hooks."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    net = Upscaler(loaded, settings(*BASELINE)).model
    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.inference_mode():
        net(torch.zeros(1, 3, height, width))
    for hook in hooks:
        hook.remove()
    return total / 1e9


def cpu_peak_gmacs() -> tuple[float, float]:
    """(peak GMAC/s, clock GHz): cores × 16 FP32 MAC/cycle (two 8-wide FMA units) × the clock /proc reports."""
    mhz = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    except OSError:
        pass
    ghz = (mhz or 3000.0) / 1000
    return (os.cpu_count() or 1) * 16 * ghz, ghz


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ---- 1. model only ---------------------------------------------------------------------------------

def model_only(scale: int, frame: np.ndarray, repeats: int, peak: float, compiled: bool = False) -> list[dict]:
    loaded = model(scale)
    upscalers = {config: Upscaler(loaded, settings(*config)) for config in configurations(compiled)}
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() * (loaded.value_range / 255.0)
    outputs = {config: upscaler.upscale(frame) for config, upscaler in upscalers.items()}  # warm-up + accuracy
    times: dict[tuple[str, str, int | None], list[float]] = {config: [] for config in upscalers}
    for _ in range(repeats):
        for config, upscaler in upscalers.items():
            began = time.perf_counter()
            upscaler.run_network(x)
            times[config].append(time.perf_counter() - began)
    work = gmacs(loaded, *frame.shape[:2])
    base = statistics.median(times[BASELINE])
    rows = []
    for config, upscaler in upscalers.items():
        seconds = statistics.median(times[config])
        diff = np.abs(outputs[config].astype(int) - outputs[BASELINE].astype(int))
        rows.append({"kind": "model", "scale": scale, "backend": config[0], "precision": config[1],
                     "tiles": tiles(upscaler, x), "computes_in": upscaler.precision, "seconds": seconds, "times": times[config],
                     "ratio": base / seconds, "gmac": work, "gmac_per_s": work / seconds,
                     "share_of_peak": work / seconds / peak, "max_diff_levels": int(diff.max()),
                     "psnr_vs_torch_fp32": psnr(outputs[config], outputs[BASELINE])})
        print_row(rows[-1])
    return rows


# ---- 2. end to end -------------------------------------------------------------------------------------

def make_clip(folder: Path, frames: int) -> Path:
    from animesr.video.ffmpeg import ffmpeg_exe

    clip = folder / "clip.mkv"
    source = ["-i", str(CLIP)] if CLIP.is_file() else ["-f", "lavfi", "-i", f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=24"]
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *source, "-map", "0:v:0", "-vf",
                    f"scale={SIZE[0]}:{SIZE[1]},setsar=1", "-frames:v", str(frames), "-c:v", "libx264", "-crf", "18",
                    str(clip)], check=True)
    return clip


def end_to_end(scale: int, clip: Path, folder: Path) -> list[dict]:
    from animesr.video.pipeline import upscale_video

    times = {}
    for config in configurations():
        job = VideoJob(input=clip, output=folder / f"out-{scale}-{config[0]}-{config[1]}-{config[2]}.mkv", scale=scale,
                       dedup_threshold=0, overwrite=True, resume=False, inference=settings(*config))
        Upscaler(model(scale), job.inference)  # export and compile outside the timing (cached from here on)
        began = time.perf_counter()
        result = upscale_video(job)
        times[config] = (time.perf_counter() - began, result.frames)
    base = times[BASELINE][0]
    rows = []
    for config, (seconds, frames) in times.items():
        rows.append({"kind": "end_to_end_video", "scale": scale, "backend": config[0], "precision": config[1],
                     "tiles": "whole" if config[2] == WHOLE else "default", "frames": frames, "seconds": seconds, "fps": frames / seconds, "ratio": base / seconds})
        print_row(rows[-1])
    return rows


# ---- 3. cost of fast ------------------------------------------------------------------------------------

def fast_cost(scale: int, crop: int) -> dict | None:
    if not VAL.is_dir() or not installed("openvino"):
        return None
    from animesr.training.validation import load_hr_images, mean_score, score_images

    images = load_hr_images([VAL], crop)
    loaded = model(scale)
    exact = Upscaler(loaded, settings("openvino", "exact"))
    fast = Upscaler(loaded, settings("openvino", "fast"))
    exact_psnr = mean_score(score_images(images, exact)).psnr
    fast_psnr = mean_score(score_images(images, fast)).psnr
    import cv2

    lr_psnrs = []
    for _, hr in images:
        lr = cv2.resize(hr, (hr.shape[1] // scale, hr.shape[0] // scale), interpolation=cv2.INTER_AREA)
        lr_psnrs.append(psnr(fast.upscale(lr), exact.upscale(lr)))
    row = {"kind": "fast_cost", "scale": scale, "crop": crop, "images": len(images),
           "val_psnr_exact": exact_psnr, "val_psnr_fast": fast_psnr, "val_psnr_change": fast_psnr - exact_psnr,
           "psnr_fast_vs_exact_output": statistics.mean(lr_psnrs), "fast_computes_in": fast.precision}
    print(f"fast cost x{scale}: validation Y-PSNR {exact_psnr:.3f} (exact) → {fast_psnr:.3f} (fast), "
          f"change {fast_psnr - exact_psnr:+.3f} dB; fast vs exact output {row['psnr_fast_vs_exact_output']:.1f} dB",
          flush=True)
    return row


# ---- 4. large images ---------------------------------------------------------------------------------------

# The child's peak RSS is measured by a small launcher that spawns it: a child forked straight from
# this process would inherit this process's high-water mark (Linux keeps it across exec).
_PEAK_RSS_LAUNCHER = """
import os, sys
devnull = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=devnull)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def large_image(folder: Path, scale: int, label: str, args: list[str]) -> dict:
    source = folder / "big.png"
    if not source.exists():
        frame = picture()
        import cv2

        write_image(source, cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_CUBIC))
    command = [sys.executable, "-m", "animesr", "upscale-image", str(source), "-o", str(folder / f"out-{label}"),
               "-s", str(scale), "--overwrite", *args]
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS_LAUNCHER, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - began
    peak_kib, exit_code = (int(v) for v in done.stdout.split())
    first = (done.stderr.strip().splitlines() or [""])[0]
    row = {"kind": "image_1920x1080", "scale": scale, "label": label, "args": args, "seconds": seconds,
           "peak_rss_gb": peak_kib * 1024 / 1e9, "exit": exit_code, "first_line": first}
    print(f"1920×1080 x{scale} {label:<28} {seconds:8.1f} s  peak RSS {row['peak_rss_gb']:.2f} GB  [{first}]", flush=True)
    return row


def large_images(folder: Path) -> list[dict]:
    """Each backend's default (exact tiles from the RAM budget) against its whole-image run where that
    fits: x2 on every backend; at x4 (whole needs about 11 GB on OpenVINO, 14 GB on torch) the whole
    image on the first backend only, when RAM allows."""
    from animesr.device import available_ram_bytes

    backends = [name for name in ("openvino", "onnxruntime", "torch") if installed(name)]
    rows = []
    for scale in (2, 4):
        rows.append(large_image(folder, scale, "default", []))
        for backend in backends[1:]:
            rows.append(large_image(folder, scale, f"{backend} tiled (default)", ["--backend", backend]))
        for backend in backends if scale == 2 else backends[:1]:
            if scale == 4 and (available_ram_bytes() or 0) < 16 * 2**30:
                print(f"1920×1080 x4 {backend} whole image: skipped (under 16 GiB of RAM available)", flush=True)
                continue
            rows.append(large_image(folder, scale, f"{backend} whole image", ["--backend", backend, "--tile", "4096"]))
    for row in rows:
        backend = row["first_line"].split("backend ")[-1].split(" ")[0] if "backend " in row["first_line"] else None
        whole = [r["seconds"] for r in rows if r["scale"] == row["scale"] and r["label"] == f"{backend} whole image"]
        if "whole" not in row["label"] and whole:
            row["tiled_over_whole"] = row["seconds"] / whole[0]
            print(f"  x{row['scale']} {row['label']} ({backend}) ÷ whole image: {row['tiled_over_whole']:.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__, "bench_backends")
    options.add_argument("--repeats", type=int, default=3)
    options.add_argument("--frames", type=int, default=3, help="frames of the end-to-end clip (0: skip)")
    options.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    options.add_argument("--val-crop", type=int, default=256, help="HR centre crop for the cost of fast")
    options.add_argument("--images", action="store_true", help="also the 1920×1080 upscale-image rows (minutes)")
    options.add_argument("--skip", nargs="+", default=[], choices=["model", "cost"],
                         help="leave out the model-only rows or the cost of fast (the other parts: --frames 0, --images)")
    options.add_argument("--compiled", action="store_true",
                         help="also a model-only row for the torch backend with --compile (compiles first: minutes)")
    args = options.parse_args(argv)
    os.environ.setdefault("ANIMESR_CACHE", str(Path(tempfile.gettempdir()) / "animesr-bench-cache"))
    peak, ghz = cpu_peak_gmacs()
    print(f"CPU peak: {os.cpu_count()} cores × 16 FP32 MAC/cycle × {ghz:.2f} GHz = {peak:.0f} GMAC/s", flush=True)
    frame = picture()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        folder = Path(tmp)
        for scale in args.scales if "model" not in args.skip else ():
            rows += model_only(scale, frame, args.repeats, peak, args.compiled)
        if args.frames:
            clip = make_clip(folder, args.frames)
            for scale in args.scales:
                rows += end_to_end(scale, clip, folder)
        for scale in args.scales if "cost" not in args.skip else ():
            cost = fast_cost(scale, args.val_crop)
            if cost:
                rows.append(cost)
        if args.images:
            rows += large_images(folder)
    result = {
        "benchmark": "bench_backends",
        "machine": machine() | {"peak_gmac_per_s": peak, "clock_ghz": ghz, "versions": _versions()},
        "settings": vars(args) | {"json": str(args.json), "size": SIZE},
        "rows": rows,
    }
    write_report(args.json, result)
    print(f"\nwrote {args.json}")
    return 0


def _versions() -> dict:
    versions = {}
    for name in ("openvino", "onnxruntime", "onnx"):
        if installed(name) or name == "onnx":
            try:
                versions[name] = __import__(name).__version__
            except ImportError:
                pass
    return versions


def print_row(row: dict) -> None:
    extra = ""
    if row["kind"] == "model":
        extra = (f"{row['gmac_per_s']:6.1f} GMAC/s ({100 * row['share_of_peak']:4.1f}% of peak)  "
                 f"max diff {row['max_diff_levels']} levels, {row['psnr_vs_torch_fp32']:.1f} dB vs torch fp32")
    print(f"{row['kind']:<17} x{row['scale']} {row['backend']:<12} {row['precision']:<6} {row['tiles']:<10} "
          f"{row['seconds']:8.2f} s  "
          f"×{row['ratio']:.2f}  {extra}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
