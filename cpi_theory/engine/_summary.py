"""The one summary of a context-reliance curve: start, peak, peak step, final, depth and shape class.

Used for a simulated trajectory, a batch of curves (figures, sweeps: any leading axes) and a measured curve
of a real model (the bridge). A curve is a *rise-then-fall* (the inversion) when it climbs more than
``tol`` above its start and then ends more than ``tol`` below its peak; a *dip-then-rise* when it first
drops more than ``tol`` below its start and ends more than ``tol`` above its trough; if both hold, the
excursion that comes first names the shape. Otherwise it is a monotone rise, a monotone fall, or flat
(end within ``tol`` of the start).
"""

import dataclasses

import numpy as np

SHAPES = ("rise-then-fall", "dip-then-rise", "monotone rise", "monotone fall", "flat")
DEFAULT_TOL = 0.02


@dataclasses.dataclass(frozen=True)
class Summary:
    """Summary of a curve (or of a batch of curves: then each field is an array over the leading axes).

    ``peak_step`` and ``final_step`` are in the units of the step axis given (GD steps for the toy; real
    optimizer steps or rescaled time for the bridge). ``depth = peak - final`` (>= 0): how far the curve
    falls back after its maximum.
    """

    start: float | np.ndarray
    peak: float | np.ndarray
    peak_step: int | float | np.ndarray
    final: float | np.ndarray
    final_step: int | float | np.ndarray
    depth: float | np.ndarray
    shape: str | np.ndarray

    @property
    def inversion(self) -> bool | np.ndarray:
        """Whether the curve rises then falls (the shape class ``rise-then-fall``)."""
        return np.asarray(self.shape) == SHAPES[0] if np.ndim(self.shape) else self.shape == SHAPES[0]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def classify_shapes(values, tol: float = DEFAULT_TOL) -> np.ndarray:
    """Shape class (one of :data:`SHAPES`) of each curve along the last axis of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim < 1 or v.shape[-1] < 2:
        raise ValueError(f"context_reliance: need curves of at least 2 points, got shape {v.shape}")
    start, final = v[..., 0], v[..., -1]
    i_peak, i_trough = np.argmax(v, axis=-1), np.argmin(v, axis=-1)
    peak, trough = v.max(axis=-1), v.min(axis=-1)
    rise_fall = (peak - start > tol) & (peak - final > tol)
    dip_rise = (start - trough > tol) & (final - trough > tol)
    first_is_peak = i_peak < i_trough
    return np.select(
        [
            rise_fall & dip_rise & first_is_peak,
            rise_fall & dip_rise,
            rise_fall,
            dip_rise,
            final - start > tol,
            start - final > tol,
        ],
        [SHAPES[0], SHAPES[1], SHAPES[0], SHAPES[1], SHAPES[2], SHAPES[3]],
        default=SHAPES[4],
    )


def classify_shape(values, tol: float = DEFAULT_TOL) -> str:
    """Shape class of one curve (a 1-D array)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"context_reliance: need a 1-D curve of at least 2 points, got shape {v.shape}")
    return str(classify_shapes(v, tol))


def summarize(step, values, tol: float = DEFAULT_TOL) -> Summary:
    """:class:`Summary` of the curve(s) ``values`` (last axis = recorded steps ``step``).

    For a 1-D curve the fields are Python scalars (``peak_step`` keeps the type of the step values); for
    a batch they are arrays over the leading axes. The first maximum names the peak.
    """
    step = np.asarray(step)
    v = np.asarray(values, dtype=np.float64)
    if step.ndim != 1 or v.shape[-1:] != step.shape:
        raise ValueError(f"step: need one step per recorded value, got {step.shape} for values {v.shape}")
    i_peak = np.argmax(v, axis=-1)
    peak = np.take_along_axis(v, i_peak[..., None], axis=-1)[..., 0]
    fields = dict(
        start=v[..., 0],
        peak=peak,
        peak_step=step[i_peak],
        final=v[..., -1],
        final_step=np.broadcast_to(step[-1], peak.shape),
        depth=peak - v[..., -1],
        shape=classify_shapes(v, tol),
    )
    if v.ndim == 1:
        fields = {k: x.item() if k != "shape" else str(x) for k, x in fields.items()}
    return Summary(**fields)
