"""Never a half-written output: write beside the target, rename onto it on success."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

NAME_MAX = 255  # bytes in a file name on the usual file systems


@contextmanager
def replaced_on_success(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` (ending in `suffix`, for writers that pick the
    format from the name); rename it onto `path` when the block succeeds, remove it when the
    block fails, so `path` keeps its previous content."""
    temporary = _temporary_name(path, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def replaced_together(*paths: Path) -> Iterator[tuple[Path, ...]]:
    """Temporaries for files that belong together (a checkpoint and the state that resumes it):
    renamed onto their targets, in order, only when the block has written them all; when it
    fails (a full disk), every target keeps its previous content."""
    temporaries = tuple(_temporary_name(path) for path in paths)
    try:
        yield temporaries
        for temporary, path in zip(temporaries, paths):
            os.replace(temporary, path)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def _temporary_name(path: Path, suffix: str = "") -> Path:
    """`.NAME.tmp-PID` beside `path`; a name near the file system's 255-byte limit is shortened to a
    hash of itself, so any name that can be written can be written atomically."""
    name = f".{path.name}.tmp-{os.getpid()}{suffix}"
    if len(os.fsencode(name)) > NAME_MAX - 15:  # room for the PID and a suffix
        digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:24]
        name = f".animesr-{digest}.tmp-{os.getpid()}{suffix}"
    return path.with_name(name)


def require_folder_for(path: Path) -> None:
    """Raise OutputError unless the folder `path` is named in exists and is a folder."""
    from animesr.errors import OutputError

    folder = path.parent
    if not folder.is_dir():
        reason = f"{folder} is a file, not a folder" if folder.exists() else f"folder {folder} does not exist"
        raise OutputError(f"cannot write {path}: {reason}")


def check_writable_folder(folder: Path) -> None:
    """Raise OutputError unless files can be written in `folder`, or, when it does not exist yet,
    in the nearest folder above it (where it would be created). Nothing is left behind."""
    from animesr.errors import OutputError

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write in {folder}: {existing} is a file")
    probe = existing / f".animesr-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
    except OSError as error:
        where = "" if existing == folder else f"{existing}: "
        raise OutputError(f"cannot write in {folder}: {where}{error.strerror or error}") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


@contextmanager
def removed_if_left_empty(folders: Iterable[Path]) -> Iterator[None]:
    """Of `folders` and their parents, those that do not exist yet are removed after the block when it
    created them and left them empty: a job that wrote nothing leaves no folder behind."""
    missing = {folder for path in folders for folder in _missing_folders(path.absolute())}
    try:
        yield
    finally:
        for folder in sorted(missing, key=lambda path: len(path.parts), reverse=True):  # deepest first
            with suppress(OSError):  # it holds files (or was not created): kept
                folder.rmdir()


def _missing_folders(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing
