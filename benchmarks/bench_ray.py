"""upscale-video on Ray workers (`--workers ray`): wall time of a few short clips on 1 and 2 local
workers (and in this process, for reference), and Ray's cost per chunk (task, result, transfer:
the driver's time on a chunk minus the worker's own) against the model's time on a GPU-sized chunk
(--chunk-frames frames of --size input, the full A2N, measured on --device). The overhead must stay
under 5 % of a chunk's model time. A full-size A2N with random weights: timing only.

    python benchmarks/bench_ray.py
    python benchmarks/bench_ray.py --device cuda --size 720x480 --chunk-frames 240   # on a GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from animesr.checkpoint import load_checkpoint, save_checkpoint
from animesr.config import DEFAULT_CHUNK_FRAMES, InferenceSettings, VideoJob
from animesr.inference.upscaler import Upscaler
from animesr.model import A2N, A2NConfig
from animesr.video.batch import plan_videos, upscale_videos
from animesr.video.distributed import RayPool, RaySettings
from animesr.video.ffmpeg import ffmpeg_exe
from animesr.video.pipeline import VideoCallbacks, upscale_video
from report import machine, parser, write_report

OVERHEAD_LIMIT = 0.05


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)  # the workers use the driver's thread count
    import ray

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as folder:
        work = Path(folder)
        model = _model_file(work, args.tiny)
        clips = [_make_clip(work, f"clip{i}.mkv", args.clip_frames, args.clip_size, seed=i) for i in range(args.clips)]
        began = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - began
        try:
            local = _run_clips(work / "local", clips, model, args.chunk, None)
            one = _run_clips(work / "one", clips, model, args.chunk, RaySettings(workers=1))
            two = _run_clips(work / "two", clips, model, args.chunk, RaySettings(workers=2))
            sent = _run_clips(work / "bytes", clips, model, args.chunk, RaySettings(workers=1, shared_storage=False))
            transfer = _transfer_seconds(args.chunk_mib)
        finally:
            ray.shutdown()
        chunk_model = _model_seconds_per_chunk(args, model)
    overhead = {"shared storage": _median_overhead(one["timings"]),
                "chunks sent back as bytes": _median_overhead(sent["timings"]) + transfer}
    worst = max(overhead.values())
    report = {
        "machine": machine(), "model": "tiny" if args.tiny else "a2n-full (random weights)", "threads": args.threads,
        "ray_start_s": round(ray_start, 2),
        "clips": {"count": args.clips, "frames": args.clip_frames, "size": args.clip_size, "chunk_frames": args.chunk},
        "wall_s": {"this process": local["seconds"], "1 Ray worker": one["seconds"], "2 Ray workers": two["seconds"]},
        "speedup_2_over_1_workers": round(one["seconds"] / two["seconds"], 2),
        "overhead_per_chunk_s": {k: round(v, 4) for k, v in overhead.items()},
        "chunk_transfer": {"mib": args.chunk_mib, "s": round(transfer, 4)},
        "gpu_sized_chunk": {"frames": args.chunk_frames, "size": args.size, "device": args.device, "scale": 2,
                            "model_s": round(chunk_model, 2)},
        "overhead_share": float(f"{worst / chunk_model:.3g}"),
        "overhead_ok": worst / chunk_model < OVERHEAD_LIMIT,
        "break_even_fps": round(args.chunk_frames / (worst / OVERHEAD_LIMIT), 1),
    }
    _print(report)
    write_report(args.json, report)
    print(f"\nwrote {args.json}")


def _parse() -> argparse.Namespace:
    options = parser(__doc__, "bench_ray")
    options.add_argument("--clips", type=int, default=3)
    options.add_argument("--clip-frames", type=int, default=16)
    options.add_argument("--clip-size", default="96x72")
    options.add_argument("--chunk", type=int, default=4, help="chunk frames of the clip runs")
    options.add_argument("--threads", type=int, default=1, help="torch threads of this process and of each worker")
    options.add_argument("--tiny", action="store_true", help="a tiny network (a quick check of the script)")
    options.add_argument("--device", default="cpu", help="where the GPU-sized chunk's model time is measured")
    options.add_argument("--size", default="720x480", help="input size of the GPU-sized chunk (DVD)")
    options.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES)
    options.add_argument("--model-frames", type=int, default=1, help="frames timed to estimate the chunk")
    options.add_argument("--chunk-mib", type=float, default=16.0,
                         help="size of a GPU-sized chunk file sent back as bytes (240 frames of 1440×960 x264 "
                              "CRF 18 anime: about 10-20 MiB)")
    return options.parse_args()


def _model_file(folder: Path, tiny: bool) -> Path:
    torch.manual_seed(0)
    config = A2NConfig(scale=2, channels=8, up_channels=8, blocks=1) if tiny else A2NConfig(scale=2)
    path = folder / "model.safetensors"
    save_checkpoint(path, A2N(config), value_range=1.0)
    return path


def _make_clip(folder: Path, name: str, frames: int, size: str, seed: int) -> Path:
    path = folder / name
    source = f"testsrc2=size={size}:rate=24:duration={frames / 24},hue=h={seed * 60}"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264", str(path)],
                   check=True)
    return path


def _run_clips(out: Path, clips: list[Path], model: Path, chunk: int, settings: RaySettings | None) -> dict:
    template = VideoJob(input=clips[0], output=out / "x.mkv", scale=2, model=model, chunk_frames=chunk)
    tasks = plan_videos(clips, out, False, "mkv")
    engines: list = []
    if settings is None:
        began = time.perf_counter()
        summary = upscale_videos(template, out, tasks, lambda job: upscale_video(job, VideoCallbacks()))
        return {"seconds": round(time.perf_counter() - began, 2), "timings": []}
    with RayPool(settings) as pool:
        def engine(loaded, job):
            engines.append(pool.engine(loaded, job))
            return engines[-1]

        pool.engine(*_loaded_and_job(model, template))  # workers started before the clock
        began = time.perf_counter()
        summary = upscale_videos(template, out, tasks, lambda job: upscale_video(job, VideoCallbacks(), engine))
        seconds = time.perf_counter() - began
    assert summary.line() == f"done {len(clips)}, skipped 0, failed 0", summary.failed
    return {"seconds": round(seconds, 2), "timings": [t for e in engines for t in e.timings]}


def _loaded_and_job(model: Path, job: VideoJob):
    return load_checkpoint(model, scale=2), job


def _transfer_seconds(mib: float, repeats: int = 5) -> float:
    """The extra time of a task that returns `mib` MiB (a chunk file) over one that returns nothing."""
    import ray

    @ray.remote(num_cpus=1)
    class Sender:
        def send(self, size: int) -> bytes:
            return bytes(size)

    sender = Sender.remote()
    ray.get(sender.send.remote(0))

    def timed(size: int) -> float:
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            ray.get(sender.send.remote(size))
            times.append(time.perf_counter() - began)
        return statistics.median(times)

    extra = max(0.0, timed(int(mib * 2**20)) - timed(0))
    ray.kill(sender)
    return extra


def _median_overhead(timings: list[tuple[float, float]]) -> float:
    return statistics.median(driver - worker for driver, worker in timings)


def _model_seconds_per_chunk(args: argparse.Namespace, model: Path) -> float:
    width, height = (int(v) for v in args.size.split("x"))
    upscaler = Upscaler(load_checkpoint(model, scale=2), InferenceSettings(device=args.device))
    frames = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    upscaler.upscale_frames(frames)  # warm-up
    if upscaler.device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(args.model_frames):
        upscaler.upscale_frames(frames)
    if upscaler.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / args.model_frames * args.chunk_frames


def _print(report: dict) -> None:
    print(f"Ray started in {report['ray_start_s']} s (not counted)")
    clips = report["clips"]
    print(f"{clips['count']} clips × {clips['frames']} frames {clips['size']}, chunks of {clips['chunk_frames']}:")
    for name, seconds in report["wall_s"].items():
        print(f"  {name:>14}: {seconds:7.2f} s")
    print(f"  2 workers ÷ 1 worker speed-up: {report['speedup_2_over_1_workers']}×")
    for name, seconds in report["overhead_per_chunk_s"].items():
        print(f"Ray's cost per chunk ({name}): {1000 * seconds:.1f} ms")
    print(f"  (bytes: with {report['chunk_transfer']['s'] * 1000:.1f} ms to send a "
          f"{report['chunk_transfer']['mib']} MiB chunk)")
    chunk = report["gpu_sized_chunk"]
    print(f"model time of a {chunk['frames']}-frame {chunk['size']} chunk on {chunk['device']}: {chunk['model_s']} s")
    verdict = "under" if report["overhead_ok"] else "OVER"
    print(f"overhead ÷ model time: {100 * report['overhead_share']:.3f} % ({verdict} the 5 % limit); it stays "
          f"under 5 % while the device upscales fewer than {report['break_even_fps']} frames/s")


if __name__ == "__main__":
    sys.exit(main())
