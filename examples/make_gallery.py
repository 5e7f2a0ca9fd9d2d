"""Make the README's side-by-side crops (nearest | bicubic | each model) from examples/inputs.

    python examples/make_gallery.py [--scale 4] [--model clean --model real] [--denoise-strip]
                                    [--out examples/gallery]

With --denoise-strip, one more picture per crop: --denoise 0, 0.25, 0.5, 0.75 and 1 side by side.

Each picture is a crop of a real input, upscaled three ways, so what you see is what the
tool does to low-resolution art (no ground truth is involved). The Popeye frame is decoded
from the DVD-style clip with the same ffmpeg animesr uses.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from animesr.config import InferenceSettings
from animesr.imaging import bicubic_resize, read_image, write_image
from animesr.inference.upscaler import Upscaler
from animesr.pretrained import model_choice, resolve_model
from animesr.video.ffmpeg import ffmpeg_exe

HERE = Path(__file__).parent
INPUTS = HERE / "inputs"


@dataclass(frozen=True)
class Crop:
    name: str
    source: str
    top: int
    left: int
    size: int
    prescale: int = 1  # shrink first (for inputs that are already high resolution)


CROPS = (
    Crop("wikipetan", "wikipetan_manga_page1.jpg", 40, 300, 96),
    Crop("peppercarrot", "peppercarrot_ep02_p3.jpg", 160, 120, 96, prescale=4),
    Crop("lucy", "renpy_lucy_happy.png", 60, 60, 96, prescale=2),
    Crop("popeye", "popeye_frame.png", 10, 250, 200),
)


def popeye_frame(folder: Path) -> Path:
    """One decoded frame (t = 3 s) of the Popeye DVD clip, as PNG."""
    out = folder / "popeye_frame.png"
    if not out.exists():
        command = [ffmpeg_exe(), "-v", "error", "-ss", "3", "-i", str(INPUTS / "popeye1936_sinbad_dvd.mkv"),
                   "-frames:v", "1", "-y", str(out)]
        subprocess.run(command, check=True)
    return out


def label(image: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(image[..., :3]).copy()
    cv2.rectangle(out, (0, 0), (8 + 11 * len(text), 26), (0, 0, 0), -1)
    cv2.putText(out, text, (5, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Gray spread to three channels and alpha flattened on white, for side-by-side display."""
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] != 4:
        return image
    alpha = image[..., 3:].astype(np.float32) / 255.0
    return (image[..., :3] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)


def side_by_side(crop: np.ndarray, upscalers: dict[str, Upscaler], scale: int, references: bool = True) -> np.ndarray:
    h, w = crop.shape[:2]
    panels = []
    if references:
        panels += [label(cv2.resize(crop, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST), "nearest"),
                   label(bicubic_resize(crop, w * scale, h * scale), "bicubic")]
    panels += [label(upscaler.upscale(crop), name) for name, upscaler in upscalers.items()]
    gap = np.full((h * scale, 6, 3), 255, np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--model", action="append", help="clean, real or a file; repeat for more panels")
    parser.add_argument("--denoise-strip", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "gallery")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.model or ["clean"]
    upscalers = {f"{name} x{args.scale}": Upscaler(resolve_model(model_choice(name), args.scale), InferenceSettings())
                 for name in names}
    strip = {f"denoise {d:g}": Upscaler(resolve_model(None, args.scale, d), InferenceSettings())
             for d in (0, 0.25, 0.5, 0.75, 1)} if args.denoise_strip else {}
    popeye_frame(args.out)
    for c in CROPS:
        folder = args.out if c.source == "popeye_frame.png" else INPUTS
        image = to_rgb(read_image(folder / c.source))
        if c.prescale > 1:
            h, w = image.shape[:2]
            image = bicubic_resize(image, w // c.prescale, h // c.prescale)
        crop = np.ascontiguousarray(image[c.top: c.top + c.size, c.left: c.left + c.size])
        write_image(args.out / f"{c.name}_x{args.scale}.png", side_by_side(crop, upscalers, args.scale))
        print(f"wrote {args.out / f'{c.name}_x{args.scale}.png'}")
        if strip:
            write_image(args.out / f"{c.name}_x{args.scale}_denoise.png",
                        side_by_side(crop, strip, args.scale, references=False))
    (args.out / "popeye_frame.png").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
