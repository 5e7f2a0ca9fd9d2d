"""Which ffmpeg runs: ANIMESR_FFMPEG, else the system one, else the bundled imageio-ffmpeg binary;
one that is too old is replaced by the bundled binary with a one-line warning, and a capability
problem is an ffmpeg error (exit 6), never blamed on the user's file.

The old-ffmpeg tests use a real old ffmpeg where there is one: $ANIMESR_TEST_OLD_FFMPEG (`.ci/run`
unpacks Debian 12's ffmpeg 5.1 there), else a system ffmpeg older than the minimum."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from animesr.config import EncodeSettings, VideoJob
from animesr.errors import FFmpegError
from animesr.video import ffmpeg as ff
from animesr.video.pipeline import VideoCallbacks, upscale_video
from test_video_pipeline import lavfi_testsrc, make_clip, sine, tiny_model_file

OLD_FFMPEG_ENV = "ANIMESR_TEST_OLD_FFMPEG"


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch: pytest.MonkeyPatch):
    """Each test chooses anew, and leaves no choice behind for the other tests."""
    monkeypatch.delenv(ff.FFMPEG_ENV, raising=False)
    ff.ffmpeg_tool.cache_clear()
    ff.video_encoders.cache_clear()
    yield
    ff.ffmpeg_tool.cache_clear()
    ff.video_encoders.cache_clear()


@pytest.fixture(scope="module")
def bundled() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:
        pytest.skip(f"imageio-ffmpeg has no binary here: {error}")


def _version(ffmpeg: str) -> tuple[int, int] | None:
    try:
        line = subprocess.run([ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True,
                              timeout=60).stdout.split("\n", 1)[0]
    except (OSError, subprocess.SubprocessError):
        return None
    return ff.version_numbers(line)


@pytest.fixture(scope="module")
def old_ffmpeg() -> str:
    """A real ffmpeg older than the minimum (Debian 12's 5.1, Ubuntu 22.04's 4.4...)."""
    for candidate in (os.environ.get(OLD_FFMPEG_ENV), shutil.which("ffmpeg")):
        if candidate and (version := _version(candidate)) and version < ff.MINIMUM_VERSION:
            return candidate
    pytest.skip(f"no ffmpeg older than {ff.minimum_version_text()} here: set {OLD_FFMPEG_ENV} to one "
                "(.ci/run unpacks Debian's where apt-get exists)")


def _fake_ffmpeg(folder: Path, version_line: str) -> Path:
    """An 'ffmpeg' that prints a version and fails everything else, as an ancient build would."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "ffmpeg"
    fake.write_text(f"#!/bin/sh\ncase \"$*\" in *-version*) echo '{version_line}'; exit 0;; esac\n"
                    "echo 'Unrecognized option' >&2; exit 1\n")
    fake.chmod(0o755)
    return fake


def test_version_lines() -> None:
    assert ff.version_numbers("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026") == (5, 1)
    assert ff.version_numbers("ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright") == (4, 4)
    assert ff.version_numbers("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright") == (9, 0)
    assert ff.version_numbers("ffmpeg version 6.1.1-3ubuntu5 Copyright") == (6, 1)
    assert ff.version_numbers("ffmpeg version N-112233-gabcdef Copyright") is None  # git: capabilities decide


def test_an_old_ffmpeg_asked_for_is_replaced_by_the_bundled_one_with_one_line(
        bundled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_ffmpeg(tmp_path, "ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021")
    monkeypatch.setenv(ff.FFMPEG_ENV, str(fake))
    tool = ff.ffmpeg_tool()
    assert tool.path == bundled and tool.ffprobe is None
    assert "4.4.2" in tool.notice and ff.minimum_version_text() in tool.notice and "bundled" in tool.notice
    assert "\n" not in tool.notice


def test_an_old_system_ffmpeg_on_path_is_replaced_too(bundled: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_ffmpeg(tmp_path / "bin", "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026")
    (tmp_path / "bin" / "ffprobe").write_text("#!/bin/sh\nexit 1\n")
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    tool = ff.ffmpeg_tool()
    assert tool.path == bundled
    assert tool.ffprobe is None  # the old ffmpeg's ffprobe is not paired with the bundled ffmpeg
    assert tool.notice.startswith(f"the system ffmpeg ({fake})") and "5.1.9" in tool.notice


def test_without_a_bundled_binary_an_old_ffmpeg_is_an_ffmpeg_error(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ff, "_bundled_path", lambda: None)
    monkeypatch.setenv(ff.FFMPEG_ENV, str(_fake_ffmpeg(tmp_path, "ffmpeg version 4.4.2 Copyright")))
    with pytest.raises(FFmpegError, match=r"4\.4\.2 is older than the 6\.1 animesr needs; install ffmpeg 6\.1"):
        ff.ffmpeg_tool()
    assert FFmpegError.exit_code == 6


def test_the_variable_chooses(bundled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ff.FFMPEG_ENV, "bundled")
    assert ff.ffmpeg_tool().path == bundled and ff.ffmpeg_tool().notice is None
    ff.ffmpeg_tool.cache_clear()
    # a good ffmpeg elsewhere, with its own ffprobe beside it: both are used
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "ffmpeg").write_text(f"#!/bin/sh\nexec '{bundled}' \"$@\"\n")
    (folder / "ffprobe").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("ffmpeg", "ffprobe"):
        (folder / tool).chmod(0o755)
    monkeypatch.setenv(ff.FFMPEG_ENV, str(folder / "ffmpeg"))
    chosen = ff.ffmpeg_tool()
    assert (chosen.path, chosen.ffprobe, chosen.notice) == (str(folder / "ffmpeg"), str(folder / "ffprobe"), None)
    ff.ffmpeg_tool.cache_clear()
    monkeypatch.setenv(ff.FFMPEG_ENV, str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(FFmpegError, match="ANIMESR_FFMPEG=.*no-such-ffmpeg is not an ffmpeg that can be run"):
        ff.ffmpeg_tool()


# ---- whole jobs with a real old ffmpeg and with the bundled one ------------------------------


@pytest.fixture(scope="module")
def clip_and_model(bundled: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("choice")
    clip = make_clip(bundled, folder / "clip.mkv", *lavfi_testsrc("24", 0.5, "64x48"), *sine(440, 48000, 0.5),
                     "-c:v", "libx264", "-c:a", "flac")
    return clip, tiny_model_file(folder)


def _job(clip: Path, model: Path, output: Path) -> VideoJob:
    return VideoJob(input=clip, output=output, scale=2, model=model, encode=EncodeSettings(preset="ultrafast"))


def test_a_job_with_a_real_old_system_ffmpeg_runs_on_the_bundled_one(
        old_ffmpeg: str, clip_and_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian 12's situation: ffmpeg 5.1 (and its ffprobe) first on PATH. It used to fail every job
    with "cannot decode X: ... Invalid time base: filter", exit 2."""
    clip, model = clip_and_model
    monkeypatch.setenv("PATH", f"{Path(old_ffmpeg).parent}{os.pathsep}{os.environ['PATH']}")
    if shutil.which("ffmpeg") != old_ffmpeg:
        pytest.skip(f"{old_ffmpeg} is not named ffmpeg, so it cannot stand first on PATH")
    warnings: list[str] = []
    result = upscale_video(_job(clip, model, tmp_path / "out.mkv"), VideoCallbacks(warn=warnings.append))
    assert result.verification.ok and result.frames == 12
    assert len([w for w in warnings if "bundled" in w]) == 1
    assert f"older than the {ff.minimum_version_text()}" in warnings[0]


def test_the_cli_says_so_in_one_line_and_succeeds(old_ffmpeg: str, clip_and_model: tuple[Path, Path],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from animesr.cli import _register, app

    _register()
    clip, model = clip_and_model
    monkeypatch.setenv(ff.FFMPEG_ENV, old_ffmpeg)
    result = CliRunner().invoke(app, ["upscale-video", str(clip), "-o", str(tmp_path / "o.mkv"), "-s", "2",
                                      "-m", str(model), "--preset", "ultrafast"])
    assert result.exit_code == 0, result.output
    assert "cannot decode" not in result.output
    assert len([line for line in result.output.splitlines() if "using the bundled" in line]) == 1


def test_a_job_with_the_bundled_ffmpeg_selected_says_nothing(bundled: str, clip_and_model: tuple[Path, Path],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip, model = clip_and_model
    monkeypatch.setenv(ff.FFMPEG_ENV, bundled)
    warnings: list[str] = []
    result = upscale_video(_job(clip, model, tmp_path / "out.mkv"), VideoCallbacks(warn=warnings.append))
    assert result.verification.ok and result.frames == 12
    assert ff.ffmpeg_tool().path == bundled and warnings == []
