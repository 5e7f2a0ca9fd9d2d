"""upscale-video's chunks as Ray tasks (`--workers ray[:ADDRESS]`).

One model per worker: a Ray actor holding one GPU where the cluster has GPUs, a CPU otherwise.
A chunk is a range of decoded frames of the source's timeline (the decoder skips to frame N and
stops after the chunk's last frame), never a time cut, so chunks meet exactly. Each chunk is
upscaled with the held-frame detector reset, exactly as a single-process run does, so the output
holds the same decoded frames whatever the number of workers. A worker that dies loses only its
chunk: Ray restarts it and runs the chunk again. The driver (this process) alone writes the
manifest, assembles, muxes and verifies (animesr.video.pipeline), so killing it and running the
same command again resumes.

Chunk files: where a worker sees the work folder (storage every node mounts at the same path;
the driver leaves a token there for the workers to find), it writes its chunk in a folder of its
own inside it and the driver renames it into place; elsewhere the chunk comes back as bytes.
Sources: read where they lie when a worker sees the same file (size and SHA-256, checked once per
worker and source); otherwise sent once through Ray's object store."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import torch

from animesr.checkpoint import LoadedModel
from animesr.config import InferenceSettings, VideoJob
from animesr.errors import AnimeSRError, DeviceError, FFmpegError, InputError, OutputError
from animesr.inference.upscaler import Upscaler
from animesr.video import commands
from animesr.video.ffmpeg import FrameReader, FrameWriter, run_ffmpeg
from animesr.video.pipeline import FrameWork, check_chunk, chunk_encode_args, frame_batch
from animesr.video.probe import VideoInfo
from animesr.video.runner import ChunkPlan, ChunkRunner, FramesCallback
from animesr.video.timeline import parse_framecrc
from animesr.video.workdir import ChunkRecord, file_sha256

RAY_MISSING = 'the Ray executor needs Ray, which is not installed: pip install "animesr[ray]"'
SHARED_TOKEN = "workers-see-this"  # in the work folder: a worker that reads this token shares its storage
TASK_RETRIES = 3  # times a chunk is run again after its worker died (and was restarted)
FREE_WAIT_SECONDS = 30
_KEPT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # None: RAY_ADDRESS or a new local instance; "auto", "HOST:PORT", "ray://..."
    workers: int | None = None  # None: one per GPU, or one per CPU on a cluster without GPUs
    shared_storage: bool = True  # False: chunks come back as bytes even where workers see the work folder


def parse_workers(text: str, count: int | None = None) -> RaySettings | None:
    """`--workers local | ray | ray:ADDRESS` (None: this process); checks that Ray is installed."""
    if count is not None and count < 1:
        raise InputError("--ray-workers must be at least 1")
    if text == "local":
        if count is not None:
            raise InputError("--ray-workers needs --workers ray")
        return None
    if text != "ray" and not (text.startswith("ray:") and len(text) > 4):
        raise InputError(f"--workers must be local, ray or ray:ADDRESS, not {text!r}")
    if importlib.util.find_spec("ray") is None:
        raise InputError(RAY_MISSING)
    return RaySettings(address=text[4:] or None, workers=count)


# ---- the worker (a Ray actor) -------------------------------------------------------------


@dataclass(frozen=True)
class VideoSpec:
    """What every chunk of one video shares; sent once per video through the object store."""

    info: VideoInfo
    job: VideoJob
    padding: tuple[int, int]
    rate: Fraction
    time_base: Fraction
    work_dir: Path
    token: str
    source_size: int
    source_sha256: str
    seekable: bool = False  # no filter and no trim decides which frames exist: a chunk may seek


@dataclass(frozen=True)
class ChunkTask:
    index: int
    start: int
    stop: int
    pts_expression: str
    pts: tuple[int, ...] = ()  # the chunk's frame times (timeline time base): where to seek, and the check
    previous_pts: int | None = None  # the frame before the chunk's first


@dataclass(frozen=True)
class ChunkResult:
    index: int
    frames: int = 0
    reused: int = 0
    shared_path: str | None = None  # relative to the work folder, when the worker sees it
    data: bytes | None = None  # the chunk file, when it does not
    needs_source: bool = False  # the worker sees no copy of the source: send it
    seeked: bool = False  # decoded from a checked seek (else from the start of the source)
    seconds: float = 0.0  # the worker's own time on the chunk (the rest is Ray's, for benchmarks)


class ChunkWorker:
    """One model on one device; upscales one chunk at a time into a chunk file."""

    def __init__(self, inference: InferenceSettings, threads: int | None,
                 loaded: LoadedModel | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.inference = inference
        self.upscaler = Upscaler(loaded, inference) if loaded is not None else None
        self.sources: dict[str, Path] = {}  # source SHA-256 -> a path holding it on this node
        self.scratch = Path(tempfile.mkdtemp(prefix="animesr-worker-"))

    def _load(self, model: list) -> None:
        """`model`: [the object ref of the LoadedModel], passed with every call rather than to the
        constructor, so that a restarted worker loads it again from the call it retries."""
        if self.upscaler is None:
            import ray

            self.upscaler = Upscaler(ray.get(model[0]), self.inference)

    def describe(self, model: list) -> tuple[str, str]:
        self._load(model)
        return str(self.upscaler.device), str(self.upscaler.dtype).removeprefix("torch.")

    def run(self, spec: VideoSpec, task: ChunkTask, blob: list, model: list = ()) -> ChunkResult:
        """`blob`: [] or [the object ref of the source's bytes] (nested, so Ray fetches it only here)."""
        began = time.perf_counter()
        self._load(model)
        source = self._source(spec, blob)
        if source is None:
            return ChunkResult(task.index, needs_source=True)
        shared = _sees_token(spec.work_dir, spec.token)
        folder = spec.work_dir / f".worker-{socket.gethostname()}-{os.getpid()}" if shared else self.scratch
        try:
            folder.mkdir(exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot write in {folder}: {error.strerror}") from None
        sink = _ChunkSink(folder, task.start)
        seeked = self._upscale(spec, task, source, sink)
        record, path = sink.record, sink.final_path(task.index)
        done = ChunkResult(task.index, record.frames, record.reused, seeked=seeked)
        if shared:
            relative = str(path.relative_to(spec.work_dir))
            return replace(done, shared_path=relative, seconds=time.perf_counter() - began)
        data = path.read_bytes()
        path.unlink()
        return replace(done, data=data, seconds=time.perf_counter() - began)

    def _upscale(self, spec: VideoSpec, task: ChunkTask, source: Path, sink: _ChunkSink) -> bool:
        """Upscale the chunk into `sink` from a seek, checked on a thread meanwhile (so the check
        costs no time); where the check fails, again from the start of the source. True: seeked."""
        job = replace(spec.job, input=source)
        seek = chunk_seek(spec, task)
        if seek is not None:
            with ThreadPoolExecutor(1) as checker:
                exact = checker.submit(seek_is_exact, spec, job, task, seek)
                try:
                    self._upscale_from(spec, task, job, sink, _seeked(commands.decode_args(spec.info, job, 0),
                                                                      seek.args()))
                except AnimeSRError:
                    if exact.result():
                        raise  # the seek was right: the failure is the chunk's own
                else:
                    if exact.result():
                        return True
        self._upscale_from(spec, task, job, sink, commands.decode_args(spec.info, job, task.start))
        return False

    def _upscale_from(self, spec: VideoSpec, task: ChunkTask, job: VideoJob, sink: _ChunkSink,
                      decode: list[str]) -> None:
        runner = ChunkRunner(self.upscaler, sink, frame_batch(job, self.upscaler), job.dedup_threshold,
                             spec.padding)

        def make_writer(index: int, start: int, stop: int) -> FrameWriter:
            args = chunk_encode_args(spec.info, job, spec.padding, sink.temporary_chunk_path(index),
                                     rate=spec.rate, time_base=spec.time_base,
                                     pts_expression=task.pts_expression)
            return FrameWriter(args, f"encode chunk {index} with {job.encode.codec}")

        reader = FrameReader(decode, spec.info.width, spec.info.height)
        runner.run(reader, make_writer, lambda i, n: check_chunk(sink.temporary_chunk_path(i), i, n),
                   ChunkPlan(task.stop, job.chunk_frames))  # from task.start: this one chunk

    def _source(self, spec: VideoSpec, blob: list) -> Path | None:
        known = self.sources.get(spec.source_sha256)
        if known is not None and known.is_file():
            return known
        path = spec.job.input
        if path.is_file() and path.stat().st_size == spec.source_size and file_sha256(path) == spec.source_sha256:
            self.sources[spec.source_sha256] = path
            return path
        if not blob:
            return None
        import ray

        local = self.scratch / f"source-{spec.source_sha256[:16]}{path.suffix}"
        local.write_bytes(ray.get(blob[0]))
        self.sources[spec.source_sha256] = local
        return local


@dataclass(frozen=True)
class Seek:
    """An input seek to a point half the shortest frame step before the chunk's first frame:
    ffmpeg starts at the keyframe before it and drops the frames before it."""

    point: Fraction  # seconds, on the timeline's clock
    margin: Fraction  # half the shortest frame step, seconds

    def args(self) -> list[str]:
        return ["-ss", f"{float(self.point):.6f}"]


def chunk_seek(spec: VideoSpec, task: ChunkTask) -> Seek | None:
    """Where the chunk may be decoded from a seek (None: decode from the start of the source)."""
    if not spec.seekable or task.start == 0 or task.previous_pts is None:
        return None
    if len(task.pts) != task.stop - task.start:
        return None
    steps = [b - a for a, b in zip((task.previous_pts, *task.pts), task.pts)]
    if min(steps) <= 0:
        return None
    margin = Fraction(min(steps), 2) * spec.time_base
    return Seek(task.pts[0] * spec.time_base - margin, margin)


def seek_is_exact(spec: VideoSpec, job: VideoJob, task: ChunkTask, seek: Seek) -> bool:
    """A decode of the chunk's frame times from the seek (no pixels copied) gives exactly the
    chunk's frames: as many, each within a quarter frame of its time on the timeline."""
    check = _seeked(commands.scan_args(spec.info, job), seek.args())
    check[check.index("-c:v"):check.index("-c:v")] = ["-frames:v", str(len(task.pts))]
    try:
        found = parse_framecrc(run_ffmpeg(check, f"seek to chunk {task.index}"))
    except FFmpegError:
        return False
    expected = [p * spec.time_base - seek.point for p in task.pts]
    got = [p * found.time_base for p in found.pts]
    return len(got) == len(expected) and all(abs(g - e) <= seek.margin / 2 for g, e in zip(got, expected))


def seek_decode_args(spec: VideoSpec, job: VideoJob, task: ChunkTask) -> list[str] | None:
    """Decode arguments that seek to the chunk, checked first; None where the seek cannot be
    shown to give the chunk's frames."""
    seek = chunk_seek(spec, task)
    if seek is None or not seek_is_exact(spec, job, task, seek):
        return None
    return _seeked(commands.decode_args(spec.info, job, 0), seek.args())


def _seeked(args: list[str], seek: list[str]) -> list[str]:
    """`args` with an input seek before the input."""
    at = args.index("-i")
    return [*args[:at], *seek, *args[at:]]


class _ChunkSink:
    """The part of a work folder a `ChunkRunner` writes to, for one chunk: a private folder."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.start = start
        self.record = ChunkRecord(-1, 0, 0)

    def frames_done(self) -> int:
        return self.start

    def reused_done(self) -> int:
        return 0

    def temporary_chunk_path(self, index: int) -> Path:
        return self.path / f"chunk_{index:05d}.nut.tmp"

    def final_path(self, index: int) -> Path:
        return self.path / f"chunk_{index:05d}.nut"

    def complete_chunk(self, record: ChunkRecord) -> None:
        os.replace(self.temporary_chunk_path(record.index), self.final_path(record.index))
        self.record = record


def _sees_token(folder: Path, token: str) -> bool:
    try:
        return (folder / SHARED_TOKEN).read_text() == token
    except OSError:
        return False


# ---- the driver ---------------------------------------------------------------------------


class RayPool:
    """A Ray session and its workers, shared by every video of a command. `engine` is the
    pipeline's engine factory: `upscale_video(job, callbacks, engine=pool.engine)`."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.started_ray = False
        self.actors: list = []
        self.model_ref = None
        self.key: tuple | None = None
        self.description = ("", "")

    def __enter__(self) -> RayPool:
        import ray

        if not ray.is_initialized():
            _check_reachable(self.settings.address)
            try:
                with _signal_handlers_kept():
                    ray.init(address=self.settings.address, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
            except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError
                where = f" at {self.settings.address}" if self.settings.address else ""
                raise DeviceError(f"cannot start or join Ray{where}: {_first_line(error)}") from None
            self.started_ray = True
        return self

    def __exit__(self, *_: object) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.started_ray:
            ray.shutdown()

    def engine(self, loaded: LoadedModel, job: VideoJob) -> RayEngine:
        key = (str(job.model), job.denoise, job.scale, job.inference)
        if key != self.key:
            self._start_workers(loaded, job.inference)
            self.key = key
        device, dtype = self.description
        return RayEngine(self, f"{len(self.actors)} Ray worker(s) on {device}", getattr(torch, dtype))

    def _start_workers(self, loaded: LoadedModel, inference: InferenceSettings) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        total = ray.cluster_resources()
        kind = "GPU" if inference.device != "cpu" and total.get("GPU", 0) >= 1 else "CPU"
        count = self.settings.workers or max(int(total.get(kind, 1)), 1)
        _wait_for_free(kind, count, int(total.get(kind, 0)))
        gpus = kind == "GPU"
        threads = None if gpus else torch.get_num_threads()  # the same as a single-process run
        options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
        worker = ray.remote(ChunkWorker).options(max_restarts=TASK_RETRIES, max_task_retries=TASK_RETRIES,
                                                 **options)
        self.model_ref = ray.put(loaded)
        self.actors = [worker.remote(inference, threads) for _ in range(count)]
        try:
            descriptions = ray.get([actor.describe.remote([self.model_ref]) for actor in self.actors])
        except Exception as error:  # noqa: BLE001 - a worker that cannot start: one line
            raise _chunk_failure(None, error) from None
        self.description = descriptions[0]


@contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """ray.init replaces the SIGTERM handler (Ray's exits 1, and a C++ one prints a stack dump):
    the caller's handlers are put back, so that a stop unwinds as it does without Ray."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {number: signal.getsignal(number) for number in _KEPT_SIGNALS}
    try:
        yield
    finally:
        for number, handler in kept.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(number, handler)


def _wait_for_free(kind: str, count: int, total: int) -> None:
    """A worker holds a GPU (or a CPU) for the whole command; wait a little for one held by a
    run that just ended (a killed driver's workers take seconds to go), never forever."""
    import ray

    if count > total:
        raise DeviceError(f"--ray-workers {count}: the Ray cluster has {total} {kind}(s)")
    deadline = time.monotonic() + FREE_WAIT_SECONDS
    while (free := int(ray.available_resources().get(kind, 0))) < count:
        if time.monotonic() > deadline:
            if not free:
                raise DeviceError(f"no {kind} of the Ray cluster is free (another run holds them)")
            raise DeviceError(f"{count} Ray worker(s) need a {kind} each, and {free} of the cluster's {total} "
                              f"are free after {FREE_WAIT_SECONDS} s (another run holds them?): "
                              f"use --ray-workers {free}")
        time.sleep(0.5)


def _check_reachable(address: str | None, seconds: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that nothing answers on is one line at once (Ray itself
    retries for minutes)."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--workers ray:{address}: the address must be auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as error:
        raise DeviceError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


class RayEngine:
    """One video's missing chunks spread over the pool's workers, kept as they complete."""

    def __init__(self, pool: RayPool, device: str, dtype: torch.dtype) -> None:
        self.pool = pool
        self.device = device
        self.dtype = dtype
        self.timings: list[tuple[float, float]] = []  # per chunk: (seconds seen by the driver, by the worker)
        self.sent_source = False  # a worker saw no copy of the source, so it went through the object store

    def run(self, frames: FrameWork, on_frames: FramesCallback) -> None:
        import ray

        work = frames.work
        token = secrets.token_hex(16)
        try:
            if self.pool.settings.shared_storage:
                (work.path / SHARED_TOKEN).write_text(token)
        except OSError as error:
            raise OutputError(f"cannot write in {work.path}: {error.strerror}") from None
        source = work.identity["source"]
        job = replace(frames.job, input=frames.job.input.resolve())  # a worker's current folder is another
        pts = frames.timeline.pts
        trimmed = job.start is not None or job.duration is not None
        seekable = not commands.timing_filters(frames.info, job) and not trimmed
        spec = ray.put(VideoSpec(frames.info, job, frames.padding, frames.rate(), frames.timeline.time_base,
                                 work.path.resolve(), token, source["size"], source["sha256"], seekable))
        done = {record.index for record in work.completed()}
        todo = [ChunkTask(i, start, stop, frames.timeline.pts_expression(start, stop), pts[start:stop],
                          pts[start - 1] if start else None)
                for i, start, stop in frames.plan().ranges_from(0) if i not in done]
        try:
            self._dispatch(frames, spec, todo, on_frames)
        finally:
            for folder in work.path.glob(".worker-*"):
                shutil.rmtree(folder, ignore_errors=True)

    def _dispatch(self, frames: FrameWork, spec, todo: list[ChunkTask], on_frames: FramesCallback) -> None:
        import ray

        idle = list(self.pool.actors)
        running: dict = {}  # object ref -> (actor, task)
        blob: list = []
        failure: AnimeSRError | None = None
        while (todo and failure is None) or running:
            while idle and todo and failure is None:
                actor, task = idle.pop(), todo.pop(0)
                call = actor.run.remote(spec, task, blob, [self.pool.model_ref])
                running[call] = (actor, task, time.perf_counter())
            if not running:
                break
            [ready], _ = ray.wait(list(running), num_returns=1)
            actor, task, submitted = running.pop(ready)
            try:
                result = ray.get(ready)
            except Exception as error:  # noqa: BLE001 - Ray wraps the worker's error; one line per chunk
                failure = failure or _chunk_failure(task, error)
                if not isinstance(error, ray.exceptions.RayActorError):
                    idle.append(actor)
                continue
            idle.append(actor)
            if result.needs_source:
                blob = blob or [ray.put(frames.job.input.read_bytes())]
                self.sent_source = True
                todo.insert(0, task)
                continue
            self.timings.append((time.perf_counter() - submitted, result.seconds))
            self._keep(frames, result)
            on_frames(sum(c.frames for c in frames.work.completed()),
                      sum(c.reused for c in frames.work.completed()))
        if failure is not None:
            raise failure
        if todo:
            raise DeviceError("every Ray worker died: the chunks left are kept for the next run")

    @staticmethod
    def _keep(frames: FrameWork, result: ChunkResult) -> None:
        work = frames.work
        temporary = work.temporary_chunk_path(result.index)
        try:
            if result.data is not None:
                temporary.write_bytes(result.data)
            else:
                os.replace(work.path / result.shared_path, temporary)
        except OSError as error:
            raise OutputError(f"cannot keep chunk {result.index} in {work.path}: {error.strerror}") from None
        work.complete_chunk(ChunkRecord(result.index, result.frames, result.reused))


def _chunk_failure(task: ChunkTask | None, error: BaseException) -> AnimeSRError:
    import ray

    what = f"chunk {task.index}" if task else "a Ray worker"
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause if getattr(error, "cause", None) is not None else error
        if isinstance(cause, AnimeSRError):
            return type(cause)(f"{what}: {_first_line(cause)}")
        return AnimeSRError(f"{what} failed on a Ray worker: {type(cause).__name__}: {_first_line(cause)}")
    if isinstance(error, ray.exceptions.RayActorError):
        return DeviceError(f"the Ray worker running {what} died {TASK_RETRIES + 1} times: "
                           f"{_first_line(error)}")
    return DeviceError(f"{what}: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
