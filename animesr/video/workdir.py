"""The resumable work folder beside OUTPUT: chunk files, the source's timeline, and a manifest
that says which source, model and settings the chunks were made with and which are complete."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from animesr.atomic import replaced_on_success
from animesr.errors import OutputError
from animesr.video.timeline import Timeline

MANIFEST_FORMAT = "animesr-video-work"
MANIFEST_VERSION = 1
_HASHED_BYTES = 1 << 20


@dataclass(frozen=True)
class ChunkRecord:
    index: int
    frames: int
    reused: int


def partial_output_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def work_folder_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial-work")


def file_identity(path: Path) -> dict[str, object]:
    """Name, size, and a hash of the first and last MiB: cheap, and changes when the file does."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(_HASHED_BYTES))
        if size > _HASHED_BYTES:
            f.seek(max(_HASHED_BYTES, size - _HASHED_BYTES))
            digest.update(f.read(_HASHED_BYTES))
    return {"name": path.name, "size": size, "sha256_ends": digest.hexdigest()}


class WorkFolder:
    def __init__(self, path: Path, identity: dict[str, object]) -> None:
        self.path = path
        self.identity = identity
        self.chunks: list[ChunkRecord] = []

    # ---- opening ------------------------------------------------------------------------

    def open(self, resume: bool) -> None:
        """Continue a matching folder (resume), or start a clean one."""
        if self.path.exists() and not resume:
            shutil.rmtree(self.path)
        if self.path.exists():
            self._load()
        else:
            self.path.mkdir(parents=True)
            self._save()

    def _load(self) -> None:
        try:
            manifest = json.loads((self.path / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise OutputError(f"{self.path} exists but has no readable manifest: remove it, "
                              "or run with --no-resume to start over") from None
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("identity") != self.identity:
            changed = _changed_keys(manifest.get("identity", {}), self.identity)
            raise OutputError(f"{self.path} holds work for another source, model or settings "
                              f"({', '.join(changed) or 'format'} differ): run the same command to "
                              "resume it, or add --no-resume to start over")
        self.chunks = [ChunkRecord(**c) for c in manifest.get("chunks", [])
                       if self.chunk_path(c["index"]).is_file()]
        self.chunks = [c for i, c in enumerate(self.chunks) if c.index == i]

    def _save(self) -> None:
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "identity": self.identity,
                    "chunks": [c.__dict__ for c in self.chunks]}
        _write_atomically(self.path / "manifest.json", json.dumps(manifest, indent=1))

    # ---- timeline -----------------------------------------------------------------------

    def load_timeline(self) -> Timeline | None:
        path = self.path / "timeline.json"
        return Timeline.from_json(path.read_text()) if path.is_file() else None

    def save_timeline(self, timeline: Timeline) -> None:
        _write_atomically(self.path / "timeline.json", timeline.to_json())

    # ---- chunks -------------------------------------------------------------------------

    def chunk_path(self, index: int) -> Path:
        return self.path / f"chunk_{index:05d}.nut"

    def temporary_chunk_path(self, index: int) -> Path:
        return self.path / f"chunk_{index:05d}.nut.tmp"

    def frames_done(self) -> int:
        return sum(c.frames for c in self.chunks)

    def reused_done(self) -> int:
        return sum(c.reused for c in self.chunks)

    def complete_chunk(self, record: ChunkRecord) -> None:
        os.replace(self.temporary_chunk_path(record.index), self.chunk_path(record.index))
        self.chunks.append(record)
        self._save()

    def write_concat_list(self, durations: list[float]) -> Path:
        lines = ["ffconcat version 1.0"]
        for record, seconds in zip(self.chunks, durations):
            lines += [f"file '{self.chunk_path(record.index).name}'", f"duration {seconds:.6f}"]
        path = self.path / "chunks.ffconcat"
        path.write_text("\n".join(lines) + "\n")
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_atomically(path: Path, text: str) -> None:
    with replaced_on_success(path) as temporary:
        temporary.write_text(text)


def _changed_keys(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]
