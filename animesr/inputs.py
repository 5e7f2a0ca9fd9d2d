"""Files and folders given on the command line -> the input files, each with its path relative to
the folder it was found in (so a folder tree can be mirrored under the output folder)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from animesr.errors import InputError


def list_inputs(paths: list[Path], recursive: bool, wanted: Callable[[Path, Path], bool],
                kind: str) -> list[tuple[Path, Path]]:
    """Files are taken as given; folders are walked for the files `wanted(file, folder)` accepts, and a folder
    without any is an error naming `kind` ("images", "videos"). A file reached twice (named twice, or
    named and inside a folder also named) is taken once, where it is first reached."""
    found: list[tuple[Path, Path]] = []
    for root in paths:
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
        if root.is_file():
            found.append((root, Path(root.name)))
            continue
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in root.glob(pattern) if p.is_file() and wanted(p, root))
        if not files:
            raise InputError(f"{root}: no {kind} found{'' if recursive else ' (try --recursive)'}")
        found.extend((p, p.relative_to(root)) for p in files)
    first: dict[Path, tuple[Path, Path]] = {}
    for source, relative in found:
        first.setdefault(source.resolve(), (source, relative))
    return list(first.values())


def folder_inside(folder: Path | None, root: Path) -> Path | None:
    """`folder`, resolved, when it lies strictly inside `root`; else None. An output folder inside an
    input folder holds earlier results, never inputs."""
    if folder is None:
        return None
    folder, root = folder.resolve(), root.resolve()
    return folder if folder != root and folder.is_relative_to(root) else None
