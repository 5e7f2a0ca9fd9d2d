"""One exception hierarchy. The CLI turns each into a one-line message and an exit code."""


class AnimeSRError(Exception):
    """Base of every error animesr reports to a user."""

    exit_code = 1


class InputError(AnimeSRError):
    """A missing, unreadable or unsupported input file or option."""

    exit_code = 2


class ImageTooLargeError(InputError):
    """An image with more pixels than the limit, found from its header before decoding."""


class UsageError(InputError):
    """An option whose value cannot work (out of range, unknown name, inconsistent with another):
    exit 2, the same as an option Typer itself rejects, in every command."""


class OutputError(AnimeSRError):
    """An output that cannot be written, or exists and may not be overwritten."""

    exit_code = 3


def output_replaces_input(source: object, advice: str = "use another -o") -> OutputError:
    """The one error, and wording, of every command whose output would be written over its input."""
    return OutputError(f"{source}: the output would replace the input; {advice}")


class CheckpointError(AnimeSRError):
    """A model file that is missing, not a checkpoint, of another architecture or scale."""

    exit_code = 4


class DatasetError(AnimeSRError):
    """An HDF5 dataset that is not ours, of another version, or lacks a scale."""

    exit_code = 5


class FFmpegError(AnimeSRError):
    """ffmpeg or ffprobe failed; the message carries the last lines of its stderr."""

    exit_code = 6


class FFmpegKilled(FFmpegError):
    """ffmpeg died of a signal (a crash, the out-of-memory killer, a kill from outside): not a fault of the input."""


class DeviceError(AnimeSRError):
    """The requested device does not exist, or a tile did not fit even at the smallest size."""

    exit_code = 7


class TrainingError(AnimeSRError):
    """A run directory without state to resume or with a damaged one, or a run that cannot go on."""

    exit_code = 8


class VerificationError(AnimeSRError):
    """A finished output that does not match its source: it is kept aside, never published."""

    exit_code = 1


class ModelOutputError(AnimeSRError):
    """The network gave NaN or infinite values (weights that overflow): nothing is written."""

    exit_code = 9



class StoppedByModel(ModelOutputError):
    """A folder job the model's output stopped; `summary` is what the job got through before."""

    def __init__(self, message: str, summary: object) -> None:
        super().__init__(message)
        self.summary = summary

class TrainingInterrupted(AnimeSRError):
    """Ctrl-C, SIGTERM or SIGHUP during training: the state was saved and the run can be resumed.
    The exit code is 128 + the signal, as if it had ended the process (130 for Ctrl-C)."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code
