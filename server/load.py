"""Loading the settings: the core's defaults and each enabled surface's, then the TOML
file, the ``EVALDOCK_*`` environment and the command line's flags, in that order.

Apart from :mod:`.config` because the surfaces' defaults come from their declarations
(:mod:`.surface`), which themselves use :mod:`.config`.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import DEFAULTS, ConfigError, Settings, env_overrides, merge_tables, set_dotted
from .surface import all_defaults


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings with the documented precedence: flags > env > TOML > defaults."""
    environ = os.environ if environ is None else environ
    # What the user set, first: it says which surfaces are enabled, and only their
    # declarations are imported for their defaults.
    tree: dict[str, Any] = {}
    path = config_file or environ.get("EVALDOCK_CONFIG")
    if path:
        file = Path(path).expanduser()
        try:
            with file.open("rb") as fh:
                merge_tables(tree, tomllib.load(fh))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    merge_tables(tree, env_overrides(environ))
    for dotted, value in (flags or {}).items():
        if value is not None:
            set_dotted(tree, tuple(dotted.split(".")), value)
    user = tree
    tree = copy.deepcopy(DEFAULTS)
    enabled = Settings(tree=merge_tables(copy.deepcopy(DEFAULTS), user)).surfaces
    merge_tables(tree, all_defaults(enabled))
    merge_tables(tree, user)
    # A plain copy: os.environ does not pickle, and worker processes get the settings.
    settings = Settings(tree=tree, config_file=Path(path) if path else None, environ=dict(environ))
    settings.validate()
    return settings
