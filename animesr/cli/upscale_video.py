"""`animesr upscale-video`: one video in, one upscaled video out, every other stream kept; or many
videos (files, folders) into an output folder; on this machine or on Ray workers."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TextColumn

from animesr.cli import app
from animesr.cli.common import (BackendOption, CompileOption, DenoiseOption, DeviceOption, ModelOption,
                                 PrecisionOption, ScaleOption, TtaOption, console, fail, guarded, note,
                                 progress_bar, summary_before_a_stop, warn)
from animesr.cli.signals import Terminated, stop_on_signals
from animesr.config import (DEFAULT_CHUNK_FRAMES, DEFAULT_CRF, DEFAULT_DEDUP_THRESHOLD, EncodeSettings,
                            InferenceSettings, VideoJob)
from animesr.errors import InputError

_WORKERS_HELP = ("local (this process, one device), ray (a local Ray instance, or the cluster RAY_ADDRESS names) "
                 "or ray:ADDRESS (HOST:PORT, auto, ray://HOST:10001): chunks upscaled by Ray workers, one per GPU "
                 "(one per CPU without GPUs); needs pip install \"animesr[ray]\".")


@app.command("upscale-video")
def upscale_video(
    inputs: Annotated[list[Path], typer.Argument(
        metavar="INPUT", show_default=False, help="The video to upscale, or several videos and/or folders of videos.")],
    output_text: Annotated[str, typer.Option(  # text, not Path: Path drops the trailing separator
        "--output", "-o", help="Output file for one input; its extension picks the container (.mkv, .mp4, "
                               ".mov, .webm; none: MKV). Output folder (created if missing) for several "
                               "inputs, a folder, when it is an existing folder, or when it ends in /.")],
    scale: ScaleOption,
    model: ModelOption = None,
    denoise: DenoiseOption = None,
    codec: Annotated[str, typer.Option(
        "--codec", help="ffmpeg video encoder: libx264, libx265, libsvtav1, "
                        "libvpx-vp9, ffv1, or hardware: h264_nvenc, "
                        "hevc_qsv, av1_amf, ...")] = "libx264",
    crf: Annotated[int | None, typer.Option(
        "--crf", help="Constant quality (lower: better; default 18): CRF for x264/x265/SVT-AV1/VP9/"
                      "AOM, -cq for NVENC, -global_quality for QSV, QP for AMF.")] = None,
    preset: Annotated[str | None, typer.Option(
        "--preset", help="Encoder preset (x264: ultrafast..veryslow).")] = None,
    pix_fmt: Annotated[str, typer.Option(
        "--pix-fmt", help="Output pixel format, e.g. yuv420p10le for 10-bit.")] = "yuv420p",
    fps: Annotated[str | None, typer.Option(
        "--fps", help="Convert to this constant rate (25, 24000/1001) by duplicating or "
                      "dropping frames; default: keep the source's timestamps.")] = None,
    deinterlace: Annotated[bool, typer.Option(
        "--deinterlace", help="Deinterlace the combed frames with ffmpeg's "
                              "bwdif first (same as --field-mode deinterlace).")] = False,
    ivtc: Annotated[bool, typer.Option(
        "--ivtc", help="Inverse telecine: 29.97 fps film back to its 23.976 frames "
                       "(same as --field-mode ivtc).")] = False,
    field_mode: Annotated[str | None, typer.Option(
        "--field-mode", help="auto (measure the frames and choose), ivtc, deinterlace, or "
                             "progressive (frames as they are; the default).")] = None,
    start: Annotated[str | None, typer.Option("--start", help="Start here (seconds or [HH:]MM:SS[.ms]).")] = None,
    duration: Annotated[str | None, typer.Option(
        "--duration", help="Upscale this long (seconds or [HH:]MM:SS).")] = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", "-b", help="Frames per network call (default: 4 on CUDA, "
                              "1 on the CPU).")] = None,
    tile: Annotated[int | None, typer.Option("--tile", "-t", help="Tile size in input pixels (exact).")] = None,
    device: DeviceOption = "auto",
    backend: BackendOption = "auto",
    precision: PrecisionOption = "auto",
    tta: TtaOption = False,
    compiled: CompileOption = False,
    resume: Annotated[bool, typer.Option(
        "--resume/--no-resume", help="Continue an interrupted run from its last complete chunk.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing OUTPUT.")] = False,
    dedup_threshold: Annotated[float, typer.Option(
        "--dedup-threshold", help="Held frames: reuse the last output when no 16×16 block differs "
                                  "by more than this many grey levels on average (0: off).")] = DEFAULT_DEDUP_THRESHOLD,
    chunk_frames: Annotated[int, typer.Option(
        "--chunk-frames", help="Frames per resumable chunk.")] = DEFAULT_CHUNK_FRAMES,
    accept_truncated: Annotated[bool, typer.Option(
        "--accept-truncated", help="Upscale what decodes of a source shorter than its container "
                                   "declares (a cut download), with a warning instead of an error.")] = False,
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Folders: descend into sub-folders and "
                                  "mirror them in the output folder.")] = False,
    container: Annotated[str | None, typer.Option(
        "--container", help="Output folder: the outputs' container (mkv, mp4, mov, webm; "
                            "default mkv); each is named after its input.")] = None,
    workers: Annotated[str, typer.Option("--workers", help=_WORKERS_HELP)] = "local",
    ray_workers: Annotated[int | None, typer.Option(
        "--ray-workers", help="With --workers ray: how many workers "
                              "(default: every GPU, or every CPU).")] = None,
) -> None:
    """Upscale videos with A2N, keeping their audio, subtitles, chapters, timing and colours."""
    from animesr.video.distributed import parse_workers
    from animesr.video.commands import has_quality_setting
    from animesr.video.preflight import check_encode_options

    output = Path(output_text)
    folder_mode = len(inputs) > 1 or inputs[0].is_dir() or output.is_dir() or names_a_folder(output_text)
    if container is not None and not folder_mode:
        raise fail(f"--container is for an output folder; the extension of {output_text} picks the container "
                   "of one output file", InputError.exit_code)
    target = output / "placeholder.mkv" if folder_mode else output
    job = _build_job(
        input_path=inputs[0], output=target, scale=scale, model=model, denoise=denoise,
        encode=EncodeSettings(codec=codec, crf=DEFAULT_CRF if crf is None else crf, preset=preset, pix_fmt=pix_fmt),
        fps=fps, deinterlace=deinterlace,
        field_mode=_field_mode(field_mode, ivtc=ivtc, deinterlace=deinterlace), start=start, duration=duration,
        resume=resume, overwrite=overwrite, dedup_threshold=dedup_threshold, chunk_frames=chunk_frames,
        accept_truncated=accept_truncated, batch=batch, tile=tile, device=device, tta=tta, backend=backend,
        precision=precision, compiled=compiled)
    guarded(lambda: check_encode_options(job.encode))  # once for all videos, before any work
    if crf is not None and not has_quality_setting(codec):
        warn(f"--crf has no effect with --codec {codec}: it has no constant-quality setting")
    ray_settings = guarded(lambda: parse_workers(workers, ray_workers))  # before any work
    if ray_settings is not None and device.startswith("cuda:"):
        raise fail(f"--device {device} picks a GPU of this process; each Ray worker gets a GPU of its own: "
                   "use --device auto, cuda or cpu", InputError.exit_code)
    try:
        with stop_on_signals(), _engine(ray_settings) as engine:
            if folder_mode:
                _upscale_folder(job, inputs, output, recursive, (container or "mkv").lower().lstrip("."), engine)
            else:
                _report(_upscale_one(job, engine))
    except Terminated as stopped:
        raise fail(f"stopped by {stopped}; the same command resumes the work", stopped.exit_code) from None


def names_a_folder(text: str) -> bool:
    """`-o out/`: a trailing separator means a folder, whether it exists or not."""
    return text.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep))


def _upscale_one(job: VideoJob, engine):
    from animesr.video.pipeline import upscale_video as run_job  # torch only when there is work

    with progress_bar(TextColumn("{task.fields[fps]} fps"), TextColumn("reused {task.fields[reused]}"),
                      opened=False) as bar:
        callbacks = _progress_callbacks(bar)
        return guarded(lambda: run_job(job, callbacks, engine))


def _report(result) -> None:
    share = 100 * result.reused / max(result.frames, 1)
    note(f"reused {result.reused} of {result.frames} frames ({share:.0f}%) from held frames")
    for line in result.verification.lines():
        note(f"verified {line}")
    console.print(f"done in {result.seconds:.1f} s → {result.output}", markup=False)


def _upscale_folder(template: VideoJob, inputs: list[Path], output: Path, recursive: bool, container: str,
                    engine) -> None:
    from rich.markup import escape

    from animesr.video.batch import BatchCallbacks, plan_videos, upscale_videos
    from animesr.video.streams import container_for

    guarded(lambda: container_for(Path(f"x.{container}")))
    tasks = guarded(lambda: plan_videos(inputs, output, recursive, container, overwrite=template.overwrite,
                                        note=note))
    guarded(lambda: _check_job_wide(template, container, local=engine is None))
    note(f"{len(tasks)} video(s) → {output}")

    def on_video(number: int, total: int, task) -> None:
        note(f"[{number}/{total}] {task.source} → {task.target}")

    def on_skipped(task) -> None:
        note(f"skipped {task.source}: {task.target} exists (use --overwrite to replace it)")

    callbacks = BatchCallbacks(on_video=on_video, on_done=lambda task, result: _report(result),
                               on_skipped=on_skipped, on_failed=lambda task, message: warn(f"failed: {message}"))
    summary = guarded(lambda: summary_before_a_stop(
        lambda: upscale_videos(template, output, tasks, lambda job: _run_quietly(job, engine), callbacks), output))
    console.print(f"{summary.line()} → {output}", markup=False)
    if summary.failed:
        names = "\n".join(f"  {escape(str(source))}" for source, _ in summary.failed)
        raise fail(f"{len(summary.failed)} video(s) failed:\n{names}", 1)


def _check_job_wide(template: VideoJob, container: str, *, local: bool) -> None:
    """What every video of a folder job shares, checked once before the first: the encoder with its
    options in the container, the model, and (in this process) the device. Each would otherwise
    fail every video."""
    from animesr.inference.upscaler import Upscaler
    from animesr.pretrained import resolve_model
    from animesr.video.ffmpeg import video_encoders
    from animesr.video.preflight import TRIAL_SIZE, check_encoder_opens
    from animesr.video.streams import check_video_codec, container_for

    muxer = container_for(Path(f"x.{container}"))  # --codec, --crf and --pix-fmt were checked with the options
    check_video_codec(muxer, template.encode.codec, video_encoders())
    # beside=None: the output folder may not exist yet
    check_encoder_opens(None, template.encode, width=TRIAL_SIZE[0], height=TRIAL_SIZE[1], container=muxer,
                        beside=None)
    loaded = resolve_model(template.model, template.scale, template.denoise)
    if local:
        Upscaler(loaded, template.inference)


def _run_quietly(job: VideoJob, engine):
    """One video of a folder: its own progress bar; its errors go up to the batch, which goes on."""
    from animesr.video.pipeline import upscale_video as run_job

    with progress_bar(TextColumn("{task.fields[fps]} fps"), TextColumn("reused {task.fields[reused]}"),
                      opened=False) as bar:
        return run_job(job, _progress_callbacks(bar), engine)


@contextmanager
def _engine(settings) -> Iterator[object]:
    """None (the pipeline's LocalEngine), or a Ray pool's engine factory for the whole command."""
    if settings is None:
        yield None
        return
    from animesr.video.distributed import RayPool

    pool = guarded(lambda: RayPool(settings).__enter__())
    try:
        yield pool.engine
    finally:
        pool.__exit__(None, None, None)


_TIME = re.compile(r"(?:(?:(?P<hours>[0-9]+):)?(?P<minutes>[0-9]+):)?(?P<seconds>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def parse_time(text: str | None, option: str) -> float | None:
    """'90', '90.5', '1:30', '00:01:30.5' -> seconds; minutes and seconds after a colon are below 60."""
    if text is None:
        return None
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise _bad_time(text, option)
    hours, minutes, seconds = (float(match[unit] or 0) for unit in ("hours", "minutes", "seconds"))
    if (match["minutes"] is not None and seconds >= 60) or (match["hours"] is not None and minutes >= 60):
        raise _bad_time(text, option)
    return hours * 3600 + minutes * 60 + seconds


def _bad_time(text: str, option: str) -> typer.Exit:
    return fail(f"{option} must be seconds or [HH:]MM:SS[.ms], not {text!r}", InputError.exit_code)


def _build_job(*, input_path: Path, output: Path, scale: int, model: str | None, denoise: float | None,
               encode: EncodeSettings, fps: str | None, deinterlace: bool, field_mode: str, start: str | None,
               duration: str | None, resume: bool, overwrite: bool, dedup_threshold: float, chunk_frames: int,
               accept_truncated: bool, batch: int | None, tile: int | None, device: str, tta: bool, backend: str,
               precision: str, compiled: bool = False) -> VideoJob:
    from animesr.model.a2n import SUPPORTED_SCALES
    from animesr.pretrained import check_model_choice, model_choice

    if scale not in SUPPORTED_SCALES:
        raise fail(f"--scale must be 2, 3 or 4, not {scale}", InputError.exit_code)
    chosen = guarded(lambda: model_choice(model))
    guarded(lambda: check_model_choice(chosen, scale, denoise))
    try:
        return VideoJob(
            input=input_path, output=output, scale=scale, model=chosen, denoise=denoise, encode=encode,
            fps=_rate(fps), deinterlace=deinterlace, start=parse_time(start, "--start"),
            duration=parse_time(duration, "--duration"), batch=batch, resume=resume, overwrite=overwrite,
            dedup_threshold=dedup_threshold, chunk_frames=chunk_frames, accept_truncated=accept_truncated,
            field_mode=field_mode,
            inference=InferenceSettings(device=device, tile=tile, tta=tta, backend=backend, precision=precision,
                                        compile=compiled),
        )
    except ValueError as error:
        raise fail(str(error), InputError.exit_code) from None


def _field_mode(field_mode: str | None, *, ivtc: bool, deinterlace: bool) -> str:
    from animesr.config import FIELD_MODES

    asked = [m for m, on in (("ivtc", ivtc), ("deinterlace", deinterlace), (field_mode, field_mode)) if on]
    if field_mode is not None and field_mode not in FIELD_MODES:
        raise fail(f"--field-mode must be one of {', '.join(FIELD_MODES)}, not {field_mode!r}", InputError.exit_code)
    if len(set(asked)) > 1:
        raise fail(f"--ivtc, --deinterlace and --field-mode ask for different things ({', '.join(asked)}): "
                   "choose one", InputError.exit_code)
    return asked[0] if asked else "progressive"


def _rate(fps: str | None) -> str | None:
    if fps is None:
        return None
    from fractions import Fraction

    try:
        rate = Fraction(fps)
    except (ValueError, ZeroDivisionError):
        raise fail(f"--fps must be a number or a fraction like 24000/1001, not {fps!r}",
                   InputError.exit_code) from None
    if rate <= 0:
        raise fail("--fps must be positive", InputError.exit_code)
    return f"{rate.numerator}/{rate.denominator}"


def _progress_callbacks(bar: Progress):
    from animesr.video.pipeline import VideoCallbacks

    state: dict[str, object] = {"task": None, "began": time.perf_counter(), "first": 0}

    def on_start(total: int, done: int, reused: int) -> None:
        bar.start()  # only now: an error found before the work is the only output line
        state.update(began=time.perf_counter(), first=done)
        state["task"] = bar.add_task("frames", total=total, completed=done, fps="-", reused=reused)

    def on_frames(done: int, reused: int) -> None:
        elapsed = time.perf_counter() - state["began"]
        rate = (done - state["first"]) / elapsed if elapsed > 0 else 0.0
        bar.update(state["task"], completed=done, fps=f"{rate:.2f}", reused=reused)

    def on_finishing() -> None:
        if state["task"] is not None:
            bar.update(state["task"], description="muxing")

    return VideoCallbacks(on_start=on_start, on_frames=on_frames, on_finishing=on_finishing, warn=warn, note=note)
