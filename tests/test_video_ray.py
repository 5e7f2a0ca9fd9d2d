"""upscale-video's chunks on Ray workers (issue #16 items 2 and 3): on a local Ray instance the test
starts (and shuts down, even on failure), with a tiny model and generated clips: several videos
identical to a single-process run, chunks sent back as bytes, a worker killed mid-chunk, the
driver killed and run again. Skipped where Ray is not installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from animesr.config import VideoJob
from animesr.video.batch import plan_videos, upscale_videos
from animesr.video.distributed import RayPool, RaySettings
from animesr.video.ffmpeg import ffmpeg_exe
from animesr.video.pipeline import VideoCallbacks, upscale_video
from animesr.video.workdir import work_folder_path
from conftest import dies_with_pytest
from test_video_pipeline import (clips, decoded_frames_digest, ffmpeg, lavfi_testsrc, make_clip, run,  # noqa: F401
                                 sine, tiny_model_file)
from test_video_processes import _alive, _children, _command_line

ray = pytest.importorskip("ray", reason="needs Ray: pip install 'animesr[ray]'")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray instance with 2 CPUs for this module; its address, for a driver in another process."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def model(clips: Path) -> Path:
    return tiny_model_file(clips)


@pytest.fixture(scope="module")
def pool(cluster: str) -> RayPool:
    """Two workers for the module: each test's job uses the same model and settings, so the
    workers are started once."""
    with RayPool(RaySettings(workers=2)) as started:
        yield started


@pytest.fixture(scope="module")
def episodes(ffmpeg: str, clips: Path) -> list[Path]:
    """Two short episodes: constant rate with audio, and variable frame rate."""
    folder = clips / "ray-episodes"
    folder.mkdir(exist_ok=True)
    first = make_clip(ffmpeg, folder / "ep1.mkv", *lavfi_testsrc("25", 1.2), *sine(440, 48000, 1.2),
                      "-c:v", "libx264", "-c:a", "flac")
    vfr = make_clip(ffmpeg, folder / "ep2.mkv", *lavfi_testsrc("30", 1.0), "-vf",
                    "setpts='PTS+if(gt(N,12),0.05/TB,0)+if(gt(N,20),0.02/TB,0)'", "-fps_mode", "passthrough",
                    "-c:v", "libx264")
    return [first, vfr]


@pytest.fixture(scope="module")
def long_clip(ffmpeg: str, clips: Path) -> Path:
    """Larger frames, many chunks: long enough to kill something in the middle."""
    return make_clip(ffmpeg, clips / "ray-long.mkv", *lavfi_testsrc("25", 3.2, "128x96"), *sine(440, 48000, 3.2),
                     "-c:v", "libx264", "-c:a", "flac")


def digest(path: Path) -> str:
    return decoded_frames_digest(ffmpeg_exe(), path)


def test_the_driver_killed_and_run_again_resumes_to_the_same_frames(cluster: str, long_clip: Path, model: Path,
                                                                    tmp_path: Path) -> None:
    """First in the module: the killed driver's own workers need the cluster's CPUs."""
    single = run(long_clip, tmp_path / "single.mkv", chunk_frames=10)
    out = tmp_path / "ray.mkv"
    command = [sys.executable, "-m", "animesr", "upscale-video", str(long_clip), "-o", str(out), "-s", "2",
               "-m", str(model), "--chunk-frames", "10", "--workers", f"ray:{cluster}", "--ray-workers", "2"]
    driver = subprocess.Popen(dies_with_pytest(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    manifest = work_folder_path(out) / "manifest.json"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            chunks = _manifest_chunks(manifest)
            if chunks:
                driver.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if driver.poll() is None:
            driver.kill()
        stderr = driver.communicate()[1].decode(errors="replace")
    assert driver.returncode == -signal.SIGKILL, stderr
    assert not out.exists()
    kept = {c["sha256"]: c["index"] for c in _manifest_chunks(manifest)}
    assert 0 < len(kept) < 8
    progress: list[int] = []
    with RayPool(RaySettings(workers=2)) as pool:  # as soon as the dead driver's workers are gone
        result = upscale_video(VideoJob(input=long_clip, output=out, scale=2, model=model, chunk_frames=10),
                               VideoCallbacks(on_frames=lambda done, _: progress.append(done)), pool.engine)
    assert progress[0] == 10 * (len(kept) + 1), "the chunks the killed driver kept are not done again"
    assert result.verification.ok and digest(out) == digest(single.output)
    assert result.reused == single.reused


def test_several_videos_on_two_workers_equal_single_process_runs(pool: RayPool, episodes: list[Path],
                                                                  model: Path, tmp_path: Path) -> None:
    singles = [run(source, tmp_path / f"single-{source.name}", chunk_frames=7) for source in episodes]
    template = VideoJob(input=episodes[0], output=tmp_path / "x.mkv", scale=2, model=model, chunk_frames=7)
    done: list[list[Path]] = []
    for shared_storage in (True, False):  # chunks renamed from the work folder, or sent back as bytes
        out = tmp_path / ("shared" if shared_storage else "bytes")
        pool.settings = replace(pool.settings, shared_storage=shared_storage)
        try:
            summary = upscale_videos(template, out, plan_videos(episodes, out, False, "mkv"),
                                     lambda job: upscale_video(job, VideoCallbacks(), pool.engine))
        finally:
            pool.settings = replace(pool.settings, shared_storage=True)
        assert summary.line() == "done 2, skipped 0, failed 0"
        done.append(summary.done)
    for single, shared, sent in zip(singles, *done):
        assert single.verification.ok
        assert digest(shared) == digest(sent) == digest(single.output)
    assert not list(tmp_path.rglob("*.partial-work")), "work folders are removed once published"


def test_a_worker_killed_mid_chunk_loses_only_that_chunk(pool: RayPool, long_clip: Path, model: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    single = run(long_clip, tmp_path / "single.mkv", chunk_frames=10)
    out = tmp_path / "ray.mkv"
    monkeypatch.chdir(long_clip.parent)  # a relative INPUT: the workers, elsewhere, still find it
    job = VideoJob(input=Path(long_clip.name), output=out, scale=2, model=model, chunk_frames=10)
    engines: list = []

    def engine(loaded, job):
        engines.append(pool.engine(loaded, job))
        return engines[-1]

    killed: list[int] = []
    finished = threading.Event()

    def kill_a_worker_in_a_chunk() -> None:
        work = work_folder_path(out)
        while not finished.is_set() and not killed:
            for chunk in work.glob(".worker-*/chunk_*.nut.tmp"):
                pid = int(chunk.parent.name.rsplit("-", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(int(chunk.name[6:11]))
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_worker_in_a_chunk)
    killer.start()
    progress: list[int] = []
    try:
        result = upscale_video(job, VideoCallbacks(on_frames=lambda done, _: progress.append(done)), engine)
    finally:
        finished.set()
        killer.join()
    assert killed, "a worker was killed in the middle of a chunk"
    assert result.verification.ok and result.frames == single.frames == 80
    assert digest(out) == digest(single.output)
    assert progress == list(range(10, 81, 10)), "each chunk is kept once, the killed one after its retry"
    assert not engines[0].sent_source, "the workers read the source where it lies"


def _manifest_chunks(manifest: Path) -> list[dict]:
    try:
        return json.loads(manifest.read_text())["chunks"]
    except (OSError, ValueError, KeyError):
        return []


def test_a_chunk_that_fails_on_a_worker_is_one_line_of_its_own_error_class() -> None:
    from animesr.errors import FFmpegError
    from animesr.video.distributed import ChunkTask, _chunk_failure

    cause = FFmpegError("ffmpeg failed to encode chunk 3 with libx264: Broken pipe")
    wrapped = ray.exceptions.RayTaskError("ChunkWorker.run", "Traceback (most recent call last):\n  ...", cause)
    failure = _chunk_failure(ChunkTask(3, 30, 40, "N*40"), wrapped)
    assert type(failure) is FFmpegError and failure.exit_code == 6
    assert str(failure) == "chunk 3: ffmpeg failed to encode chunk 3 with libx264: Broken pipe"
    crashed = _chunk_failure(ChunkTask(4, 40, 50, "N*40"), ray.exceptions.RayTaskError("f", "tb", ValueError("x\ny")))
    assert str(crashed) == "chunk 4 failed on a Ray worker: ValueError: x"


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    waiting = [pid]
    while waiting:
        for child in _children(waiting.pop()) - found:
            found.add(child)
            waiting.append(child)
    return found


def test_sigterm_stops_a_ray_run_in_one_line_with_exit_143_and_leaves_no_process(long_clip: Path, model: Path,
                                                                                  tmp_path: Path) -> None:
    """Last in the module: it starts a Ray instance of its own, as `--workers ray` does. ray.init
    installs SIGTERM handlers (exit 1, or 15 after a C++ stack dump); the job's own are put back."""
    out = tmp_path / "ray.mkv"
    command = [sys.executable, "-m", "animesr", "upscale-video", str(long_clip), "-o", str(out), "-s", "2",
               "-m", str(model), "--chunk-frames", "10", "--workers", "ray", "--ray-workers", "1"]
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(dies_with_pytest(command), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env, text=True, start_new_session=True)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not work_folder_path(out).exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the folder appears once Ray and its worker are up
        assert driver.poll() is None and work_folder_path(out).exists(), "the run did not get to its frames"
        started = _descendants(driver.pid)
        driver.send_signal(signal.SIGTERM)
        stderr = driver.communicate(timeout=60)[1]
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [line for line in stderr.splitlines() if line.strip() and "━" not in line]
        assert driver.returncode == 143, stderr
        assert lines[-1] == "error: stopped by SIGTERM; the same command resumes the work", stderr
        assert "SIGTERM received" not in stderr and "Traceback" not in stderr, stderr
        survivors = [_command_line(pid)[:120] for pid in started if _alive(pid)]
        assert not survivors, f"outlived the run: {survivors}"
        assert work_folder_path(out).exists() and not out.exists(), "resumable, nothing published"
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        driver.wait(timeout=60)
