"""upscale_video(job): probe -> timestamps -> decode | Upscaler | encode in resumable chunks ->
concatenate + copy every other stream -> verify -> rename into place, all under a lock on OUTPUT.

Reports through `VideoCallbacks`; never imports typer or rich."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import torch

from animesr.atomic import require_folder_for
from animesr.callbacks import JobCallbacks, Message, ignore
from animesr.checkpoint import LoadedModel
from animesr.config import VideoJob
from animesr.errors import (FFmpegError, FFmpegKilled, InputError, OutputError, VerificationError,
                            output_replaces_input)
from animesr.inference.upscaler import Upscaler
from animesr.pretrained import resolve_model
from animesr.video import commands
from animesr.video.fields import settle_field_mode
from animesr.video.ffmpeg import FrameReader, FrameWriter, ffmpeg_tool, run_ffmpeg, video_encoders
from animesr.video.preflight import (check_encode_options, check_encoder_opens, check_streams_go_in,
                                     drop_streams_empty_in_window)
from animesr.video.probe import VideoInfo, probe
from animesr.video.runner import ChunkPlan, ChunkRunner, FramesCallback
from animesr.video.streams import (StreamAction, check_video_codec, container_for, metadata_losses, plan_streams,
                                   stream_args)
from animesr.video.timeline import Timeline, decoded_size, parse_framecrc
from animesr.video.verify import Verification, find_truncation, verify_output
from animesr.video.workdir import (WorkFolder, check_output_name, file_identity, output_lock, partial_output_path,
                                   work_folder_path)

CUDA_BATCH = 4  # frames per network call on CUDA; on the CPU batching gains nothing and costs memory
_NOTED_HASH_BYTES = 1 << 30  # about a second of hashing: say why the start waits


@dataclass(frozen=True)
class VideoCallbacks(JobCallbacks):
    on_start: Callable[[int, int, int], None] = ignore  # total frames, frames done, frames reused
    on_frames: Callable[[int, int], None] = ignore  # frames done, frames reused
    on_finishing: Callable[[], None] = ignore  # all frames upscaled; muxing and verifying


@dataclass(frozen=True)
class VideoResult:
    output: Path
    source: VideoInfo
    verification: Verification
    frames: int
    reused: int
    resumed_from: int
    streams: tuple[StreamAction, ...]
    padding: tuple[int, int]  # (right, bottom) pixels added for 4:2:0 / 4:2:2 chroma
    seconds: float


@dataclass(frozen=True)
class FrameWork:
    """One video's frame loop: what an engine needs to upscale its missing chunks."""

    info: VideoInfo
    job: VideoJob
    timeline: Timeline
    work: WorkFolder
    padding: tuple[int, int]

    def plan(self) -> ChunkPlan:
        return ChunkPlan(self.timeline.count, self.job.chunk_frames)

    def encode_args(self, index: int, destination: Path) -> list[str]:
        """ffmpeg encoding chunk `index` (rgb24 frames on stdin) to `destination`."""
        _, start, stop = self.plan().ranges_from(index * self.job.chunk_frames)[0]
        return chunk_encode_args(self.info, self.job, self.padding, destination, rate=self.rate(),
                                 time_base=self.timeline.time_base,
                                 pts_expression=self.timeline.pts_expression(start, stop))

    def rate(self) -> Fraction:
        return self.timeline.rate(_nominal_rate(self.info, self.job))


class FrameEngine(Protocol):
    """Where the frames are upscaled: this process (`LocalEngine`) or Ray workers."""

    device: str
    dtype: torch.dtype

    def run(self, frames: FrameWork, on_frames: FramesCallback) -> None: ...


EngineFactory = Callable[[LoadedModel, VideoJob], FrameEngine]


def upscale_video(job: VideoJob, callbacks: VideoCallbacks = VideoCallbacks(),
                  engine: EngineFactory | None = None) -> VideoResult:
    """`engine` makes the frame engine from the loaded model (default: `LocalEngine`)."""
    began = time.perf_counter()
    ffmpeg_tool()  # chosen and checked once, before any file is read (its notice comes with the summary)
    info = probe(job.input)
    container = _check_paths(job)
    check_video_codec(container, job.encode.codec, video_encoders())
    check_encode_options(job.encode)
    with output_lock(job.output):
        _check_paths(job)  # again: a run that held the lock may have published OUTPUT meanwhile
        return _upscale_locked(job, callbacks, info, container, began, engine or LocalEngine)


def _upscale_locked(job: VideoJob, callbacks: VideoCallbacks, info: VideoInfo, container: str,
                    began: float, make_engine: EngineFactory) -> VideoResult:
    if job.start and info.duration is not None and job.start >= info.duration:
        raise InputError(f"--start {job.start:g} is past the end of {info.path.name} ({info.duration:.3f} s)")
    planned = drop_streams_empty_in_window(job, plan_streams(info.streams, container))
    actions = check_streams_go_in(job.input, planned, container, beside=job.output)
    _warn_about_source(info, job, actions, callbacks.warn)
    job = replace(job, field_mode=settle_field_mode(info, job.field_mode, start=job.start, duration=job.duration,
                                                    note=callbacks.note, warn=callbacks.warn))
    padding = even_padding(info.width * job.scale, info.height * job.scale, job.encode.pix_fmt)
    width, height = output_size(info, job, padding)
    check_encoder_opens(info, job.encode, width=width, height=height, container=container, beside=job.output)
    loaded = resolve_model(job.model, job.scale, job.denoise)
    engine = make_engine(loaded, job)
    size = job.input.stat().st_size
    if size >= _NOTED_HASH_BYTES:
        callbacks.note(f"hashing {job.input.name} ({size / 2**30:.1f} GiB) to match it with its work folder")
    work = WorkFolder(work_folder_path(job.output),
                      _identity(job, info, loaded, engine.dtype, getattr(engine, "backend", "torch")))
    timeline = _open_work(work, info, job, callbacks.warn)
    if ffmpeg_tool().notice:  # once the job is sure to run: a refused job's error stays its only line
        callbacks.warn(ffmpeg_tool().notice)
    callbacks.note(_summary(info, job, timeline, padding, loaded.label, engine.device))
    resumed_from = work.frames_done()
    if resumed_from:
        callbacks.note(f"resuming from frame {resumed_from} of {timeline.count} ({work.path.name})")
    callbacks.on_start(timeline.count, resumed_from, work.reused_done())
    if resumed_from < timeline.count:
        engine.run(FrameWork(info, job, timeline, work, padding), callbacks.on_frames)
    callbacks.on_finishing()
    verification = _finish(info, job, timeline, work, actions, container, output_size(info, job, padding))
    if verification.audio_unchecked:
        callbacks.warn(f"the copied audio's length was not checked: this ffmpeg cannot decode the source's "
                       f"({verification.audio_unchecked})")
    source_video = next(s for s in info.streams if s.index == info.video_index)
    for line in metadata_losses(source_video, actions, probe(job.output).streams, container):
        callbacks.warn(line)
    return VideoResult(job.output, info, verification, timeline.count, work.reused_done(), resumed_from,
                       actions, padding, time.perf_counter() - began)


def output_size(info: VideoInfo, job: VideoJob, padding: tuple[int, int]) -> tuple[int, int]:
    """The upscaled frames' size, padding included (upright, as the source is shown)."""
    return info.width * job.scale + padding[0], info.height * job.scale + padding[1]


def even_padding(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """Subsampled chroma needs even sizes: pad by one pixel (the edge repeated) where odd."""
    horizontal = any(tag in pix_fmt for tag in ("420", "422", "411", "nv12", "nv21", "p010", "p016"))
    vertical = any(tag in pix_fmt for tag in ("420", "nv12", "nv21", "p010", "p016"))
    return (width % 2 if horizontal else 0, height % 2 if vertical else 0)


def _summary(info: VideoInfo, job: VideoJob, timeline: Timeline, padding: tuple[int, int], model: str,
             device: str) -> str:
    timing = f"{float(timeline.rate(_nominal_rate(info, job))):.3f} fps" if timeline.steady() else "variable frame rate"
    if timeline.decoded is not None:
        timing += f" after inverse telecine ({timeline.decoded} frames decoded, 5 → 4)"
    width, height = output_size(info, job, padding)
    padded = f" (padded by {padding[0]}×{padding[1]} px, edge repeated, for {job.encode.pix_fmt})" if any(padding) else ""
    return (f"{info.path.name}: {info.width}×{info.height}{_turned(info)}, {timing}, {timeline.count} frames "
            f"→ {width}×{height}{padded} {job.encode.codec}; model {model}, {device}")


def _turned(info: VideoInfo) -> str:
    return f" (turned upright: display rotation {info.rotation}°)" if info.rotation else ""


def _nominal_rate(info: VideoInfo, job: VideoJob) -> Fraction:
    """The rate the timing filters aim at (used where the timestamps are not evenly spaced)."""
    if job.fps:
        return Fraction(job.fps)
    return info.frame_rate * 4 / 5 if job.field_mode == "ivtc" else info.frame_rate


# ---- before the frames ------------------------------------------------------------------


def _check_paths(job: VideoJob) -> str:
    check_output_name(job.output)
    container = container_for(job.output)
    if job.output.resolve() == job.input.resolve():
        raise output_replaces_input(job.input)
    if job.output.exists() and not job.overwrite:
        raise OutputError(f"{job.output} exists: add --overwrite to replace it")
    require_folder_for(job.output)
    return container


def _warn_about_source(info: VideoInfo, job: VideoJob, actions: tuple[StreamAction, ...], warn: Message) -> None:
    for stream in info.streams:
        if stream.index != info.video_index and stream.kind in ("video", "data"):
            warn(f"stream {stream.describe()} dropped: only the first video stream is upscaled and kept")
    for action in actions:
        if action.reason:
            verb = "dropped" if not action.kept else "converted"
            warn(f"stream {action.stream.describe()} {verb}: {action.reason}")


def _identity(job: VideoJob, info: VideoInfo, loaded: LoadedModel, dtype: torch.dtype,
              backend: str = "torch") -> dict[str, object]:
    """What decides the output's content; a work folder is resumed only when all of it matches."""
    return {
        "source": file_identity(job.input),
        # absent when 0: older work folders resume; a rotated source's older chunks were not turned
        **({"rotation": info.rotation} if info.rotation else {}),
        "model": _model_identity(loaded, dtype),
        "precision": str(dtype).removeprefix("torch."),
        **({"backend": backend} if backend != "torch" else {}),  # absent on torch: older work folders resume
        "scale": job.scale,
        "encode": asdict(job.encode),
        "fps": job.fps,
        "deinterlace": job.deinterlace,
        **({"ivtc": True} if job.field_mode == "ivtc" else {}),  # absent when off: older work folders resume
        "start": job.start,
        "duration": job.duration,
        "dedup_threshold": job.dedup_threshold,
        "chunk_frames": job.chunk_frames,
        **({"tta": True} if job.inference.tta else {}),  # absent when off: older work folders resume
    }


def _model_identity(loaded: LoadedModel, dtype: torch.dtype) -> dict[str, object]:
    """The weights as the engine runs them (in `dtype`) and everything in the model file's
    metadata that changes what they compute."""
    digest = hashlib.sha256()
    for name, tensor in loaded.model.state_dict().items():
        digest.update(name.encode())
        as_run = tensor.detach().to("cpu", dtype) if tensor.is_floating_point() else tensor.detach().cpu()
        digest.update(as_run.to(torch.float32).numpy().tobytes())
    return {"weights_sha256": digest.hexdigest(), "value_range": loaded.value_range,
            "architecture": asdict(loaded.model.config)}


def _open_work(work: WorkFolder, info: VideoInfo, job: VideoJob, warn: Message) -> Timeline:
    """Open or create the work folder; the frame timestamps are read once and kept there."""
    if job.resume and work.path.exists():
        for problem in work.open(resume=True):
            warn(problem)
        timeline = work.load_timeline()
        if timeline is not None:
            _check_truncation(info, job, timeline, warn)
            return timeline
    timeline = scan_timeline(info, job)  # before the folder exists: bad input leaves nothing
    _check_truncation(info, job, timeline, warn)
    work.open(resume=job.resume)
    work.save_timeline(timeline)
    return timeline


def _check_truncation(info: VideoInfo, job: VideoJob, timeline: Timeline, warn: Message) -> None:
    truncation = find_truncation(info, job, timeline)
    if truncation is None:
        return
    if not job.accept_truncated:
        raise InputError(f"{truncation.describe()}: add --accept-truncated to upscale the "
                         f"{truncation.decoded_frames} frames there are")
    warn(f"{truncation.describe()}; upscaling those (--accept-truncated)")


def scan_timeline(info: VideoInfo, job: VideoJob, *, window: str = "the --start/--duration range") -> Timeline:
    """The frames' timestamps; InputError when there are none (`window` names job.start/job.duration
    in the message) or when they do not decode at the size `info` says."""
    try:
        listing = _scan_listing(info, job)
        timeline = parse_framecrc(listing, rate_converted=bool(job.fps))
    except FFmpegKilled:
        raise  # ffmpeg itself died: not a fault of the video
    except FFmpegError as error:
        raise InputError(f"cannot decode {info.path.name}: {error}") from None
    if timeline.count == 0:
        where = f" in {window}" if job.start or job.duration else ""
        rate = f" at --fps {job.fps}" if job.fps is not None else ""
        raise InputError(f"{info.path.name} has no decodable video frames{where}{rate}")
    _check_decoded_size(info, decoded_size(listing))
    return timeline


def _scan_listing(info: VideoInfo, job: VideoJob) -> str:
    """The scan's frame list. ffmpeg fails a scan that lists a second stream (--fps, IVTC) when the
    filters leave no frame (no encoder opens for a stream that got none): the frames listed alone
    then say whether that was all."""
    try:
        return run_ffmpeg(commands.scan_args(info, job), f"read {info.path.name}")
    except FFmpegKilled:
        raise
    except FFmpegError:
        if not commands.scan_lists_two_streams(job):
            raise
        alone = run_ffmpeg(commands.scan_args(info, job, frames_only=True), f"read {info.path.name}")
        if parse_framecrc(alone).count:
            raise
        return alone


def _check_decoded_size(info: VideoInfo, size: tuple[int, int] | None) -> None:
    # frames read at another size than they decode at come out as stripes
    if size is not None and size != (info.width, info.height):
        raise InputError(f"{info.path.name} decodes as {size[0]}×{size[1]} frames, but its stream says "
                         f"{info.width}×{info.height}{_turned(info)}: animesr cannot tell how to read them")


# ---- the frames -------------------------------------------------------------------------


class LocalEngine:
    """The frames upscaled in this process, on one device, in order from the first missing chunk."""

    def __init__(self, loaded: LoadedModel, job: VideoJob) -> None:
        self.upscaler = Upscaler(loaded, job.inference)
        self.device = self.upscaler.describe()  # "backend openvino on CPU, float32"
        self.dtype = self.upscaler.dtype
        self.backend = self.upscaler.backend.name

    def run(self, frames: FrameWork, on_frames: FramesCallback) -> None:
        info, job, work = frames.info, frames.job, frames.work
        runner = ChunkRunner(self.upscaler, work, frame_batch(job, self.upscaler), job.dedup_threshold,
                             frames.padding, on_frames)

        def make_writer(index: int, start: int, stop: int) -> FrameWriter:
            args = frames.encode_args(index, work.temporary_chunk_path(index))
            return FrameWriter(args, f"encode chunk {index} with {job.encode.codec}")

        reader = FrameReader(commands.decode_args(info, job, work.frames_done()), info.width, info.height)
        runner.run(reader, make_writer, lambda i, n: check_chunk(work.temporary_chunk_path(i), i, n),
                   frames.plan())


def frame_batch(job: VideoJob, upscaler: Upscaler) -> int:
    return job.batch or (CUDA_BATCH if upscaler.device.type == "cuda" else 1)


def chunk_encode_args(info: VideoInfo, job: VideoJob, padding: tuple[int, int], destination: Path, *,
                      rate: Fraction, time_base: Fraction, pts_expression: str) -> list[str]:
    width, height = output_size(info, job, padding)
    return commands.encode_args(info, job.encode, width=width, height=height, sar=padded_sar(info, job, padding),
                                rate=rate, time_base=time_base, pts_expression=pts_expression, destination=destination)


def padded_sar(info: VideoInfo, job: VideoJob, padding: tuple[int, int]) -> Fraction:
    """The source's sample aspect ratio, corrected for the padding so the picture keeps its shape."""
    shown = Fraction(info.width * job.scale, info.height * job.scale)
    width, height = output_size(info, job, padding)
    return info.sar * shown / Fraction(width, height)


def check_chunk(path: Path, index: int, frames: int) -> None:
    """The chunk file holds `frames` frames (its packets counted, without decoding)."""
    written = parse_framecrc(run_ffmpeg(commands.packet_scan_args(path), f"read back chunk {index}")).count
    if written != frames:
        raise FFmpegError(f"chunk {index} holds {written} frames instead of {frames}")


# ---- after the frames -------------------------------------------------------------------


def _finish(info: VideoInfo, job: VideoJob, timeline: Timeline, work: WorkFolder,
            actions: tuple[StreamAction, ...], container: str, size: tuple[int, int]) -> Verification:
    plan = ChunkPlan(timeline.count, job.chunk_frames)
    durations = [float(timeline.span_seconds(start, stop)) for _, start, stop in plan.ranges_from(0)]
    concat_list = work.write_concat_list(durations)
    partial = partial_output_path(job.output)
    window_end = timeline.start_seconds() + timeline.seconds()
    kept_streams = stream_args(actions, window_end, cut=bool(job.start))
    args = commands.mux_args(info, job, concat_list=concat_list, video_offset=timeline.start_seconds(),
                             window_end=window_end, stream_args=kept_streams, container=container,
                             destination=partial)
    try:
        run_ffmpeg(args, f"write {partial.name}")
        verification = verify_output(partial, timeline, actions, job=job, size=size)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if not verification.ok:
        failed = "; ".join(line for line in verification.lines() if "MISMATCH" in line)
        raise VerificationError(f"{job.output.name} failed verification ({failed}) and was not published: "
                                f"it is kept as {partial.name} for inspection, and {work.path.name} for "
                                "the next run, which redoes damaged chunks (--no-resume starts over)")
    try:
        os.replace(partial, job.output)
    except OSError as error:
        raise OutputError(f"cannot rename {partial.name} to {job.output}: {error.strerror}") from None
    work.remove()
    return verification
