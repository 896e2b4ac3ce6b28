"""IGM core: the plugin kernel of the glacier evolution model.

Plugin authors need only::

    from igm_core import hookimpl, Field, Choice

Importing this package does not import TensorFlow or Hydra.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from igm_core.config import Choice
from igm_core.context import PluginInfo, RunContext
from igm_core.errors import IgmError
from igm_core.plugins import hookimpl
from igm_core.state import Field, Grid, State

try:
    __version__ = version("igm-core")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = ["Choice", "Field", "Grid", "IgmError", "PluginInfo", "RunContext", "State",
           "__version__", "hookimpl"]
