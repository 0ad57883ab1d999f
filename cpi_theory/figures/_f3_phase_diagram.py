"""F3 Phase diagram: inversion depth (peak minus final M_C) over the C+S fraction of the training set x
delta_M (memorization strength), and over the C+S fraction x delta_C (self-copy strength), with the
finite-horizon boundary (depth = 0.01 at the horizon) and the infinite-horizon boundary of the late-time law
(where M_C's limit switches from full context reliance to the memory limit).
"""

import numpy as np
import xarray as xr

from .._precision import enable_float64
from ..config import Config, ToyParams
from ..paper._analysis import phase_boundary
from ..paper._late_time import infinite_horizon_boundary, late_time_law
from ..simulation import simulate_many
from ._data import write_figure_data
from ._plotting import PALETTE, figure_style, new_figure, save_figure

FIGURE = "F3"
TITLE = "Phase diagram of the inversion depth"
STEM = "f3_phase_diagram"

BASE = Config()  # paper default otherwise; the training set always has N_POINTS = C + C+S points
N_POINTS = 20
BOUNDARY_DEPTH = 0.01  # the phase boundary: where the inversion depth crosses this
FULL = {
    "n_cs": tuple(range(0, N_POINTS + 1)),
    "delta_m": (0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9),
    "delta_c": (0.05, 0.1, 0.15, 0.2, 0.25, 0.29),
    "steps": 400,
    "record_every": 2,
}
QUICK = {
    "n_cs": (0, 5, 10, 15, 20),
    "delta_m": (0.5, 0.6, 0.8),
    "delta_c": (0.1, 0.2, 0.29),
    "steps": 300,
    "record_every": 3,
}


def depth_grid(n_cs_values, key, values, steps, record_every):
    """Inversion depth, peak and final M_C on the grid C+S count x ``key``: one batch of the exact reduced
    engine (W_V frozen, C and C+S points: its 7-coordinate regime), summaries only."""
    base = ToyParams.from_config(BASE)
    runs = [
        base.with_class_sizes(context_critical=N_POINTS - k, non_context_critical=k).replace(**{key: v})
        for k in n_cs_values
        for v in values
    ]
    batch = simulate_many(ToyParams.stack(runs), steps=steps, record_every=record_every, store_every=0)
    batch.raise_if_diverged()
    shape = (len(n_cs_values), len(values))
    summary = batch.summary
    return tuple(summary[name].reshape(shape) for name in ("inversion_depth", "peak", "final"))


def exact_boundary(key, values, steps, quick: bool) -> np.ndarray:
    """C+S fraction where the depth crosses 0.01, per value of ``key``: Brent's method on the exact reduced
    engine with real class sizes (cpi_theory.paper._analysis.phase_boundary). NaN where [0, 1] brackets no
    crossing."""
    del quick  # the reduced engine compiles in about a second: the quick run has the boundary too
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        config = BASE.replace(
            n_context_critical=N_POINTS // 2, n_non_context_critical=N_POINTS // 2, steps=steps, **{key: v}
        )
        try:
            out[i] = phase_boundary(config, axis="cs_fraction", bounds=(0.0, 1.0), threshold=BOUNDARY_DEPTH)
        except ValueError:
            pass
    return out


def late_limits(n_cs_values, key, values):
    """M_C(t -> infinity) on the grid (the late-time law, closed form) and the infinite-horizon boundary per
    value of ``key`` (the C+S fraction where the limit switches from "context" to "memory")."""
    limit = np.asarray(
        [
            [
                late_time_law(
                    BASE.replace(n_context_critical=N_POINTS - k, n_non_context_critical=k, **{key: v})
                ).limit
                for v in values
            ]
            for k in n_cs_values
        ]
    )
    boundary = [
        infinite_horizon_boundary(
            BASE.replace(n_context_critical=N_POINTS // 2, n_non_context_critical=N_POINTS // 2, **{key: v})
        )
        for v in values
    ]
    return limit, np.asarray([np.nan if b is None else b for b in boundary])


def compute(quick: bool) -> xr.Dataset:
    cfg = QUICK if quick else FULL
    fraction = np.asarray(cfg["n_cs"], dtype=np.float64) / N_POINTS
    data = {}
    for key in ("delta_m", "delta_c"):
        depth, peak, final = depth_grid(cfg["n_cs"], key, cfg[key], cfg["steps"], cfg["record_every"])
        dims = ("cs_fraction", key)
        data[f"depth_vs_{key}"] = (dims, depth)
        data[f"peak_vs_{key}"] = (dims, peak)
        data[f"final_vs_{key}"] = (dims, final)
        data[f"boundary_vs_{key}"] = ((key,), exact_boundary(key, cfg[key], cfg["steps"], quick))
        limit, infinite = late_limits(cfg["n_cs"], key, cfg[key])
        data[f"limit_vs_{key}"] = (dims, limit)
        data[f"infinite_boundary_vs_{key}"] = ((key,), infinite)
    return xr.Dataset(
        data,
        coords={
            "cs_fraction": fraction,
            "delta_m": np.asarray(cfg["delta_m"], dtype=np.float64),
            "delta_c": np.asarray(cfg["delta_c"], dtype=np.float64),
        },
        attrs={
            "n_points": N_POINTS,
            "steps": cfg["steps"],
            "description": "inversion depth = max_t M_C - M_C(steps); delta_c=0.2 in the delta_m panel, "
            "delta_m=0.6 in the delta_c panel; lr_kq=1, lr_v=0; limit = M_C(t -> infinity) by the late-time "
            "law (cpi_theory.paper.late_time_law); infinite_boundary = the C+S fraction where that limit "
            "switches from full context reliance to the memory limit",
        },
    )


@figure_style()
def plot(ds: xr.Dataset, path_stem: str):
    fig, axes = new_figure(1, 2, figsize=(11, 4.4))
    vmax = max(float(ds.depth_vs_delta_m.max()), float(ds.depth_vs_delta_c.max()))
    axis_labels = {
        "delta_m": "$\\delta_M$ (memorization strength)",
        "delta_c": "$\\delta_C$ (self-copy strength)",
    }
    overlays = (
        ("boundary_vs_{}", "--", PALETTE[4], f"exact boundary at the horizon: depth = {BOUNDARY_DEPTH} (reduced engine)"),
        ("infinite_boundary_vs_{}", ":", PALETTE[1], "$t \\to \\infty$ boundary (late-time law): $M_C$ tends to 1 on its left, to the memory limit on its right"),
    )  # fmt: skip
    for ax, key in zip(axes, ("delta_m", "delta_c"), strict=True):
        depth = ds[f"depth_vs_{key}"].values
        x, y = ds.cs_fraction.values, ds[key].values
        mesh = ax.pcolormesh(x, y, depth.T, shading="nearest", cmap="viridis", vmin=0.0, vmax=vmax)
        levels = [0.01, 0.1, 0.2, 0.3]
        if len(x) > 1 and len(y) > 1:
            cs = ax.contour(x, y, depth.T, levels=levels, colors="w", linewidths=0.8)
            ax.clabel(cs, fmt="%.2f", fontsize=7)
        for name, style, color, overlay_label in overlays:
            boundary = ds[name.format(key)].values
            if np.isfinite(boundary).any():
                marker = "D" if style == "--" else None
                ax.plot(boundary, y, style, color=color, marker=marker, ms=4, lw=1.8, label=overlay_label)
        ax.set(xlabel="C+S fraction of the training points", ylabel=axis_labels[key])
        other = "$\\delta_C$ = 0.2" if key == "delta_m" else "$\\delta_M$ = 0.6"
        ax.set_title(f"inversion depth (peak - final $M_C$ over {ds.attrs['steps']} steps), {other}")
        ax.grid(False)
    fig.colorbar(mesh, ax=axes, label="inversion depth (peak - final $M_C$)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # one legend for both panels, below them: the upper corners hold data
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    save_figure(fig, path_stem)
    return fig


def run(outdir: str, quick: bool) -> dict:
    enable_float64()
    ds, files = write_figure_data(compute(quick), outdir, STEM, plot)
    frac = ds.cs_fraction.values
    depth_m = ds.depth_vs_delta_m.values
    low, high = frac <= 0.25, frac >= 0.5
    i_max, j_max = np.unravel_index(int(depth_m.argmax()), depth_m.shape)
    half = int(np.argmin(np.abs(frac - 0.5)))
    boundary = ds.boundary_vs_delta_m.values
    # Brute-force crossing per delta_M: linear interpolation of depth - 0.01 between grid fractions.
    crossings = np.full(boundary.shape, np.nan)
    for j in range(depth_m.shape[1]):
        above = np.flatnonzero(depth_m[:, j] > BOUNDARY_DEPTH)
        if above.size and above[0] > 0:
            i = above[0]
            d0, d1 = depth_m[i - 1, j] - BOUNDARY_DEPTH, depth_m[i, j] - BOUNDARY_DEPTH
            crossings[j] = frac[i - 1] + (frac[i] - frac[i - 1]) * d0 / (d0 - d1)
    both = np.isfinite(boundary) & np.isfinite(crossings)
    boundary_gap = float(np.max(np.abs(boundary[both] - crossings[both]))) if both.any() else float("nan")
    numbers = {
        "mean depth, C+S fraction <= 0.25 (delta_M panel)": float(depth_m[low].mean()),
        "mean depth, C+S fraction >= 0.5 (delta_M panel)": float(depth_m[high].mean()),
        "max depth (delta_M panel)": float(depth_m.max()),
        "... at C+S fraction": float(frac[i_max]),
        "... at delta_M": float(ds.delta_m.values[j_max]),
        "depth at C+S fraction 0 (all delta_M)": float(depth_m[0].max()),
        "depth at C+S fraction 1, delta_M range": f"{depth_m[-1].min():.3f} .. {depth_m[-1].max():.3f}",
        "depth at C+S fraction 0.5, smallest delta_C": float(ds.depth_vs_delta_c.values[half, 0]),
        "depth at C+S fraction 0.5, largest delta_C": float(ds.depth_vs_delta_c.values[half, -1]),
    }
    if both.any():
        for v, b, c in zip(ds.delta_m.values[both], boundary[both], crossings[both], strict=True):
            numbers[f"boundary at delta_M={v:g}: exact / brute-force grid"] = f"{b:.3f} / {c:.3f}"
    limit_m = ds.limit_vs_delta_m.values
    infinite = ds.infinite_boundary_vs_delta_m.values
    numbers["infinite-horizon boundary, C+S fraction (every delta_M)"] = (
        f"{np.nanmin(infinite):.3f} .. {np.nanmax(infinite):.3f}"
    )
    default = int(np.argmin(np.abs(ds.delta_m.values - 0.6)))
    for i in np.flatnonzero(np.abs(frac - 0.5) <= 0.1 + 1e-12):
        numbers[f"M_C(t -> infinity) at C+S fraction {frac[i]:.2f}, delta_M = 0.6"] = float(
            limit_m[i, default]
        )
    transient = (
        (frac > np.nanmax(boundary)) & (frac < np.nanmin(infinite)) if np.isfinite(boundary).any() else []
    )
    notes = [
        f"The depth is not monotone in the C+S fraction: it is largest at fraction {frac[i_max]:.2f} "
        f"({depth_m.max():.3f}), where enough C points drive a high peak and enough C+S points drive the fall; "
        f"with only C+S points the depth is {depth_m[-1].min():.3f}..{depth_m[-1].max():.3f} over delta_M.",
        (
            "The dashed line is the exact phase boundary (depth = 0.01) found by root-finding on the reduced engine "
            "with real class sizes (cpi_theory.paper._analysis.phase_boundary); it should follow the brute-force 0.01 "
            f"contour. Largest gap to the brute-force grid's crossing: {boundary_gap:.3f} in C+S fraction."
            if np.isfinite(boundary_gap)
            else "No exact phase boundary overlaid ([0, 1] brackets no crossing); the contours are brute-force "
            "depth levels of the exact reduced engine."
        ),
        "Depth is measured at a finite horizon (the step count in the title): where M_C is still falling at the "
        "last step, the depth is a lower bound.",
        "The dotted line is the infinite-horizon boundary of the late-time law (cpi_theory.paper.late_time_law): "
        "to its left M_C ends at full context reliance (the fall seen at the horizon is transient, M_C returns "
        "like t^-|g|), to its right at the memory limit, below the start; on it, at an interior plateau. It sits "
        f"at C+S fraction {np.nanmin(infinite):.2f} for every delta_M and delta_C: only the class counts decide "
        "the limit."
        + (
            f" Between the two boundaries (C+S fraction {frac[transient].min():.2f} to "
            f"{frac[transient].max():.2f} on this grid) the inversion at the horizon is transient."
            if np.any(transient)
            else ""
        ),
    ]
    return {"files": files, "numbers": numbers, "notes": notes}
