"""The gradient-flow limit of the reduced dynamics: eta -> 0 at fixed time tau = eta * t.

GD on the reduced state is ``x_{t+1} = x_t + eta * F(x_t)`` with ``F`` the velocity per unit learning rate
(lr_kq = 1 for W_KQ, lr_v / lr_kq for W_V, so the ratio of the two rates is kept). Its eta -> 0 limit is the
ODE ``dx/dtau = F(x)``, which we solve with scipy's DOP853 at tight tolerances. GD is the explicit Euler
method for that ODE, so at fixed tau it converges to the flow at rate O(eta) (tested).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
import scipy.optimize

from .._precision import requires_float64
from ..config._config import resolve_config
from ..config._params import ToyParams
from ..reduced import reduced_params, symbol_values
from ..reduced._minimal import Regime, initial_state, probe_fn, regime_of, to_general, velocity_fn


@functools.cache
def _jitted(regime: Regime):
    """The minimal engine's velocity (tuple state in, flat array out) and M_C of a batch of states."""
    velocity = jax.jit(lambda x, p: jnp.stack(velocity_fn(regime)(tuple(x), symbol_values(p))[0]))
    reliance = jax.jit(lambda x, p: probe_fn(regime)(tuple(x), symbol_values(p))[0])
    return velocity, reliance


def _unit_rate_params(config):
    cfg = resolve_config(config)
    if cfg.lr_kq <= 0:
        raise ValueError("the flow's time unit is lr_kq: it must be > 0")
    params = reduced_params(cfg).replace(
        lr_v=jnp.asarray(cfg.lr_v / cfg.lr_kq, jnp.float64), lr_kq=jnp.asarray(1.0, jnp.float64)
    )
    return cfg, params


@dataclasses.dataclass(frozen=True)
class FlowSolution:
    """The flow from the pretrained state: ``state(tau)`` -> general reduced state; ``context_reliance(tau)``.
    The ODE runs on the minimal coordinates of the configuration's regime (``solution``)."""

    params: ToyParams
    solution: object  # scipy OdeSolution (dense output) of the minimal coordinates
    t_max: float
    regime: Regime

    def state(self, tau):
        return np.asarray(to_general(tuple(jnp.asarray(self.solution(tau))), self.regime))

    def context_reliance(self, tau) -> np.ndarray:
        tau = np.atleast_1d(np.asarray(tau, dtype=np.float64))
        _, reliance = _jitted(self.regime)
        return np.asarray(reliance(jnp.asarray(self.solution(tau)), self.params))


@requires_float64
def gradient_flow(
    config=None, *, t_max: float | None = None, rtol: float = 1e-11, atol: float = 1e-12
) -> FlowSolution:
    """Solve dx/dtau = F(x) from the pretrained state up to ``t_max`` (default lr_kq * steps).

    Time is measured in units of lr_kq * steps (tau = lr_kq * t), the rate ratio lr_v / lr_kq is kept.
    """
    cfg, params = _unit_rate_params(config)
    t_max = cfg.lr_kq * cfg.steps if t_max is None else float(t_max)

    regime = regime_of(params)
    velocity, _ = _jitted(regime)

    def rhs(_, x):
        return np.asarray(velocity(jnp.asarray(x), params))

    x0 = np.asarray(jnp.stack(initial_state(params, regime)))
    sol = scipy.integrate.solve_ivp(
        rhs, (0.0, t_max), x0, method="DOP853", rtol=rtol, atol=atol, dense_output=True
    )
    if not sol.success:
        raise RuntimeError(f"gradient flow integration failed: {sol.message}")
    return FlowSolution(params=params, solution=sol.sol, t_max=t_max, regime=regime)


@dataclasses.dataclass(frozen=True)
class FlowPeak:
    """The maximum of M_C along the gradient flow (:func:`flow_peak`), named as in the one summary."""

    peak_tau: float  # its time tau = lr_kq * t
    peak: float  # M_C there
    interior: bool  # strictly inside [0, t_max] (refined); False: at an end of the grid (not refined)


@requires_float64
def flow_peak(config=None, *, t_max: float | None = None, grid: int = 400) -> FlowPeak:
    """Peak time (in tau = lr_kq * t) and height of M_C along the gradient flow.

    A grid over [0, t_max] locates the maximum; a bounded scalar search on the dense solution refines it.
    """
    flow = gradient_flow(config, t_max=t_max)
    taus = np.linspace(0.0, flow.t_max, grid)
    mc = flow.context_reliance(taus)
    i = int(np.argmax(mc))
    if i in (0, grid - 1):
        return FlowPeak(peak_tau=float(taus[i]), peak=float(mc[i]), interior=False)
    res = scipy.optimize.minimize_scalar(
        lambda t: -flow.context_reliance(t)[0],
        bounds=(taus[i - 1], taus[i + 1]),
        method="bounded",
        options={"xatol": 1e-9},
    )
    return FlowPeak(peak_tau=float(res.x), peak=float(-res.fun), interior=True)


__all__ = ["FlowPeak", "FlowSolution", "flow_peak", "gradient_flow"]
