"""The fault drill: kill a sweep at a named point, to prove that a resumed sweep equals an uninterrupted one.

``CPI_THEORY_FAULT_DRILL="point:n"`` makes the n-th arrival (counting from 1) of this process at ``point``
end it with SIGKILL, as a crash or an out-of-memory kill would: no cleanup runs. The points are
``trace`` (while a chunk program is traced, before XLA compiles it), ``chunk`` (between chunks, before one
is launched), ``write`` (while a chunk file is written: its temporary file holds half of it) and ``final``
(the same for the final file). Unset, every point costs one dictionary lookup. Used by
``tests/test_fault_drill.py``.
"""

import os
import pathlib
import signal

FAULT_DRILL_ENV = "CPI_THEORY_FAULT_DRILL"
POINTS = ("trace", "chunk", "write", "final")
_ARRIVALS: dict[str, int] = {}


def fault_point(point: str, partial_file: pathlib.Path | None = None) -> None:
    """Arrive at ``point``; with the drill aimed at this arrival, cut ``partial_file`` to half and die."""
    setting = os.environ.get(FAULT_DRILL_ENV)
    if not setting:
        return
    target, _, count = setting.partition(":")
    if target != point:
        return
    _ARRIVALS[point] = _ARRIVALS.get(point, 0) + 1
    if _ARRIVALS[point] != int(count or 1):
        return
    if partial_file is not None and partial_file.exists():
        size = partial_file.stat().st_size
        with open(partial_file, "r+b") as f:
            f.truncate(size // 2)
    os.kill(os.getpid(), signal.SIGKILL)
