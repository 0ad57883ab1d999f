"""Files that are whole or absent: write to a temporary name beside the target, then rename it."""

import os
import pathlib
from collections.abc import Callable


def replace_atomically(path, write: Callable[[pathlib.Path], None], temporary: pathlib.Path) -> None:
    """``write(temporary)``, then rename ``temporary`` to ``path`` (atomic on one file system): an
    interrupted write (Ctrl-C, a kill, an error) leaves ``path`` as it was and removes ``temporary``
    (a SIGKILL leaves ``temporary``, which the caller's naming lets it find and remove)."""
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
