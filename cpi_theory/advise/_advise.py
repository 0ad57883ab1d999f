"""The advisor: where M_C stands at a horizon for a mixture, and the smallest dose of each mitigation that
brings it to a target.

The mitigations (SPEC.md §7), each at the same total of points unless it removes some, so that the toy's
vocabulary (its unused tokens enter every softmax) is the same for the base and for every dose:

- ``filter_cs``: drop a share of the C+S points (paper §4.3), the others kept;
- ``augment``: replace a share of the C+S points by counterfactual-augmented ones (the same examples with
  a context that contradicts the memorized answer), the total kept;
- ``lr_v_ratio``: train W_V at lr_v = ratio * lr_kq (0: attention-only finetuning);
- ``add_s``: raise the S (closed-book fact) share, the C and C+S points scaled down together.

The inputs are checked first (:func:`cpi_theory.advise._inputs.check_advice_inputs`, no JAX); the
computation (``_search``, exact runs and root finding) is imported after that.
"""

from .._precision import requires_float64
from ._inputs import FIT_POINTS, check_advice_inputs
from ._result import Advice

N_GRID = 41  # doses scanned per mitigation before the root search (a crossing narrower than a cell is missed)


@requires_float64
def advise(
    *,
    delta_m: float,
    delta_c: float,
    cs_fraction: float,
    horizon: int,
    target: float,
    s_fraction: float = 0.0,
    n_points: int | float = FIT_POINTS,
    start_mc: float | None = None,
    context_bias: float | None = None,
    lr_v_ratio: float = 0.0,
    time_scale: float | None = None,
    n_grid: int = N_GRID,
) -> Advice:
    """Where M_C(t) of the toy stands at ``horizon`` toy steps (lr_kq = 1) and, per mitigation, the smallest
    dose that makes M_C(horizon) >= ``target`` (module docstring).

    The mixture: ``n_points`` training points, a share ``cs_fraction`` of them C+S and ``s_fraction`` S,
    the rest C. The start: ``start_mc`` (the base model's M_C(0), converted to the initial attention tilt)
    or ``context_bias`` itself (default 0: the paper's pretrained state). ``time_scale`` (toy steps per real
    step, from a bridge fit) only adds the horizon in real steps to the inputs.
    """
    given = check_advice_inputs(
        delta_m=delta_m,
        delta_c=delta_c,
        cs_fraction=cs_fraction,
        horizon=horizon,
        target=target,
        s_fraction=s_fraction,
        n_points=n_points,
        start_mc=start_mc,
        context_bias=context_bias,
        lr_v_ratio=lr_v_ratio,
        time_scale=time_scale,
        n_grid=n_grid,
    )
    from ._search import compute_advice

    return compute_advice(given)
