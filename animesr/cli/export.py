"""`animesr export`: a checkpoint as an ONNX graph, for other tools (and our own runtimes' cache)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from animesr.cli import app
from animesr.cli.common import guarded, note
from animesr.errors import OutputError, UsageError

@app.command("export")
def export(
    model: Annotated[Path, typer.Argument(metavar="MODEL",
                                          help="Checkpoint: animesr .safetensors or the A2N authors' .pt.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The ONNX file to write.")],
    scale: Annotated[int | None, typer.Option(
        "--scale", "-s", help="Scale (needed for the authors' .pt files; checked for ours).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing ONNX file.")] = False,
) -> None:
    """Export a model to ONNX (opset 18; batch, height and width dynamic). Input `image`: N×3×H×W float32
    in the model's value range (metadata `value_range`: 1 or 255); output `upscaled`: N×3×sH×sW."""
    guarded(lambda: _check_options(model=model, output=output, scale=scale, overwrite=overwrite))
    from animesr.checkpoint import load_checkpoint
    from animesr.inference.backends.export import export_onnx

    loaded = guarded(lambda: load_checkpoint(model, scale=scale))
    guarded(lambda: export_onnx(loaded, output))
    note(f"wrote {output}: x{loaded.scale}, input range 0..{loaded.value_range:g}, opset 18")


def _check_options(*, model: Path, output: Path, scale: int | None, overwrite: bool) -> None:
    from animesr.atomic import check_writable_folder, require_folder_for
    from animesr.model.a2n import SUPPORTED_SCALES

    if scale is not None and scale not in SUPPORTED_SCALES:
        raise UsageError(f"--scale must be 2, 3 or 4, not {scale}")
    if output.suffix.lower() != ".onnx":
        raise UsageError(f"--output must end in .onnx, not {output.name!r}")
    if importlib.util.find_spec("onnx") is None:
        raise UsageError('export needs the onnx package: pip install "animesr[onnxruntime]" (or: pip install onnx)')
    if output.is_dir():
        raise OutputError(f"cannot write {output}: it is a folder")
    if output.exists() and model.exists() and output.resolve() == model.resolve():
        raise OutputError(f"{output}: the output would replace the model")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} exists: add --overwrite to replace it")
    require_folder_for(output)
    check_writable_folder(output.parent)
