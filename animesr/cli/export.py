"""`animesr export`: a checkpoint as an ONNX graph, for other tools (and our own runtimes' cache)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from animesr.cli import app
from animesr.cli.common import fail, guarded, note
from animesr.errors import InputError


@app.command("export")
def export(
    model: Path = typer.Argument(..., metavar="MODEL", help="Checkpoint: animesr .safetensors or the A2N authors' .pt."),
    output: Path = typer.Option(..., "--output", "-o", help="The ONNX file to write."),
    scale: int | None = typer.Option(None, "--scale", "-s",
                                     help="Scale (needed for the authors' .pt files; checked for ours)."),
) -> None:
    """Export a model to ONNX (opset 18; batch, height and width dynamic). Input `image`: N×3×H×W float32
    in the model's value range (metadata `value_range`: 1 or 255); output `upscaled`: N×3×sH×sW."""
    if importlib.util.find_spec("onnx") is None:
        raise fail('export needs the onnx package: pip install "animesr[onnxruntime]" (or: pip install onnx)',
                   InputError.exit_code)
    if output.suffix.lower() != ".onnx":
        raise fail(f"--output must end in .onnx, not {output.name!r}", InputError.exit_code)
    from animesr.checkpoint import load_checkpoint
    from animesr.inference.backends.export import export_onnx

    loaded = guarded(lambda: load_checkpoint(model, scale=scale))
    guarded(lambda: export_onnx(loaded, output))
    note(f"wrote {output}: x{loaded.scale}, input range 0..{loaded.value_range:g}, opset 18")
