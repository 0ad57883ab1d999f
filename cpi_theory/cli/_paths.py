"""Output paths checked before any work: a run of minutes must not end on a path it cannot write.

Each check raises :class:`cpi_theory.ConfigError` naming the flag and the rule (exit code 2).
"""

import os
import pathlib

from .._errors import ConfigError


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_file(flag: str, path: str, *, suffixes: tuple[str, ...] | None = None) -> pathlib.Path:
    """A file to (over)write: not a directory, its folder exists and is writable, its suffix one of
    ``suffixes`` (lower case, e.g. ``(".png", ".pdf")``) when given."""
    target = pathlib.Path(path)
    if not path or target.name in ("", ".", ".."):
        raise ConfigError(flag, f"must name a file, got {path!r}")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise ConfigError(
            flag, f"must end in {', '.join(suffixes)} (the format follows the name), got {path!r}"
        )
    if target.is_dir():
        raise ConfigError(flag, f"{path} is a directory; give a file name")
    folder = target.absolute().parent
    if not folder.is_dir():
        raise ConfigError(flag, f"the folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(flag, f"the folder {folder} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(flag, f"{path} exists and is not writable")
    return target


def check_output_dir(flag: str, path: str) -> pathlib.Path:
    """A directory to write into: an existing directory, or a new one whose nearest existing ancestor is a
    writable directory (it is created with its parents); never an existing file."""
    target = pathlib.Path(path)
    if not path:
        raise ConfigError(flag, "must name a directory, got ''")
    if target.exists() and not target.is_dir():
        raise ConfigError(flag, f"{path} exists and is not a directory; give a directory")
    base = _nearest_existing(target)
    if not base.is_dir():
        raise ConfigError(flag, f"cannot create {path}: {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(flag, f"{base} is not writable")
    return target


def check_input_file(flag: str, path: str) -> pathlib.Path:
    """A file to read: it exists, is a file and is readable."""
    target = pathlib.Path(path)
    if not target.exists():
        raise ConfigError(flag, f"file not found: {path}")
    if not target.is_file():
        raise ConfigError(flag, f"{path} is not a file")
    if not os.access(target, os.R_OK):
        raise ConfigError(flag, f"{path} is not readable")
    return target


def check_input_dir(flag: str, path: str) -> pathlib.Path:
    target = pathlib.Path(path)
    if not target.is_dir():
        raise ConfigError(flag, f"no such directory: {path}")
    return target
