"""The resumable work folder beside OUTPUT: chunk files, the source's timeline, and a manifest
that says which source, model and settings the chunks were made with, and which chunks are
complete (with each one's size and SHA-256, so a damaged chunk is redone); and the lock that
keeps a second run off the same OUTPUT."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from animesr.atomic import NAME_MAX, replaced_on_success
from animesr.errors import InputError, OutputError
from animesr.video.timeline import Timeline

MANIFEST_FORMAT = "animesr-video-work"
MANIFEST_VERSION = 2  # 2: the whole source hashed, chunk sizes and hashes, model value range
_READ_BYTES = 1 << 22


@dataclass(frozen=True)
class ChunkRecord:
    index: int
    frames: int
    reused: int
    size: int = 0  # bytes, and SHA-256, of the chunk file, filled in when it is complete
    sha256: str = ""


WORK_SUFFIXES = (".partial", ".partial-work", ".lock")  # what OUTPUT's name gets for the files beside it


def check_output_name(output: Path) -> None:
    """OUTPUT's name leaves room for the work files named after it."""
    room = NAME_MAX - max(len(suffix) for suffix in WORK_SUFFIXES)
    if len(os.fsencode(output.name)) > room:
        raise OutputError(f"{output.name[:40]}…: an output name may have at most {room} bytes "
                          "(its work files add to it); choose a shorter one")


def partial_output_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def work_folder_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial-work")


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


def file_identity(path: Path) -> dict[str, object]:
    """Size and SHA-256 of the whole file: any changed byte is a different source (0.72 s per
    GiB on the 2-core test machine, from the page cache: benchmarks/bench_source_hash.py).
    Neither the name nor the mtime: a renamed or copied source is the same source."""
    try:
        return {"size": path.stat().st_size, "sha256": file_sha256(path)}
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def output_lock(output: Path) -> Iterator[Path]:
    """Hold an exclusive lock beside OUTPUT for the whole job, or fail at once when another run
    holds it. flock(2): the kernel releases it when the process dies, however it dies. Creating
    the lock file is also the first write in OUTPUT's folder, so an unwritable folder fails here."""
    path = lock_path(output)
    fd = _locked_file(path, output)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        path.unlink(missing_ok=True)  # before closing: a run waiting on this file retries on a new one
        os.close(fd)


def _locked_file(path: Path, output: Path) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise OutputError(f"cannot write in folder {path.parent}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            process = f" (process {holder})" if holder.isdigit() else ""
            raise OutputError(f"another animesr run{process} is writing {output.name} and holds {path.name}: "
                              "wait for it to finish, or stop it and run this again to resume") from None
        except OSError as error:
            os.close(fd)
            raise OutputError(f"cannot lock {path}: {error.strerror}") from None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the holder removed it between our open and our lock: lock the new one


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


class WorkFolder:
    def __init__(self, path: Path, identity: dict[str, object]) -> None:
        self.path = path
        self.identity = identity
        self.chunks: list[ChunkRecord] = []  # chunks 0..k-1, all complete
        self.later: dict[int, ChunkRecord] = {}  # complete chunks after the first missing one (Ray workers)

    # ---- opening ------------------------------------------------------------------------

    def open(self, resume: bool) -> list[str]:
        """Continue a matching folder (resume), or start a clean one. Returns a line for each
        chunk found damaged or missing: it and the chunks after it are done again."""
        if self.path.exists() and resume:
            return self._load()
        try:
            if self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
        except OSError as error:
            raise OutputError(f"cannot write the work folder {self.path}: {error.strerror}") from None
        self._save()
        return []

    def _load(self) -> list[str]:
        try:
            manifest = json.loads((self.path / "manifest.json").read_text())
            records = _chunk_records(manifest)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):  # JSON and Unicode errors are ValueErrors
            raise OutputError(f"{self.path} exists but has no readable manifest: remove it, "
                              "or run with --no-resume to start over") from None
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
            raise OutputError(f"{self.path} was made by another version of animesr: "
                              "add --no-resume to start over")
        if manifest.get("identity") != self.identity:
            changed = _changed_keys(manifest.get("identity", {}), self.identity)
            raise OutputError(f"{self.path} holds work for another source, model or settings "
                              f"({', '.join(changed)} differ): run the same command to "
                              "resume it, or add --no-resume to start over")
        problems: list[str] = []
        for record in records:
            problem = self._chunk_problem(record)
            if problem:
                problems.append(f"chunk {record.index} is {problem}: redoing it")
            else:
                self._place(record)
        return problems

    def _chunk_problem(self, record: ChunkRecord) -> str | None:
        path = self.chunk_path(record.index)
        if not path.is_file():
            return "missing"
        if path.stat().st_size != record.size or file_sha256(path) != record.sha256:
            return f"damaged ({path.name} differs from the size and SHA-256 it was written with)"
        return None

    def _save(self) -> None:
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "identity": self.identity,
                    "chunks": [asdict(c) for c in self.completed()]}
        _write_atomically(self.path / "manifest.json", json.dumps(manifest, indent=1))

    # ---- timeline -----------------------------------------------------------------------

    def load_timeline(self) -> Timeline | None:
        path = self.path / "timeline.json"
        if not path.is_file():
            return None
        try:
            return Timeline.from_json(path.read_text())
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            raise OutputError(f"{path} is damaged: remove {self.path}, or run with --no-resume to start over") from None

    def save_timeline(self, timeline: Timeline) -> None:
        _write_atomically(self.path / "timeline.json", timeline.to_json())

    # ---- chunks -------------------------------------------------------------------------

    def chunk_path(self, index: int) -> Path:
        return self.path / f"chunk_{index:05d}.nut"

    def temporary_chunk_path(self, index: int) -> Path:
        return self.path / f"chunk_{index:05d}.nut.tmp"

    def frames_done(self) -> int:
        """Frames of the unbroken run of complete chunks from the start."""
        return sum(c.frames for c in self.chunks)

    def completed(self) -> list[ChunkRecord]:
        """Every complete chunk, in order, including those after a missing one."""
        return self.chunks + [self.later[i] for i in sorted(self.later)]

    def reused_done(self) -> int:
        return sum(c.reused for c in self.chunks)

    def complete_chunk(self, record: ChunkRecord) -> None:
        temporary = self.temporary_chunk_path(record.index)
        try:
            record = replace(record, size=temporary.stat().st_size, sha256=file_sha256(temporary))
            os.replace(temporary, self.chunk_path(record.index))
        except OSError as error:
            raise OutputError(f"cannot keep chunk {record.index} in {self.path}: {error.strerror}") from None
        self._place(record)
        self._save()

    def _place(self, record: ChunkRecord) -> None:
        """Chunks may complete in any order (Ray workers); `chunks` stays the unbroken run."""
        if record.index < len(self.chunks):
            self.chunks[record.index] = record
            return
        self.later[record.index] = record
        while len(self.chunks) in self.later:
            self.chunks.append(self.later.pop(len(self.chunks)))

    def write_concat_list(self, durations: list[float]) -> Path:
        lines = ["ffconcat version 1.0"]
        for record, seconds in zip(self.chunks, durations):
            lines += [f"file '{self.chunk_path(record.index).name}'", f"duration {seconds:.6f}"]
        path = self.path / "chunks.ffconcat"
        _write_atomically(path, "\n".join(lines) + "\n")
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_atomically(path: Path, text: str) -> None:
    try:
        with replaced_on_success(path) as temporary:
            temporary.write_text(text)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror}") from None


def _changed_keys(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def _chunk_records(manifest: dict) -> list[ChunkRecord]:
    """The manifest's chunks, by index; a manifest of another shape raises (TypeError, KeyError…)."""
    chunks = manifest.get("chunks", [])
    if not isinstance(chunks, list):
        raise TypeError("chunks is not a list")
    return sorted({c["index"]: ChunkRecord(**c) for c in chunks}.values(), key=lambda c: c.index)
