"""The Typer app. Each command lives in its own module and is registered here."""

from __future__ import annotations

import typer

from animesr import __version__

app = typer.Typer(
    name="animesr",
    help="Sharp anime images and videos with the A2N super-resolution network.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"animesr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Sharp anime images and videos with A2N."""


def _register() -> None:
    # Each command module adds itself to `app` on import.
    from animesr.cli import evaluate, export, prepare, preview, train, upscale_image, upscale_video  # noqa: F401


def main() -> None:
    """SIGTERM and SIGHUP (a closed terminal) end every command as Ctrl-C does: its `finally` blocks
    run (temporary files removed, ffmpeg stopped), then one line and exit status 128 + the signal."""
    from animesr.cli.common import fail
    from animesr.cli.signals import Terminated, stop_on_signals

    _register()
    try:
        with stop_on_signals():
            app()
    except Terminated as stopped:
        raise SystemExit(fail(f"stopped by {stopped}", stopped.exit_code).exit_code) from None
