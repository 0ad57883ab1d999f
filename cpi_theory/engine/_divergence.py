"""The one divergence check: which step first made a run non-finite, for one run or a batch.

The loop counts the first step whose training loss is not finite; the final state is recorded without a
step after it, so its record is checked here too, as is any recorded context reliance (a NaN M_C with a
finite loss would otherwise pass unnoticed).
"""

import numpy as np

from .._errors import DivergenceError


def first_bad_step(first_nonfinite_step, step, *recorded) -> np.ndarray:
    """First step at which the run stopped being finite, or -1 (array over leading run axes).

    ``first_nonfinite_step`` is the loop's counter (-1: none); ``step`` the recorded steps; each of
    ``recorded`` an array (..., records) of recorded values (loss, context reliance) that must be finite.
    """
    counted = np.asarray(first_nonfinite_step)
    step = np.asarray(step)
    bad_NxR = np.zeros(counted.shape + step.shape, dtype=bool)
    for values in recorded:
        bad_NxR |= ~np.isfinite(np.asarray(values, dtype=np.float64))
    first_record = np.argmax(bad_NxR, axis=-1)
    from_records = np.where(bad_NxR.any(axis=-1), step[first_record], -1)
    return np.where(counted >= 0, counted, from_records).astype(np.int32)


def raise_if_diverged(bad_step, detail: str = "", *, run_label: str = "run") -> None:
    """Raise :class:`DivergenceError` naming the first bad step (and, in a batch, the first bad run)."""
    bad = np.asarray(bad_step)
    if not np.any(bad >= 0):
        return
    if bad.ndim == 0:
        raise DivergenceError(int(bad), detail)
    index = int(np.flatnonzero(bad.reshape(-1) >= 0)[0])
    raise DivergenceError(
        int(bad.reshape(-1)[index]), f"{run_label} {index} of the batch" + (f"; {detail}" if detail else "")
    )
