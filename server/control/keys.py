"""The control key: who may reset state, read the journal, inject faults.

Written once to ``<data dir>/control.key`` (0600) with 32 random bytes in hex, so a test
harness on the same machine reads it; ``[control] key`` sets it instead, and
``[control] open = true`` lifts the guard altogether (a disposable test box).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..datadir import private_dir, private_file

FILE_NAME = "control.key"


def control_key(data_dir: Path, configured: str) -> str:
    """The key in force: the configured one, else the data directory's (created once)."""
    if configured:
        return configured
    path = data_dir / FILE_NAME
    if path.is_file() and path.stat().st_size:
        return path.read_text(encoding="ascii").strip()
    private_dir(data_dir)
    private_file(path)
    key = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    private_file(tmp)
    tmp.write_text(key + "\n", encoding="ascii")
    os.replace(tmp, path)
    return key


def read_key(data_dir: Path) -> str:
    """For clients (the CLI, the pytest plugin): the key a server wrote there."""
    return (data_dir / FILE_NAME).read_text(encoding="ascii").strip()
