"""One-line errors of the IGM kernel.

Every error a user can cause (a bad key, an unknown plugin, a broken plugin
package, a missing file) is an :class:`IgmError` whose message is one line
naming the file, key or plugin and what was expected. ``igm_run`` prints that
line and exits non-zero; the traceback is shown only at debug logging level.
"""

from __future__ import annotations


class IgmError(Exception):
    """Base class: a user-facing error with a one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(IgmError):
    """A configuration key, value or file is wrong."""


class PluginError(IgmError):
    """A plugin is unknown, fails to import, clashes or breaks the contract."""


class FieldError(IgmError, AttributeError):
    """A State field is read before any plugin provides it."""


class DataError(IgmError):
    """An input file or a data download is missing or unusable."""


class PluginRuntimeError(IgmError):
    """A plugin raised while the model was running."""


class RunInterrupted(IgmError):
    """A signal stopped the run after the current step; ``checkpoint`` is the
    checkpoint it wrote, ``signum`` the signal."""

    def __init__(self, message: str, signum: int, checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.signum = signum
        self.checkpoint = checkpoint

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.signum, self.checkpoint))
