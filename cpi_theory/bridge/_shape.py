"""Shape classes of a context-reliance curve, the vocabulary in which toy and real model are compared.

A curve is a *rise-then-fall* (the inversion) when it climbs more than ``tol`` above its start and then ends
more than ``tol`` below its peak; a *dip-then-rise* when it first drops more than ``tol`` below its start
and ends more than ``tol`` above its trough; if both hold, the excursion that comes first names the shape.
Otherwise it is a monotone rise, a monotone fall, or flat (end within ``tol`` of the start).
"""

import numpy as np

SHAPES = ("rise-then-fall", "dip-then-rise", "monotone rise", "monotone fall", "flat")
DEFAULT_TOL = 0.02


def classify_shape(values, tol: float = DEFAULT_TOL) -> str:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"context_reliance: need a 1-D curve of at least 2 points, got shape {v.shape}")
    start, final = v[0], v[-1]
    i_peak, i_trough = int(np.argmax(v)), int(np.argmin(v))
    rise_fall = v[i_peak] - start > tol and v[i_peak] - final > tol
    dip_rise = start - v[i_trough] > tol and final - v[i_trough] > tol
    if rise_fall and dip_rise:
        return SHAPES[0] if i_peak < i_trough else SHAPES[1]
    if rise_fall:
        return SHAPES[0]
    if dip_rise:
        return SHAPES[1]
    if final - start > tol:
        return SHAPES[2]
    if start - final > tol:
        return SHAPES[3]
    return SHAPES[4]


def curve_summary(steps, values, tol: float = DEFAULT_TOL) -> dict:
    """Start, peak (value and step), final value, shape class and whether it is an inversion."""
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    shape = classify_shape(v, tol)
    i_peak = int(np.argmax(v))
    return {
        "start": float(v[0]),
        "peak": float(v[i_peak]),
        "peak_step": float(s[i_peak]),
        "final": float(v[-1]),
        "shape": shape,
        "inversion": shape == SHAPES[0],
    }
