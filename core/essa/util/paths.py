"""Where essa keeps its files by default."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The directory for essa's persistent data.

    ``$ESSA_HOME`` if set, else ``$XDG_DATA_HOME/essa``, else
    ``~/.local/share/essa``. The directory is not created here.
    """
    if home := os.environ.get("ESSA_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(xdg).expanduser() / "essa"
