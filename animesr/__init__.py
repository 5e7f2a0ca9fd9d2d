"""animesr: sharp anime images and videos with the A2N super-resolution network."""

__version__ = "0.1.0"

from animesr.checkpoint import LoadedModel, load_checkpoint, save_checkpoint  # noqa: E402
from animesr.inference import Upscaler  # noqa: E402
from animesr.model import A2N, A2NConfig  # noqa: E402

__all__ = ["A2N", "A2NConfig", "LoadedModel", "Upscaler", "load_checkpoint", "save_checkpoint", "__version__"]
