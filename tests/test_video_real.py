"""upscale-video on a real anime clip from ../shared/data/video (skipped where ../shared is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from animesr.checkpoint import save_checkpoint
from animesr.config import EncodeSettings, VideoJob
from animesr.errors import FFmpegError
from animesr.model import A2N, A2NConfig
from animesr.video.ffmpeg import ffmpeg_exe
from animesr.video.pipeline import upscale_video
from animesr.video.probe import probe

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CLIP = SHARED / "data" / "video" / "w2xex_2_anime_360p.mp4"


@pytest.fixture(scope="module")
def clip() -> Path:
    if not CLIP.is_file():
        pytest.skip(f"needs {CLIP} (the read-only ../shared folder beside the checkout), which is absent")
    try:
        ffmpeg_exe()
    except FFmpegError as error:
        pytest.skip(f"no ffmpeg: {error}")
    return CLIP


def test_real_anime_clip_second_keeps_audio_timing_and_reuses_held_frames(clip: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, A2N(A2NConfig(scale=2, channels=8, up_channels=8, blocks=1)), value_range=1.0)
    out = tmp_path / "anime.mp4"
    job = VideoJob(input=clip, output=out, scale=2, model=model, duration=1.0, chunk_frames=12,
                   encode=EncodeSettings(preset="ultrafast"))
    result = upscale_video(job)
    info = probe(out)
    assert result.verification.ok, result.verification.lines()
    assert result.frames == 24 and (info.width, info.height) == (1280, 720)
    assert [s.kind for s in info.streams] == ["video", "audio"]
    assert info.frame_rate == 24
    assert 0 < result.reused < result.frames
