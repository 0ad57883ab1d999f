"""Reading an external context-reliance trajectory (any model's finetuning run) from CSV or JSON.

CSV: a header row naming ``step`` and ``context_reliance`` columns (other columns ignored). JSON: an object
with ``step`` and ``context_reliance`` lists, or such an object under ``real`` (a bridge report), or a list
of ``{"step": .., "context_reliance": ..}`` records.

The rules (a :class:`ConfigError` naming the column otherwise, "record N" counting data rows from 1): at
least 3 records, every value finite, ``step`` >= 0 (optimizer steps counted from the start of finetuning)
and strictly increasing (the fit interpolates along it), ``context_reliance`` in [0, 1].
"""

import csv
import json
from pathlib import Path

import numpy as np

from .._errors import ConfigError


def _validate(path: Path, steps, values) -> tuple[np.ndarray, np.ndarray]:
    try:
        s = np.asarray(steps, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            "trajectory", f"{path}: step and context_reliance must be numbers ({err})"
        ) from None
    if s.ndim != 1 or s.shape != v.shape or s.size < 3:
        raise ConfigError("trajectory", f"{path}: need step and context_reliance of equal length >= 3")
    for column, x in (("step", s), ("context_reliance", v)):
        if (bad := np.flatnonzero(~np.isfinite(x))).size:
            raise ConfigError(column, f"{path}: must be finite, got {x[bad[0]]} at record {bad[0] + 1}")
    if (bad := np.flatnonzero(s < 0)).size:
        raise ConfigError("step", f"{path}: must be >= 0, got {s[bad[0]]:g} at record {bad[0] + 1}")
    if (bad := np.flatnonzero(np.diff(s) <= 0)).size:
        i = bad[0] + 1
        raise ConfigError(
            "step", f"{path}: must be strictly increasing, got {s[i]:g} after {s[i - 1]:g} at record {i + 1}"
        )
    if (bad := np.flatnonzero((v < 0) | (v > 1))).size:
        raise ConfigError(
            "context_reliance", f"{path}: must lie in [0, 1], got {v[bad[0]]:g} at record {bad[0] + 1}"
        )
    return s, v


def load_trajectory(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(step, context_reliance) as float64 arrays, validated."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "step" not in rows[0] or "context_reliance" not in rows[0]:
            raise ConfigError("trajectory", f"{path}: CSV needs a header with step and context_reliance")
        return _validate(path, [r["step"] for r in rows], [r["context_reliance"] for r in rows])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError("trajectory", f"{path}: neither .csv nor valid JSON ({err.msg})") from None
    if isinstance(data, list):
        try:
            return _validate(path, [r["step"] for r in data], [r["context_reliance"] for r in data])
        except (KeyError, TypeError):
            raise ConfigError("trajectory", f"{path}: records need step and context_reliance") from None
    if isinstance(data, dict) and "step" not in data and isinstance(data.get("real"), dict):
        data = data["real"]
    if not isinstance(data, dict) or "step" not in data or "context_reliance" not in data:
        raise ConfigError("trajectory", f"{path}: JSON needs step and context_reliance")
    return _validate(path, data["step"], data["context_reliance"])
