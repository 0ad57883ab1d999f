"""F7 Mixtures designed by gradient: the finetuning mixture (class weights, and the rate of W_V) that
maximizes context reliance M_C(T) at a horizon T subject to keeping the held-out memorized fact
(closed-book recall p(a* | [s*, r]) at T at least a given fraction of its pretrained value), optimized by
gradients through the exact reduced trajectory; static mixtures, curricula, and the hand mitigations of F4
on the same axes.

Admissible set: the C+S points are the data one has (10 of the 20 points of the paper default, kept
as they are); the other 10 points are split between C points, counterfactual augmented points and S
points (real class sizes, softmax weights), and lr_v / lr_kq is in [0, 1] (SLSQP's box bounds; QK-only is
lr_v = 0 exactly). A curriculum gives each of ``K`` equal phases its own weights and rate. Hand mitigations that leave this set (removing C+S points, adding points beyond 20) are placed on the
axes too and compared honestly in the notes.

How it is differentiated: one phase (``T / K`` steps of :func:`cpi_theory.reduced.minimal_train` in the
covering regime ``GENERAL``, started from any state) is compiled once together with its forward-mode
derivative along the run's ``4 K`` parameter directions (the state's tangents carried in from the previous
phase); chaining the phases is the chain rule, so the static mixture (``K`` phases with tied parameters:
its gradient is the sum over phases) and every curriculum share one compiled program. A memory bound
above 1 is possible: training W_V raises the held-out fact's recall in this model (docs/designed_mixtures.md).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy.optimize import minimize

from .._precision import enable_float64
from ..config import DataClass, ToyParams
from ..config._config import Config
from ..reduced._engine import reduced_params
from ..reduced._minimal import GENERAL, initial_state, minimal_metrics, minimal_train
from ._data import write_figure_data
from ._plotting import PALETTE, figure_style, new_figure, save_figure

FIGURE = "F7"
TITLE = "Mixtures designed by gradient: M_C(T) vs memory retention, against the hand mitigations"
STEM = "f7_designed_mixtures"

BASE = Config()  # paper default: K_A = 50, K_S = 40, delta_C = 0.2, delta_M = 0.6, lr_kq = 1
N_CS = 10.0  # the C+S points one has: kept
N_FREE = 10.0  # the other points: split between C, augmented and S points
FREE_CLASSES = (DataClass.CONTEXT_CRITICAL, DataClass.COUNTERFACTUAL_AUGMENTED, DataClass.SUBJECT_ONLY)
N_THETA = 4  # per phase: three weight logits and lr_v / lr_kq
# Bounds on the logits: softmax weights down to ~e^-12 of a class, lr_v / lr_kq from ~6e-6 to ~1.
THETA_BOUND = 12.0
# lr_v / lr_kq is a parameter itself, boxed in [0, 1] (both ends reachable: QK-only and W_V at lr_kq).
LR_V_BOUNDS = (0.0, 1.0)
# Fast XLA options (fusion off, backend optimisation level 0): the Jacobian program of the 166-coordinate
# regime compiles in tens of seconds instead of minutes; the numbers are the same (tests/test_minimal_gradients.py).
FAST_COMPILE = {"xla_disable_hlo_passes": "fusion", "xla_backend_optimization_level": 0}
# Retention bounds (memory_recall(T) / memory_recall(0) >= bound) of the Pareto front with lr_v free; 0 is
# no constraint. Training W_V *raises* the held-out fact's closed-book recall here (retention > 1), so
# the bounds that bind are above 1. The retention of every admissible hand mitigation with W_V trained is
# added as a bound, so that each is compared with the optimum at exactly its retention. QK-only (lr_v = 0)
# is optimized separately.
FULL = {"steps": 300, "phases": 3, "bounds": (0.0, 1.06, 1.1, 1.14), "maxiter": 40, "starts": 2}
QUICK = {"steps": 120, "phases": 3, "bounds": (0.0,), "maxiter": 12, "starts": 2}
# `cpi-theory reproduce --check`: what the optimizer returns agrees across machines to its convergence, not
# to rounding (a 1e-12 change of its starts moves the static designs by 4e-9, M_C by 1.5e-10; the issue that
# added the check saw 4e-9 between two machines); the hand mitigations and the bounds are exact runs.
OPTIMIZER_TOLERANCE = 1e-6
CHECK_TOLERANCES = {
    f"{prefix}{kind}_{what}": OPTIMIZER_TOLERANCE
    for prefix in ("", "qk_")
    for kind in ("static", "curriculum")
    for what in ("mc", "retention", "design")
}
# Hand mitigations (F4's knobs and doses; lr_v / lr_kq in {0, 0.1, 0.3, 1}): (family, label, overrides).
HAND = [
    *[
        ("filtering", f"{k} of 10 C+S removed", {"n_non_context_critical": 10 - k})
        for k in (0, 2, 4, 6, 8, 10)
    ],
    *[("augmentation", f"+{k} augmented", {"n_counterfactual_augmented": k}) for k in (2, 4, 6, 8, 10)],
    *[
        (
            "augmentation (20 points)",
            f"{k} C -> augmented",
            {"n_context_critical": 10 - k, "n_counterfactual_augmented": k},
        )
        for k in (2, 5, 10)
    ],
    *[("value_training", f"lr_v / lr_kq = {r:g}", {"lr_v": r}) for r in (0.1, 0.3, 1.0)],
    *[("subject_only", f"+{k} S", {"n_subject_only": k}) for k in (3, 6, 10, 15)],
]


def _admissible(overrides: dict) -> bool:
    """In the designed set: the 10 C+S points kept and 20 points in all (any lr_v / lr_kq in [0, 1])."""
    cfg = BASE.replace(**overrides)
    counts = cfg.class_counts()
    return counts[1] == N_CS and sum(counts) == N_CS + N_FREE


def _base_params() -> ToyParams:
    return reduced_params(BASE).with_class_sizes(non_context_critical=jnp.asarray(N_CS, dtype=jnp.float64))


def mixture(theta, base: ToyParams) -> ToyParams:
    """``base`` with the class sizes and lr_v of one phase's parameters ``theta`` = (3 weight logits,
    lr_v / lr_kq)."""
    weights = N_FREE * jax.nn.softmax(theta[:3])
    sizes = {data_class.key: weights[i] for i, data_class in enumerate(FREE_CLASSES)}
    return base.with_class_sizes(**sizes).replace(lr_v=BASE.lr_kq * theta[3])


def _phase(x0, theta, base, gate, steps: int):
    """One phase: from the minimal state ``x0`` (GENERAL's coordinates, an ``(n,)`` vector) with the phase's
    parameters ``theta`` -> (final state, M_C, memory_recall) as one ``(n + 2,)`` vector. ``gate``
    multiplies lr_v: 0 runs the phase QK-only (lr_v = 0 exactly) in the same compiled program."""
    params = mixture(theta, base)
    params = params.replace(lr_v=params.lr_v * gate)
    x0 = tuple(x0[i] for i in range(x0.shape[0]))
    out = minimal_train(params, steps=steps, record_every=steps, regime=GENERAL, x0=x0)
    records = out.records
    tail = jnp.stack([records["context_reliance"][-1], records["memory_recall"][-1]])
    return jnp.concatenate([jnp.stack(out.final_state.x), tail])


def _phase_tangents(x0, theta, base, gate, dx0, dtheta, steps: int):
    """The phase and its forward-mode derivative along ``P`` directions: ``dx0`` ``(P, n)`` (the state's
    derivative in the P parameters of the whole run) and ``dtheta`` ``(P, 4)`` (this phase's parameters'
    derivative in them) -> (y, dy ``(P, n + 2)``). Chaining phases is the chain rule with P directions
    (P = 4 x phases), not a Jacobian in the 166 state coordinates."""
    f = functools.partial(_phase, base=base, gate=gate, steps=steps)
    y = f(x0, theta)
    dy = jax.vmap(lambda a, b: jax.jvp(f, (x0, theta), (a, b))[1])(dx0, dtheta)
    return y, dy


@dataclasses.dataclass(frozen=True)
class Designer:
    """The compiled phase (forward, and with P = 4 x ``phases`` tangents) of a horizon ``steps`` split into
    ``phases`` equal phases."""

    steps: int
    phases: int

    @functools.cached_property
    def base(self) -> ToyParams:
        return _base_params()

    @functools.cached_property
    def x_init(self) -> np.ndarray:
        return np.asarray(jnp.stack(initial_state(self.base, GENERAL)))

    @property
    def n_params(self) -> int:
        return self.phases * N_THETA

    @functools.cached_property
    def _programs(self) -> dict:
        """The phase's forward and tangent programs, each compiled once with FAST_COMPILE (any values of
        the state, parameters and gate)."""
        length = self.steps // self.phases
        f64 = lambda a: jnp.asarray(a, dtype=jnp.float64)
        x, theta, gate = f64(self.x_init), f64(np.zeros(N_THETA)), f64(1.0)
        dx, dtheta = f64(np.zeros((self.n_params, x.shape[0]))), f64(np.zeros((self.n_params, N_THETA)))
        forward = functools.partial(_phase, steps=length)
        tangents = functools.partial(_phase_tangents, steps=length)
        return {
            "forward": jax.jit(forward)
            .lower(x, theta, self.base, gate)
            .compile(compiler_options=FAST_COMPILE),
            "tangents": jax.jit(tangents)
            .lower(x, theta, self.base, gate, dx, dtheta)
            .compile(compiler_options=FAST_COMPILE),
        }

    @staticmethod
    def _gate(value_trained: bool):
        return jnp.asarray(1.0 if value_trained else 0.0, dtype=jnp.float64)

    def evaluate(self, thetas, value_trained: bool = True) -> tuple[float, float]:
        """(M_C(T), memory retention at T) of the phases' parameters ``thetas`` ``(phases, 4)``."""
        x = self.x_init
        run = self._programs["forward"]
        for theta in np.asarray(thetas, dtype=np.float64).reshape(self.phases, N_THETA):
            y = np.asarray(run(x, theta, self.base, self._gate(value_trained)))
            x = y[:-2]
        return float(y[-2]), float(y[-1] / self.recall0)

    def value_and_jacobian(self, thetas, value_trained: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(M_C(T), retention) and their Jacobian ``(2, phases * 4)`` in the phases' parameters, forward
        mode through the chained phases."""
        thetas = np.asarray(thetas, dtype=np.float64).reshape(self.phases, N_THETA)
        run = self._programs["tangents"]
        x = self.x_init
        dx = np.zeros((self.n_params, x.shape[0]))  # d state / d every parameter of the run
        for k, theta in enumerate(thetas):
            dtheta = np.zeros((self.n_params, N_THETA))
            dtheta[k * N_THETA : (k + 1) * N_THETA] = np.eye(N_THETA)
            y, dy = run(x, theta, self.base, self._gate(value_trained), dx, dtheta)
            y, dy = np.asarray(y), np.asarray(dy)
            x, dx = y[:-2], dy[:, :-2]
        values = np.array([y[-2], y[-1] / self.recall0])
        jacobian = np.stack([dy[:, -2], dy[:, -1] / self.recall0])
        return values, jacobian

    @functools.cached_property
    def recall0(self) -> float:
        """The pretrained closed-book recall p(a* | [s*, r]) (the records at the initial state)."""
        params = self.base
        x = tuple(jnp.asarray(v) for v in self.x_init)
        return float(minimal_metrics(x, params, GENERAL)["memory_recall"])


@functools.cache
def designer(steps: int, phases: int) -> Designer:
    """One :class:`Designer` per horizon and phase count (its programs compile once per process)."""
    return Designer(steps, phases)


def optimize(designer: Designer, bound: float | None, tied: bool, starts, maxiter: int = 60) -> dict:
    """Maximize M_C(T) subject to retention >= ``bound`` (SLSQP, Jacobians from :class:`Designer`); the
    best of the ``starts`` (4-vectors, or ``(phases, 4)`` for a curriculum). ``tied``: one mixture for all
    phases (a static mixture). ``bound`` None is QK-only: lr_v = 0 exactly, only the weights optimized."""
    phases = designer.phases
    frozen = bound is None
    n_free = N_THETA if tied else phases * N_THETA

    def expand(v):
        per_phase = np.tile(v, phases) if tied else np.asarray(v)
        if frozen:
            per_phase = per_phase.reshape(phases, N_THETA).copy()
            per_phase[:, 3] = 0.0
        return per_phase.reshape(-1)

    def fold(jacobian):
        # d/d(tied parameters) = sum over the phases that share them
        return jacobian.reshape(2, phases, N_THETA).sum(axis=1) if tied else jacobian

    cache = {}

    def at(v):
        key = tuple(np.round(v, 15))
        if key not in cache:
            values, jacobian = designer.value_and_jacobian(expand(v), value_trained=not frozen)
            cache[key] = (values, fold(jacobian))
        return cache[key]

    constraints = (
        []
        if frozen
        else [{"type": "ineq", "fun": lambda v: at(v)[0][1] - bound, "jac": lambda v: at(v)[1][1]}]
    )
    best = None
    for start in starts:
        v0 = np.asarray(start, dtype=np.float64).reshape(-1)
        v0 = v0 if tied or v0.size == n_free else np.tile(v0, phases)
        result = minimize(
            lambda v: -at(v)[0][0],
            v0,
            jac=lambda v: -at(v)[1][0],
            method="SLSQP",
            bounds=([(-THETA_BOUND, THETA_BOUND)] * 3 + [LR_V_BOUNDS]) * (n_free // N_THETA),
            constraints=constraints,
            options={"maxiter": maxiter, "ftol": 1e-10},
        )
        # the start itself is a candidate too (SLSQP may end at a worse point than it began)
        for theta in (expand(result.x), expand(v0)):
            mc, retention = designer.evaluate(theta, value_trained=not frozen)
            feasible = frozen or retention >= bound - 1e-6
            if feasible and (best is None or mc > best["mc"]):
                best = {"mc": mc, "retention": retention, "theta": theta.reshape(phases, N_THETA)}
                best["design"] = np.array([_phase_summary(t, frozen) for t in best["theta"]])
    if best is None:
        raise RuntimeError(f"F7: no start reached memory retention >= {bound}")
    return best


# Starts: an even split at lr_v / lr_kq = 0.5, and S-heavy at lr_v = lr_kq (high retention: feasible for
# every bound of the front).
STARTS = (np.array([0.0, 0.0, 0.0, 0.5]), np.array([-4.0, -4.0, 4.0, 1.0]))


def hand_points(designer: Designer) -> list[tuple]:
    """(family, label, M_C(T), retention, admissible) of every hand mitigation and of the paper default,
    run through one full-horizon call each (covering regime, the same engine)."""
    out = []
    for family, label, overrides in [("paper default", "10 C + 10 C+S", {}), *HAND]:
        cfg = BASE.replace(**overrides)
        params = reduced_params(cfg)
        mc, recall = (float(v) for v in _full_run(designer.steps)(params))
        out.append((family, label, mc, recall / designer.recall0, _admissible(overrides)))
    return out


@functools.cache
def _full_run(steps: int):
    """``params -> (M_C(T), memory_recall(T))`` of one run of ``steps`` steps in GENERAL (FAST_COMPILE)."""

    def fn(params):
        records = minimal_train(params, steps=steps, record_every=steps, regime=GENERAL).records
        return jnp.stack([records["context_reliance"][-1], records["memory_recall"][-1]])

    example = reduced_params(BASE)
    return jax.jit(fn).lower(example).compile(compiler_options=FAST_COMPILE)


def compute(quick: bool) -> xr.Dataset:
    cfg = QUICK if quick else FULL
    d = designer(cfg["steps"], cfg["phases"])
    hand = hand_points(d)
    value_hands = [h[3] for h, (_, _, o) in zip(hand[1:], HAND, strict=True) if h[4] and o.get("lr_v", 0) > 0]
    bounds = np.unique(np.round(np.concatenate([cfg["bounds"], value_hands]), 12))
    kinds = {"static": True, "curriculum": False}
    rows = {kind: [] for kind in kinds}
    for bound in [None, *bounds]:
        # (and the previous bound's optimum: the front is swept with a warm start)
        starts = (*STARTS[: cfg["starts"]], *([rows["static"][-1]["theta"][0]] if rows["static"] else []))
        static = optimize(d, bound, tied=True, starts=starts, maxiter=cfg["maxiter"])
        # the curriculum starts from the static optimum, so it is never worse than it
        curriculum = optimize(d, bound, tied=False, starts=(static["theta"],), maxiter=cfg["maxiter"])
        rows["static"].append(static)
        rows["curriculum"].append(curriculum)
    data = {}
    for kind, results in rows.items():
        qk, free = results[0], results[1:]
        data[f"{kind}_mc"] = ("bound", np.array([r["mc"] for r in free]))
        data[f"{kind}_retention"] = ("bound", np.array([r["retention"] for r in free]))
        data[f"{kind}_design"] = (("bound", "phase", "knob"), np.stack([r["design"] for r in free]))
        data[f"qk_{kind}_mc"] = qk["mc"]
        data[f"qk_{kind}_retention"] = qk["retention"]
        data[f"qk_{kind}_design"] = (("phase", "knob"), qk["design"])
    data["hand_mc"] = ("hand", np.array([h[2] for h in hand]))
    data["hand_retention"] = ("hand", np.array([h[3] for h in hand]))
    return xr.Dataset(
        data,
        coords={
            "bound": bounds,
            "phase": np.arange(d.phases),
            "knob": [f"n_{data_class.symbol}" for data_class in FREE_CLASSES] + ["lr_v"],
            "hand": np.arange(len(hand)),
            "hand_family": ("hand", [h[0] for h in hand]),
            "hand_label": ("hand", [h[1] for h in hand]),
            "hand_admissible": ("hand", np.array([int(h[4]) for h in hand])),
        },
        attrs={
            "description": (
                "Max M_C(T) subject to memory retention p(a*|[s*,r])(T) / p(a*|[s*,r])(0) >= bound "
                "(lr_v / lr_kq in [0, 1] free; qk_*: lr_v = 0), 10 C+S points kept, the other 10 split "
                "among C / augmented / S; static mixture and curriculum; hand mitigations (F4's knobs)"
            ),
            "steps": d.steps,
            "phases": d.phases,
            "recall0": d.recall0,
        },
    )


def _phase_summary(theta, frozen: bool = False) -> list[float]:
    """(n_C, n_AUG, n_S, lr_v) of one phase's parameters (lr_v = 0 when QK-only)."""
    m = mixture(jnp.asarray(theta, dtype=jnp.float64), ToyParams())
    sizes = [float(m.class_sizes.of(data_class)) for data_class in FREE_CLASSES]
    return sizes + [0.0 if frozen else float(m.lr_v)]


MARKERS = {
    "paper default": "*",
    "filtering": "v",
    "augmentation": "^",
    "augmentation (20 points)": "D",
    "value_training": "s",
    "subject_only": "o",
}


def _designs(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(retention, M_C) of every design the optimizer returned: static and curriculum at each bound, and
    the QK-only ones."""
    kept = np.concatenate([ds.static_retention.values, ds.curriculum_retention.values])
    kept = np.concatenate([kept, [float(ds.qk_static_retention), float(ds.qk_curriculum_retention)]])
    mc = np.concatenate([ds.static_mc.values, ds.curriculum_mc.values])
    mc = np.concatenate([mc, [float(ds.qk_static_mc), float(ds.qk_curriculum_mc)]])
    return kept, mc


def front_steps(ds: xr.Dataset, start: float) -> tuple[np.ndarray, np.ndarray]:
    """The designed front as a staircase: at each retention bound b >= ``start``, the best M_C(T) among the
    designs with retention >= b (:func:`front_value`), non-increasing in b; for ``drawstyle="steps-pre"``
    (the value at ``x[i]`` holds on ``(x[i-1], x[i]]``). It ends at the largest retention reached."""
    kept, _ = _designs(ds)
    edges = np.unique(kept[kept >= start])
    values = np.array([front_value(ds, b) for b in edges])
    return np.concatenate([[start], edges]), np.concatenate([values[:1], values])


@figure_style()
def plot(ds: xr.Dataset, path_stem: str):
    fig, (ax, bx) = new_figure(1, 2, figsize=(12, 5.2), width_ratios=(1.4, 1))
    steps = int(ds.attrs["steps"])
    kept, _ = _designs(ds)
    start = min(1.0, float(np.min(ds.hand_retention.values)), float(np.min(kept)))
    x, y = front_steps(ds, start)
    ax.plot(x, y, drawstyle="steps-pre", color=PALETTE[0], lw=2.2, zorder=3,
            label="designed front: best $M_C(T)$ with retention $\\geq$ bound")  # fmt: skip
    for kind, marker in (("static", "o"), ("curriculum", "x")):
        ax.plot(ds[f"{kind}_retention"].values, ds[f"{kind}_mc"].values, marker, color=PALETTE[0], ms=6,
                mfc="none" if marker == "o" else None, zorder=4, label=f"designed ({kind}), at its retention")  # fmt: skip
    ax.plot([float(ds.qk_static_retention), float(ds.qk_curriculum_retention)],
            [float(ds.qk_static_mc), float(ds.qk_curriculum_mc)], "P", color=PALETTE[7], ms=7, zorder=4,
            label="designed with W$_V$ frozen (lr$_V$ = 0)")  # fmt: skip
    families = list(dict.fromkeys(str(f) for f in ds.hand_family.values))
    inside = ds.hand_admissible.values.astype(bool)
    for j, family in enumerate(families):
        color = PALETTE[(j + 1) % 7 + 1]
        marker = MARKERS.get(family, "o")
        of_family = ds.hand_family.values == family
        for admissible in (True, False):
            idx = np.flatnonzero(of_family & (inside == admissible))
            if idx.size:
                ax.scatter(ds.hand_retention.values[idx], ds.hand_mc.values[idx], marker=marker, s=42, zorder=5,
                           color=color if admissible else "none", edgecolors=color, linewidths=1.3,
                           label=f"hand: {family.replace('_', ' ')}" + ("" if admissible else " (outside)"))  # fmt: skip
    beating = [r for r in comparison(ds) if not r[4] and r[3] < -1e-9]  # outside the set, above the front
    if beating:
        best = max(beating, key=lambda r: r[1])
        kept_at = float(ds.hand_retention.values[[r[0] for r in comparison(ds)].index(best[0])])
        ax.annotate(
            f"{len(beating)} hand mitigations outside the set\nbeat the front here: up to {best[1]:.4f}\n"
            f"vs {best[2]:.4f} ({best[0]})",
            xy=(kept_at, best[1]), xytext=(0.22, 0.72), textcoords="axes fraction", fontsize=7,
            arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 0.8},
        )  # fmt: skip
    ax.set(
        xlabel="memory retention bound: $p(a^*|[s^*,r])$ at T / at 0 $\\geq$ bound",
        ylabel=f"context reliance $M_C(T)$ at T = {steps} steps",
        title="designs (10 C+S kept, 20 points) vs hand mitigations:\nfilled inside that set, hollow outside it",
    )
    # Below the axes: the hand mitigations crowd the column at retention 1 (W_V frozen keeps it exactly).
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, fontsize=7, frameon=False)
    ax.set_xlim(start - 0.006, float(np.max(x)) + 0.006)
    bounds = ds.bound.values
    shown = bounds >= start  # bound 0 (none) gives the unconstrained optimum: the same as any bound below it
    design = ds.static_design.values[shown, 0, :]
    for i, knob in enumerate(ds.knob.values[:3]):
        bx.plot(bounds[shown], design[:, i], "-o", color=PALETTE[i], label=f"{knob} (points)")
    rate = bx.twinx()
    rate.plot(bounds[shown], design[:, 3], "--s", color=PALETTE[3], label="lr$_V$ / lr$_{KQ}$ (right axis)")
    rate.set(ylabel="lr$_V$ / lr$_{KQ}$ of the design", ylim=(-0.05, 1.05))
    rate.grid(False)
    free = ds.static_retention.values[~shown]
    bx.set(
        xlabel="memory retention bound",
        ylabel="points of each class (of the 10 besides the C+S)",
        title="the static design at each bound"
        + (f"\n(no bound: the optimum keeps retention {free[0]:.3f})" if free.size else ""),
        ylim=(-0.5, 10.5),
    )
    handles = bx.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    bx.legend(handles, [h.get_label() for h in handles], loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncols=2, fontsize=7, frameon=False)  # fmt: skip
    save_figure(fig, path_stem)
    return fig


def run(outdir: str, quick: bool) -> dict:
    enable_float64()
    ds, files = write_figure_data(compute(quick), outdir, STEM, plot)
    return {"files": files, "numbers": numbers(ds), "notes": notes(ds)}


def front_value(ds: xr.Dataset, retention: float) -> float:
    """The designed front's M_C at a retention of at least ``retention`` (the best static or curriculum
    point whose retention is at least that; NaN if none)."""
    kept, mc = _designs(ds)
    ok = kept >= retention - 1e-9
    return float(np.max(mc[ok])) if ok.any() else float("nan")


def numbers(ds: xr.Dataset) -> dict:
    out = {}
    d = ds.qk_static_design.values[0]
    out["QK-only (lr_v = 0): static M_C / retention / (n_C, n_AUG, n_S)"] = (
        f"{float(ds.qk_static_mc):.4f} / {float(ds.qk_static_retention):.4f} / ({d[0]:.2f}, {d[1]:.2f}, {d[2]:.2f})"
    )
    out["QK-only (lr_v = 0): curriculum M_C"] = f"{float(ds.qk_curriculum_mc):.4f}"
    for i, bound in enumerate(ds.bound.values):
        d = ds.static_design.values[i, 0]
        out[f"retention >= {bound:g}: static M_C / retention / (n_C, n_AUG, n_S, lr_v)"] = (
            f"{ds.static_mc.values[i]:.4f} / {ds.static_retention.values[i]:.4f} / "
            f"({d[0]:.2f}, {d[1]:.2f}, {d[2]:.2f}, {d[3]:.3f})"
        )
        out[f"retention >= {bound:g}: curriculum M_C / retention"] = (
            f"{ds.curriculum_mc.values[i]:.4f} / {ds.curriculum_retention.values[i]:.4f}"
        )
    for j in range(ds.sizes["hand"]):
        out[f"hand: {ds.hand_family.values[j]}: {ds.hand_label.values[j]}: M_C / retention"] = (
            f"{ds.hand_mc.values[j]:.4f} / {ds.hand_retention.values[j]:.4f}"
        )
    return out


def comparison(ds: xr.Dataset) -> list[tuple]:
    """Every hand mitigation with the front's M_C at its retention: (label, hand M_C, front M_C, margin,
    admissible)."""
    rows = []
    for j in range(ds.sizes["hand"]):
        hand_mc, kept = float(ds.hand_mc.values[j]), float(ds.hand_retention.values[j])
        front = front_value(ds, kept)
        label = f"{ds.hand_family.values[j]}: {ds.hand_label.values[j]}"
        rows.append((label, hand_mc, front, front - hand_mc, bool(ds.hand_admissible.values[j])))
    return rows


def notes(ds: xr.Dataset) -> list[str]:
    rows = comparison(ds)
    admissible = [r for r in rows if r[4]]
    outside = [r for r in rows if not r[4]]
    beaten_out = [r for r in outside if not (r[3] >= -1e-9)]
    lower = [r for r in admissible if not r[3] >= -1e-9]
    text = [
        f"Horizon T = {int(ds.attrs['steps'])} steps, {int(ds.attrs['phases'])} curriculum phases; "
        f"pretrained closed-book recall p(a*|[s*,r]) = {float(ds.attrs['recall0']):.4f}.",
        "Admissible designs keep the 10 C+S points and 20 points in all; hand mitigations marked admissible "
        "are in that set (the paper default, C points swapped for augmented ones, training W_V).",
        "Against the admissible hand mitigations the designed front (the best design at the same or "
        "better memory retention) is "
        + (
            "at least as high everywhere"
            if not lower
            else "lower at: " + "; ".join(f"{r[0]} (hand {r[1]:.4f} vs front {r[2]:.4f})" for r in lower)
        )
        + f" (smallest margin {min((r[3] for r in admissible), default=float('nan')):+.4f}).",
        "Memory retention is p(a*|[s*,r]) at T over its pretrained value: training W_V raises it (the "
        "subjects' shared direction learns to vote for answers, a* included), so W_V costs no recall of the "
        "held-out fact in this model; S points raise it most and cost context reliance.",
    ]
    if beaten_out:
        text.append(
            "Hand mitigations outside the admissible set that beat the front at their retention: "
            + "; ".join(f"{r[0]} (M_C {r[1]:.4f} vs front {r[2]:.4f})" for r in beaten_out)
            + ". They remove C+S data or add points beyond 20, which the design may not."
        )
    else:
        text.append("Every hand mitigation, even those outside the admissible set, is at or below the front.")
    gain = ds.curriculum_mc.values - ds.static_mc.values
    text.append(
        f"Curriculum vs static mixture: M_C gain from {gain.min():+.4f} to {gain.max():+.4f} across the bounds."
    )
    return text
