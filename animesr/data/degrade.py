"""Realistic low-resolution images: the damage old anime went through, as pure functions.

`degrade(hr, scale, preset, rng)` turns an RGB uint8 HR image into the LR image a real
source would show: blur, resizing, noise and compression (JPEG, WebP, or a video codec
encoded and decoded in memory with PyAV, 4:2:0 chroma), in a first and an optional second
order, then a final resize to exactly 1/scale and a final compression — the structure of
Real-ESRGAN's second-order degradation, with AnimeSR's and APISR's codec step and waifu2x's
JPEG quality ranges, written here from their published descriptions.

Everything random comes from `rng`, so sample i stays a pure function of (seed, i).
Sizes are in *final LR pixels*: a blur of σ = 0.5 softens the result by half an LR pixel at
any scale, and an intermediate size u means LR size × scale**u (0: the LR, 1: the HR).
"""

from __future__ import annotations

import math
from fractions import Fraction
from dataclasses import dataclass

import cv2
import numpy as np

from animesr.imaging import bicubic_resize

Range = tuple[float, float]


@dataclass(frozen=True)
class Blur:
    prob: float
    sigma: Range  # LR pixels
    anisotropic: float = 0.3  # share of anisotropic Gaussians (rotated ellipses)
    generalised: float = 0.15  # share of generalised Gaussians (shape β in 0.5–4)
    sinc: float = 0.0  # share of sinc kernels (ringing), cut-off π/3 … π


@dataclass(frozen=True)
class Noise:
    prob: float
    gaussian_sigma: Range  # grey levels
    poisson: float = 0.0  # share of Poisson (shot) noise instead of Gaussian
    poisson_scale: Range = (0.05, 1.5)
    grey: float = 0.4  # share of grey (luma-only) noise


@dataclass(frozen=True)
class Codec:
    name: str  # jpeg | webp | h264 | hevc | mpeg2
    weight: float
    quality: Range  # jpeg/webp: quality 1–100; h264/hevc: CRF; mpeg2: qscale 2–31


@dataclass(frozen=True)
class Compression:
    prob: float
    codecs: tuple[Codec, ...]


@dataclass(frozen=True)
class Order:
    """One pass: blur → resize to LR × scale**u → chroma blur → noise → compression."""

    blur: Blur | None = None
    resize_u: Range = (0.0, 0.0)
    chroma_blur: Range | None = None  # horizontal σ of the colour planes, LR pixels (VHS)
    noise: Noise | None = None
    compression: Compression | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    first: Order | None = None
    second: Order | None = None
    second_prob: float = 0.0
    final_sinc: float = 0.0  # probability of a ringing sinc filter at the final size
    final: Compression | None = None
    resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")
    mix: tuple[tuple[Preset, float], ...] = ()  # a mixture: each sample takes one of these presets

    @property
    def is_clean(self) -> bool:
        return self.first is None and self.final is None and not self.mix


CLEAN = Preset("clean", "bicubic down-scaling only (what the clean models learned)")

DVD = Preset(
    "dvd",
    "DVD and TV rips: soft mastering, MPEG-2 blocks and mosquito noise, re-encoded to H.264/HEVC",
    first=Order(
        blur=Blur(0.7, (0.1, 0.8), sinc=0.05),
        resize_u=(-0.1, 0.6),
        noise=Noise(0.3, (1.0, 5.0), poisson=0.3),
        compression=Compression(0.6, (Codec("mpeg2", 1.0, (3, 12)),)),
    ),
    second=Order(
        blur=Blur(0.3, (0.1, 0.4)),
        resize_u=(-0.1, 0.3),
        noise=Noise(0.2, (1.0, 3.0)),
    ),
    second_prob=0.5,
    final_sinc=0.1,
    final=Compression(1.0, (Codec("h264", 0.5, (18, 32)), Codec("mpeg2", 0.3, (3, 14)),
                            Codec("hevc", 0.2, (20, 34)))),
)

WEB = Preset(
    "web",
    "web images and thumbnails: down-scaled, then JPEG or WebP, sometimes twice",
    first=Order(
        blur=Blur(0.5, (0.1, 0.6)),
        resize_u=(0.0, 0.8),
        noise=Noise(0.15, (1.0, 4.0)),
        compression=Compression(0.5, (Codec("jpeg", 1.0, (50, 95)),)),
    ),
    second=Order(resize_u=(-0.1, 0.4), compression=Compression(0.3, (Codec("jpeg", 1.0, (60, 95)),))),
    second_prob=0.4,
    final=Compression(1.0, (Codec("jpeg", 0.7, (30, 90)), Codec("webp", 0.3, (30, 90)))),
)

VHS = Preset(
    "vhs",
    "VHS and analogue captures: horizontal softness, smeared colour, tape noise, then a capture codec",
    first=Order(
        blur=Blur(0.9, (0.3, 1.0), anisotropic=0.6),
        resize_u=(0.0, 0.5),
        chroma_blur=(0.8, 2.5),
        noise=Noise(0.8, (2.0, 10.0), poisson=0.3, grey=0.6),
    ),
    second=Order(blur=Blur(0.3, (0.1, 0.4)), resize_u=(-0.1, 0.2), noise=Noise(0.4, (1.0, 4.0))),
    second_prob=0.4,
    final_sinc=0.1,
    final=Compression(1.0, (Codec("h264", 0.6, (18, 30)), Codec("mpeg2", 0.4, (3, 10)))),
)

REAL = Preset("real", "what users bring: dvd 40 %, web 40 %, vhs 20 % of the samples",
              mix=((DVD, 0.4), (WEB, 0.4), (VHS, 0.2)))

PRESETS: dict[str, Preset] = {p.name: p for p in (CLEAN, DVD, WEB, VHS, REAL)}


def parse_preset(spec: str) -> Preset:
    """A preset by name, or a weighted mix of plain presets such as `dvd:0.6,web:0.3,vhs:0.1`.

    Raises ValueError with a one-line message the CLI shows as it is.
    """
    if spec in PRESETS:
        return PRESETS[spec]
    if ":" not in spec:
        raise ValueError(f"--degrade must be one of {', '.join(PRESETS)} or a mix like dvd:0.6,web:0.4, not {spec!r}")
    parts = []
    for part in spec.split(","):
        name, _, weight = (text.strip() for text in part.partition(":"))
        preset = PRESETS.get(name)
        if preset is None or preset.mix:
            plain = ", ".join(p for p, value in PRESETS.items() if not value.mix)
            raise ValueError(f"--degrade mix: {name!r} is not one of {plain}")
        try:
            share = float(weight)
        except ValueError:
            share = math.nan
        if not 0 < share < math.inf:
            raise ValueError(f"--degrade mix: the weight of {name} must be a positive number, not {weight!r}")
        parts.append((preset, share))
    names = [preset.name for preset, _ in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"--degrade mix: each preset may appear once, not {spec!r}")
    canonical = ",".join(f"{preset.name}:{share:g}" for preset, share in parts)
    described = ", ".join(f"{preset.name} {100 * share / sum(w for _, w in parts):.0f} %" for preset, share in parts)
    return Preset(canonical, f"a mix: {described} of the samples", mix=tuple(parts))


def degrade(hr: np.ndarray, scale: int, preset: Preset, rng: np.random.Generator) -> np.ndarray:
    """H×W×3 uint8 HR (sides multiples of `scale`) -> (H/scale)×(W/scale)×3 uint8 LR."""
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    if preset.mix:
        weights = np.array([weight for _, weight in preset.mix])
        preset = preset.mix[rng.choice(len(weights), p=weights / weights.sum())][0]
    if preset.is_clean:
        return bicubic_resize(hr, width, height)
    image = hr.astype(np.float32)
    if preset.first:
        image = _apply_order(image, preset.first, preset, scale, (height, width), rng)
    if preset.second and rng.random() < preset.second_prob:
        image = _apply_order(image, preset.second, preset, scale, (height, width), rng)
    image = _resize(image, (height, width), preset.resize_modes[rng.integers(len(preset.resize_modes))])
    if rng.random() < preset.final_sinc:
        image = _filter(image, _sinc_kernel(rng.uniform(math.pi / 3, math.pi), int(rng.choice([7, 9, 11, 13]))))
    if preset.final:
        image = _compress(image, preset.final, rng)
    return _to_uint8(image)


def _apply_order(image: np.ndarray, order: Order, preset: Preset, scale: int, lr_size: tuple[int, int],
                 rng: np.random.Generator) -> np.ndarray:
    lr_pixel = image.shape[0] / lr_size[0]  # current pixels per final LR pixel
    if order.blur and rng.random() < order.blur.prob:
        image = _filter(image, _blur_kernel(order.blur, lr_pixel, rng))
    u = rng.uniform(*order.resize_u)
    size = tuple(max(8, round(side * scale**u)) for side in lr_size)
    image = _resize(image, size, preset.resize_modes[rng.integers(len(preset.resize_modes))])
    lr_pixel = image.shape[0] / lr_size[0]
    if order.chroma_blur:
        image = _blur_chroma(image, rng.uniform(*order.chroma_blur) * lr_pixel)
    if order.noise and rng.random() < order.noise.prob:
        image = _add_noise(image, order.noise, rng)
    if order.compression:
        image = _compress(image, order.compression, rng)
    return image


# ---- blur --------------------------------------------------------------------------------------

def _blur_kernel(blur: Blur, lr_pixel: float, rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < blur.sinc:
        return _sinc_kernel(rng.uniform(math.pi / 3, math.pi), int(rng.choice([7, 9, 11, 13, 15])))
    sigma_x = rng.uniform(*blur.sigma) * lr_pixel
    anisotropic = rng.random() < blur.anisotropic
    sigma_y = rng.uniform(*blur.sigma) * lr_pixel if anisotropic else sigma_x
    angle = rng.uniform(0, math.pi) if anisotropic else 0.0
    beta = rng.uniform(0.5, 4.0) if rng.random() < blur.generalised else 1.0
    return gaussian_kernel(sigma_x, sigma_y, angle, beta)


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float, beta: float = 1.0) -> np.ndarray:
    """exp(-½ (xᵀ Σ⁻¹ x)^β), normalised; β = 1 is the Gaussian, β ≠ 1 the generalised one."""
    radius = min(10, max(1, math.ceil(3 * max(sigma_x, sigma_y))))
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    inverse = np.linalg.inv(rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T)
    grid = np.arange(-radius, radius + 1, dtype=np.float64)
    xy = np.stack(np.meshgrid(grid, grid), axis=-1)  # (k, k, 2): x, y
    distance = np.einsum("...i,ij,...j->...", xy, inverse, xy)
    kernel = np.exp(-0.5 * np.power(distance, beta))
    return (kernel / kernel.sum()).astype(np.float32)


def _sinc_kernel(cutoff: float, size: int) -> np.ndarray:
    """A separable low-pass with the sinc's ripples: the ringing of over-sharp analogue filters."""
    t = np.arange(size) - size // 2
    line = np.sinc(cutoff * t / math.pi)
    kernel = np.outer(line, line)
    return (kernel / kernel.sum()).astype(np.float32)


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def _blur_chroma(image: np.ndarray, sigma: float) -> np.ndarray:
    ycrcb = cv2.cvtColor(np.clip(image, 0, 255) / 255.0, cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 1:] = cv2.GaussianBlur(ycrcb[..., 1:], (0, 0), sigmaX=sigma, sigmaY=0.01)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB) * 255.0


# ---- resize and noise ------------------------------------------------------------------------------

_INTERPOLATION = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def _resize(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    growing = height > image.shape[0]
    interpolation = cv2.INTER_LINEAR if growing and mode == "area" else _INTERPOLATION[mode]
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _add_noise(image: np.ndarray, noise: Noise, rng: np.random.Generator) -> np.ndarray:
    grey = rng.random() < noise.grey
    shape = image.shape[:2] + ((1,) if grey else (3,))
    if rng.random() < noise.poisson:
        scale = rng.uniform(*noise.poisson_scale)
        level = np.clip(image.mean(axis=2, keepdims=True) if grey else image, 0, 255) / 255.0
        shot = rng.poisson(level * 255.0).astype(np.float32) / 255.0 - level
        return image + shot * scale * 255.0
    return image + rng.normal(0.0, rng.uniform(*noise.gaussian_sigma), shape).astype(np.float32)


# ---- compression -------------------------------------------------------------------------------------

def _compress(image: np.ndarray, compression: Compression, rng: np.random.Generator) -> np.ndarray:
    if rng.random() >= compression.prob:
        return image
    weights = np.array([c.weight for c in compression.codecs])
    codec = compression.codecs[rng.choice(len(weights), p=weights / weights.sum())]
    quality = int(round(rng.uniform(*codec.quality)))
    pixels = _to_uint8(image)
    if codec.name in ("jpeg", "webp"):
        return still_roundtrip(pixels, codec.name, quality).astype(np.float32)
    return video_roundtrip(pixels, codec.name, quality).astype(np.float32)


def still_roundtrip(pixels: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    flag = cv2.IMWRITE_JPEG_QUALITY if fmt == "jpeg" else cv2.IMWRITE_WEBP_QUALITY
    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".webp", pixels[..., ::-1], [flag, quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {fmt}")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


_VIDEO_CODECS = {"h264": "libx264", "hevc": "libx265", "mpeg2": "mpeg2video"}


def video_roundtrip(pixels: np.ndarray, codec: str, quality: int) -> np.ndarray:
    """One frame through a video encoder and decoder in memory, 4:2:0, as a video player shows it."""
    import av

    height, width = pixels.shape[:2]
    padded = np.pad(pixels, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")  # 4:2:0 needs even sides
    context = av.CodecContext.create(_VIDEO_CODECS[codec], "w")
    context.width, context.height = padded.shape[1], padded.shape[0]
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 25)
    context.thread_count = 1  # deterministic output
    if codec == "h264":
        context.options = {"crf": str(quality), "preset": "veryfast"}
    elif codec == "hevc":
        context.options = {"crf": str(quality), "preset": "veryfast",
                           "x265-params": "log-level=none:pools=none:frame-threads=1"}
    else:
        context.qmin = context.qmax = quality  # a constant quantiser: MPEG-2's quality knob
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24").reformat(format="yuv420p")
    packets = [*context.encode(frame), *context.encode(None)]
    decoder = av.CodecContext.create(codec if codec != "mpeg2" else "mpeg2video", "r")
    decoded = [f for packet in packets for f in decoder.decode(packet)] + list(decoder.decode(None))
    return decoded[-1].to_ndarray(format="rgb24")[:height, :width]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Degradation:
    """What a training or evaluation run degrades with: a preset and the share of clean samples."""

    preset: Preset = CLEAN
    clean_share: float = 0.0  # share of samples left clean (bicubic), so clean input stays sharp

    def __call__(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.clean_share:
            return degrade(hr, scale, CLEAN, rng)
        return degrade(hr, scale, self.preset, rng)
