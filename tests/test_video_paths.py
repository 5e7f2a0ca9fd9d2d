"""File names ffmpeg would misread when passed raw: `ep1:cut.mp4` (a "protocol" ep1) and
`-dash.mp4` (an option), as relative paths in the current folder, through the probe and the whole
upscale-video, from the API and from the command line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from animesr.config import EncodeSettings, VideoJob
from animesr.errors import FFmpegError
from animesr.video.ffmpeg import ffmpeg_exe
from animesr.video.pipeline import upscale_video
from animesr.video.probe import _run_ffprobe, probe
from test_video_pipeline import lavfi_testsrc, make_clip, sine, tiny_model_file

AWKWARD_NAMES = ["ep1:cut.mp4", "-dash.mp4"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    try:
        ffmpeg = ffmpeg_exe()
    except FFmpegError as error:
        pytest.skip(f"no ffmpeg: {error}")
    folder = tmp_path_factory.mktemp("awkward")
    clip = make_clip(ffmpeg, folder / "plain.mp4", *lavfi_testsrc("24", 0.5, "64x48"), *sine(440, 48000, 0.5),
                     "-c:v", "libx264", "-c:a", "aac")
    return clip, tiny_model_file(folder)


@pytest.fixture
def in_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: tuple[Path, Path]) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in AWKWARD_NAMES:
        shutil.copy(source[0], tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_probe_reads_awkward_relative_names(in_folder: Path, name: str) -> None:
    info = probe(Path(name))
    assert (info.width, info.height) == (64, 48) and [s.kind for s in info.streams] == ["video", "audio"]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_ffprobe_reads_awkward_relative_names(in_folder: Path, name: str) -> None:
    old = os.environ.get("ANIMESR_TEST_OLD_FFMPEG")  # .ci/run unpacks Debian's ffmpeg and ffprobe there
    ffprobe = shutil.which("ffprobe") or (shutil.which("ffprobe", path=str(Path(old).parent)) if old else None)
    if ffprobe is None:
        pytest.skip("no ffprobe here (the bundled ffmpeg has none; ffmpeg's own output is parsed)")
    data = _run_ffprobe(ffprobe, Path(name))
    assert [s["codec_type"] for s in data["streams"]] == ["video", "audio"]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_upscale_video_with_awkward_names(in_folder: Path, source: tuple[Path, Path], name: str) -> None:
    output = Path(name.replace(".mp4", "_x2.mkv"))
    job = VideoJob(input=Path(name), output=output, scale=2, model=source[1],
                   encode=EncodeSettings(preset="ultrafast"))
    result = upscale_video(job)
    assert result.verification.ok and result.frames == 12
    assert (in_folder / output).is_file() and probe(output).width == 128


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_cli_with_awkward_names(in_folder: Path, source: tuple[Path, Path], name: str) -> None:
    from animesr.cli import _register, app

    _register()
    output = name.replace(".mp4", "_x2.mp4")
    result = CliRunner().invoke(app, ["upscale-video", f"--output={output}", "--scale", "2", "--model",
                                      str(source[1]), "--preset", "ultrafast", "--", name])
    assert result.exit_code == 0, result.output
    assert "frames: 12 in, 12 out (ok)" in result.output
    assert (in_folder / output).is_file()
