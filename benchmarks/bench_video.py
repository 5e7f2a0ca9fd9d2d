"""upscale-video throughput: end-to-end frames/s against model-only frames/s on the same frames
(their ratio is what the pipeline keeps of the network's speed), and the speed-up from held-frame
reuse on a real anime clip. A full-size A2N with random weights: timing only.

    python benchmarks/bench_video.py --frames 8
    python benchmarks/bench_video.py --frames 48 --devices cpu,cuda --json results/video.json
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from animesr.checkpoint import load_checkpoint, save_checkpoint
from animesr.config import DEFAULT_DEDUP_THRESHOLD, InferenceSettings, VideoJob
from animesr.inference.upscaler import Upscaler
from animesr.model import A2N, A2NConfig
from animesr.video import commands
from animesr.video.ffmpeg import FrameReader, ffmpeg_exe
from animesr.video.pipeline import upscale_video
from animesr.video.probe import probe
from report import SHARED, machine, parser, write_report

ANIME_CLIPS = (SHARED / "data/video/anime4kml_digimon_720p.mp4", SHARED / "data/video/w2xex_2_anime_360p.mp4")
REUSE_CLIPS = ANIME_CLIPS[::-1]  # the 360p clip first: the full network on 720p is slow on a CPU
SIZE = (576, 432)


def main() -> None:
    args = _parse()
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    if not devices:
        raise SystemExit(f"bench_video: none of --devices {args.devices} is available here")
    with tempfile.TemporaryDirectory(prefix="bench-video-") as folder:
        work = Path(folder)
        clip = _make_clip(work, args.frames)
        config = {"channels": 8, "up_channels": 8, "blocks": 1} if args.tiny else {}
        rows = [_throughput(work, clip, scale, device, args.batch, config)
                for device in devices for scale in (int(s) for s in args.scales.split(","))]
        reuse = _reuse(work, args.reuse_clip, args.reuse_frames, devices[0], args.batch, config)
    report = {"machine": machine(), "model": "tiny" if args.tiny else "a2n-full (random weights)",
              "frames": args.frames, "batch": args.batch, "throughput": rows, "held_frame_reuse": reuse}
    _print(report)
    write_report(args.json, report)
    print(f"\nwrote {args.json}")


def _parse() -> argparse.Namespace:
    options = parser(__doc__, "bench_video")
    options.add_argument("--frames", type=int, default=24, help="frames per throughput measurement")
    options.add_argument("--scales", default="4,2")
    options.add_argument("--devices", default="cpu,cuda", help="cuda is skipped where absent")
    options.add_argument("--batch", type=int, default=None, help="default: 4 on CUDA, 1 on the CPU")
    options.add_argument("--reuse-clip", type=Path, default=next((c for c in REUSE_CLIPS if c.is_file()), None),
                         help="real anime clip for the held-frame measurement (default: from ../shared)")
    options.add_argument("--reuse-frames", type=int, default=24)
    options.add_argument("--tiny", action="store_true",
                         help="an 8-channel one-block A2N: checks the script, and shows pure pipeline overhead")
    return options.parse_args()


def _make_clip(folder: Path, frames: int) -> Path:
    """576×432 H.264: a real anime clip scaled down when ../shared is here, else a test pattern."""
    clip = folder / "bench.mkv"
    real = next((c for c in ANIME_CLIPS if c.is_file()), None)
    source = ["-i", str(real)] if real else ["-f", "lavfi", "-i", f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate=24"]
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *source, "-map", "0:v:0", "-vf",
                    f"scale={SIZE[0]}:{SIZE[1]},setsar=1", "-frames:v", str(frames), "-c:v", "libx264", "-crf", "18",
                    str(clip)], check=True)
    return clip


def _model_file(folder: Path, scale: int, config: dict) -> Path:
    path = folder / f"a2n-random-x{scale}.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_checkpoint(path, A2N(A2NConfig(scale=scale, **config)), value_range=1.0)
    return path


def _throughput(folder: Path, clip: Path, scale: int, device: str, batch: int | None, config: dict) -> dict:
    model = _model_file(folder, scale, config)
    job = VideoJob(input=clip, output=folder / f"out-x{scale}-{device}.mkv", scale=scale, model=model,
                   batch=batch, dedup_threshold=0, overwrite=True, inference=InferenceSettings(device=device))
    frames = _decode(job)
    upscaler = Upscaler(load_checkpoint(model, scale), job.inference)
    upscaler.upscale_frames(frames[:1])  # warm-up (allocator, cuDNN)
    began = time.perf_counter()
    step = batch or (4 if device.startswith("cuda") else 1)
    for start in range(0, len(frames), step):
        upscaler.upscale_frames(frames[start:start + step])
    _sync(device)
    model_fps = len(frames) / (time.perf_counter() - began)
    began = time.perf_counter()
    result = upscale_video(job)
    end_to_end_fps = result.frames / (time.perf_counter() - began)
    return {"device": device, "scale": scale, "input": f"{SIZE[0]}x{SIZE[1]}", "frames": len(frames),
            "model_fps": round(model_fps, 4), "end_to_end_fps": round(end_to_end_fps, 4),
            "ratio": round(end_to_end_fps / model_fps, 3)}


def _reuse(folder: Path, clip: Path | None, frames: int, device: str, batch: int | None,
           config: dict) -> dict | None:
    if clip is None or not clip.is_file():
        return None
    info = probe(clip)
    seconds = frames / float(info.frame_rate)
    timings = {}
    for threshold in (0.0, DEFAULT_DEDUP_THRESHOLD):
        job = VideoJob(input=clip, output=folder / f"reuse-{threshold}.mkv", scale=2, model=_model_file(folder, 2, config),
                       duration=seconds, batch=batch, dedup_threshold=threshold, overwrite=True,
                       inference=InferenceSettings(device=device))
        began = time.perf_counter()
        result = upscale_video(job)
        timings[threshold] = (time.perf_counter() - began, result.reused, result.frames)
    (off, _, total), (on, reused, _) = timings[0.0], timings[DEFAULT_DEDUP_THRESHOLD]
    return {"clip": clip.name, "size": f"{info.width}x{info.height}", "scale": 2, "device": device, "frames": total,
            "threshold": DEFAULT_DEDUP_THRESHOLD, "reused": reused, "reused_share": round(reused / total, 3),
            "seconds_without": round(off, 2), "seconds_with": round(on, 2), "speedup": round(off / on, 3)}


def _decode(job: VideoJob) -> np.ndarray:
    info = probe(job.input)
    reader = FrameReader(commands.decode_args(info, job, 0), info.width, info.height)
    frames = []
    while (frame := reader.read()) is not None:
        frames.append(frame)
    return np.stack(frames)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _print(report: dict) -> None:
    print(f"{'device':8} {'scale':>5} {'input':>9} {'frames':>6} {'model fps':>10} {'e2e fps':>9} {'ratio':>6}")
    for row in report["throughput"]:
        print(f"{row['device']:8} {'x' + str(row['scale']):>5} {row['input']:>9} {row['frames']:>6} "
              f"{row['model_fps']:>10.3f} {row['end_to_end_fps']:>9.3f} {row['ratio']:>6.2f}")
    reuse = report["held_frame_reuse"]
    if reuse:
        print(f"\nheld frames ({reuse['clip']}, {reuse['size']} x2, {reuse['frames']} frames, threshold "
              f"{reuse['threshold']}): reused {reuse['reused']} ({100 * reuse['reused_share']:.0f}%), "
              f"{reuse['seconds_without']} s -> {reuse['seconds_with']} s, speed-up x{reuse['speedup']}")


if __name__ == "__main__":
    main()
