"""The overlapped frame loop: a decoder thread, the network on the calling thread, and an encoder
thread, joined by bounded queues. Frames are upscaled in batches; held frames reuse the last
network output; every chunk is encoded to its own file and recorded when complete."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from animesr.errors import FFmpegError
from animesr.inference.upscaler import Upscaler
from animesr.video.ffmpeg import FrameReader, FrameWriter
from animesr.video.held import HeldFrameDetector
from animesr.video.workdir import ChunkRecord, WorkFolder

FramesCallback = Callable[[int, int], None]  # frames done, frames reused (whole job)
WriterFactory = Callable[[int, int, int], FrameWriter]  # chunk index, first frame, end frame
ChunkCheck = Callable[[int, int], None]  # chunk index, frames expected in its file

_END = object()
_POLL_SECONDS = 0.1


class _Stopped(Exception):
    """Another thread failed; the failure itself is in `_Shared.error`."""


@dataclass
class _Shared:
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.stop.set()

    def put(self, q: queue.Queue, item: object) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue) -> object:
        while True:
            try:
                return q.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stopped from None


@dataclass(frozen=True)
class _ChunkStart:
    index: int
    start: int
    stop: int


@dataclass(frozen=True)
class ChunkPlan:
    total_frames: int
    chunk_frames: int

    def ranges_from(self, first_frame: int) -> list[tuple[int, int, int]]:
        """(index, start, stop) of every chunk from the one starting at `first_frame`."""
        return [(start // self.chunk_frames, start, min(start + self.chunk_frames, self.total_frames))
                for start in range(first_frame, self.total_frames, self.chunk_frames)]


class ChunkRunner:
    def __init__(self, upscaler: Upscaler, work: WorkFolder, batch: int, dedup_threshold: float,
                 pad: tuple[int, int], on_frames: FramesCallback | None = None) -> None:
        self.upscaler = upscaler
        self.work = work
        self.batch = batch
        self.detector = HeldFrameDetector(dedup_threshold)
        self.pad = pad  # (right, bottom) pixels added to each output frame for even chroma sizes
        self.on_frames = on_frames
        self.done = work.frames_done()
        self.reused = work.reused_done()

    def run(self, reader: FrameReader, make_writer: WriterFactory, check_chunk: ChunkCheck,
            plan: ChunkPlan) -> None:
        shared = _Shared()
        decoded: queue.Queue = queue.Queue(maxsize=2 * self.batch + 2)
        upscaled: queue.Queue = queue.Queue(maxsize=2 * self.batch + 2)
        threads = [
            threading.Thread(target=self._decode, args=(reader, decoded, shared), daemon=True),
            threading.Thread(target=self._encode, args=(upscaled, make_writer, check_chunk, shared), daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            for index, start, stop in plan.ranges_from(self.done):
                shared.put(upscaled, _ChunkStart(index, start, stop))
                reused = self._upscale_chunk(decoded, upscaled, shared, stop - start)
                shared.put(upscaled, ChunkRecord(index, stop - start, reused))
            shared.put(upscaled, None)
            threads[1].join()
        except _Stopped:
            pass
        except BaseException as error:
            shared.fail(error)
        finally:
            shared.stop.set()
            reader.kill()
            for thread in threads:
                thread.join()
            for leftover in self.work.path.glob("*.tmp"):
                leftover.unlink(missing_ok=True)
        if shared.error is not None:
            raise shared.error

    # ---- the network, on the calling thread ---------------------------------------------

    def _upscale_chunk(self, decoded: queue.Queue, upscaled: queue.Queue, shared: _Shared, count: int) -> int:
        """Upscale `count` frames into `upscaled`; returns how many reused a held frame's output."""
        self.detector.reset()  # each chunk starts fresh, so a resumed run repeats an uninterrupted one
        batch: list[np.ndarray] = []
        sources: list[int] = []  # per pending frame: its slot in `batch`, or -1 for `previous`
        previous: np.ndarray | None = None
        reused_before = self.reused
        for _ in range(count):
            frame = shared.get(decoded)
            if frame is _END:
                raise FFmpegError(f"the decoder stopped after {self.done + len(sources)} frames; "
                                  "the first pass counted more (is the file changing?)")
            if self.detector.is_held(frame):
                sources.append(len(batch) - 1 if batch else -1)
                self.reused += 1
            else:
                batch.append(frame)
                sources.append(len(batch) - 1)
            if len(batch) == self.batch:
                previous = self._flush(batch, sources, previous, upscaled, shared)
        self._flush(batch, sources, previous, upscaled, shared)
        return self.reused - reused_before

    def _flush(self, batch: list[np.ndarray], sources: list[int], previous: np.ndarray | None,
               upscaled: queue.Queue, shared: _Shared) -> np.ndarray | None:
        outputs = self.upscaler.upscale_frames(np.stack(batch)) if batch else None
        for slot in sources:
            shared.put(upscaled, outputs[slot] if slot >= 0 else previous)
            self.done += 1
            if self.on_frames:
                self.on_frames(self.done, self.reused)
        last = outputs[-1] if outputs is not None else previous
        batch.clear()
        sources.clear()
        return last

    # ---- threads ------------------------------------------------------------------------

    @staticmethod
    def _decode(reader: FrameReader, decoded: queue.Queue, shared: _Shared) -> None:
        try:
            while not shared.stop.is_set():
                frame = reader.read()
                shared.put(decoded, _END if frame is None else frame)
                if frame is None:
                    return
        except _Stopped:
            pass
        except BaseException as error:
            if not shared.stop.is_set():  # after a stop the decoder is killed on purpose
                shared.fail(error)

    def _encode(self, upscaled: queue.Queue, make_writer: WriterFactory, check_chunk: ChunkCheck,
                shared: _Shared) -> None:
        writer: FrameWriter | None = None
        try:
            while (item := shared.get(upscaled)) is not None:
                if isinstance(item, _ChunkStart):
                    writer = make_writer(item.index, item.start, item.stop)
                elif isinstance(item, ChunkRecord):
                    writer.close()
                    writer = None
                    check_chunk(item.index, item.frames)
                    self.work.complete_chunk(item)
                else:
                    writer.write(self._padded(item))
        except _Stopped:
            pass
        except BaseException as error:
            shared.fail(error)
        finally:
            if writer is not None:
                writer.kill()

    def _padded(self, frame: np.ndarray) -> np.ndarray:
        right, bottom = self.pad
        if not (right or bottom):
            return frame
        return np.pad(frame, ((0, bottom), (0, right), (0, 0)), mode="edge")
