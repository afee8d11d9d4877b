"""The errors a user can act on. Each is a C2FError: a one-line message naming what is wrong
(the file and line, the flag, the folder) and, where there is one, a `hint` saying what to do.
The command line catches C2FError once and prints `c2f: error: MESSAGE; HINT` (exit status 2,
or 1 for a fault such as a full disk); anything else is a bug and keeps its traceback.

The subclasses also derive from the built-in error they replace (ValueError, RuntimeError), so
code that caught those still does."""
from __future__ import annotations


class C2FError(Exception):
    exit_status = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def line(self) -> str:
        """The message and its hint, on one line."""
        text = str(self).strip().splitlines()[0] if str(self).strip() else self.__class__.__name__
        return f"{text}; {self.hint}" if self.hint else text


class SettingsError(C2FError, ValueError):
    """A flag, a config file or a preset asks for something that cannot be."""


class MissingLibraryError(SettingsError):
    """A backbone whose defining library (timm, pytorchvideo) is not installed: `extra` names the
    c2f extra that installs it. `c2f report` and `c2f flops` leave such sets out and say so."""

    def __init__(self, message: str, library: str, extra: str):
        super().__init__(message, f"pip install 'c2f[{extra}]'")
        self.library, self.extra = library, extra


class ManifestError(C2FError, ValueError):
    """A manifest that cannot be used; the message lists every problem with its line number."""


class CacheError(C2FError, ValueError):
    """A cache that cannot be used as asked; the message says what to do."""


class WeightsError(C2FError, RuntimeError):
    """Pretrained weights that cannot be loaded or fetched; the message says what file to put where."""


class DeviceError(C2FError, ValueError):
    """A device that is not there (`--device cuda` on a machine without CUDA)."""


class InUseError(C2FError, RuntimeError):
    """A folder another c2f process holds (its lock is taken)."""


class RunError(C2FError, ValueError):
    """A run folder that cannot be used as asked (not a run, an older c2f's, already holding one)."""


class PredictError(C2FError, ValueError):
    """A run that cannot be rebuilt for prediction, or an output folder of another prediction."""


class TrainingError(C2FError, FloatingPointError):
    """Training that cannot go on (the loss became NaN or infinite)."""


class DiskFullError(C2FError, RuntimeError):
    """No room to write: the message says where and how much; nothing half-written was kept."""
    exit_status = 1
