from animesr.inference.tiling import tiled_forward, tile_windows
from animesr.inference.upscaler import Upscaler

__all__ = ["Upscaler", "tiled_forward", "tile_windows"]
