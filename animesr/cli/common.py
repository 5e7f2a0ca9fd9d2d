"""What every command shares: one console, errors → one line and an exit code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from animesr.errors import AnimeSRError, StoppedByModel, TrainingInterrupted

console = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")

INTERRUPTED_EXIT_CODE = 130

BACKEND_HELP = ("Runtime: auto (the fastest installed for the device: OpenVINO, then ONNX Runtime, then "
                "torch on the CPU; torch on CUDA), torch, openvino, onnxruntime.")
PRECISION_HELP = ("auto (fp16 on CUDA, exact on the CPU), exact (fp32), fast (the backend's reduced precision: "
                  "bf16 on recent CPUs, fp16 on GPUs), fp32, fp16, bf16.")

# Options that several commands share, declared once
ScaleOption = Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2, 3 or 4.")]
ModelOption = Annotated[str | None, typer.Option(
    "--model", "-m", help="clean, real (the shipped models for --scale) or a model file "
                          "(animesr .safetensors or the A2N authors' .pt); default: clean.")]
DenoiseOption = Annotated[float | None, typer.Option(
    "--denoise", help="0..1: mix the shipped clean (0) and real (1) models; higher "
                      "removes more blur, noise and compression.")]
DeviceOption = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda, cuda:N, or gpu[.N] (OpenVINO).")]
BackendOption = Annotated[str, typer.Option("--backend", help=BACKEND_HELP)]
PrecisionOption = Annotated[str, typer.Option("--precision", help=PRECISION_HELP)]
CompileOption = Annotated[bool, typer.Option(
    "--compile", help="torch.compile the network (torch backend; CUDA graphs on CUDA): a one-time compile per "
                      "input size, then faster where measured (README, Backends).")]
TtaOption = Annotated[bool, typer.Option(
    "--tta", help="Self-ensemble: average the model over the 8 rotations/mirrors (8× slower, slightly more accurate).")]


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {_escape(message)}")  # user text may hold [brackets]
    return typer.Exit(code)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {_escape(message)}")


def note(message: str) -> None:
    console.print(_escape(message))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def guarded(run: Callable[[], T]) -> T:
    """Run a core call; our errors become one red line and the error's exit code."""
    try:
        return run()
    except TrainingInterrupted as stopped:  # asked for, and nothing was lost: not an error
        note(str(stopped))
        raise typer.Exit(stopped.exit_code) from None
    except AnimeSRError as error:
        raise fail(str(error), error.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", INTERRUPTED_EXIT_CODE) from None
    # Terminated (SIGTERM, SIGHUP) goes on up: to the command that has more to say, else to `main`


@contextmanager
def progress_bar(*extra_columns: TextColumn, show: bool = True, opened: bool = True) -> Iterator[Progress]:
    """opened=False: the caller opens the display with `progress.start()` once the work begins, so an
    error found before that is the only output (a display closed unopened still prints a blank line)."""
    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    progress = Progress(*columns, console=console, transient=False, disable=not show)
    if opened:
        progress.start()
    try:
        yield progress
    finally:
        if progress.live.is_started:
            progress.stop()


def summary_before_a_stop(run_job: Callable[[], T], output: Path) -> T:
    """A folder job's result; when its model stops it after some inputs, their summary line comes
    before the error."""
    try:
        return run_job()
    except StoppedByModel as stopped:
        if any(stopped.summary.counts().values()):
            console.print(f"{stopped.summary.line()} → {output}", markup=False)
        raise
