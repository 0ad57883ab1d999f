"""The gradient-flow limit of the reduced dynamics: eta -> 0 at fixed time tau = eta * t.

GD on the reduced state is ``x_{t+1} = x_t + eta * F(x_t)`` with ``F`` the velocity per unit learning rate
(lr_kq = 1 for W_KQ, lr_v / lr_kq for W_V, so the ratio of the two rates is kept). Its eta -> 0 limit is the
ODE ``dx/dtau = F(x)``, which we solve with scipy's DOP853 at tight tolerances. GD is the explicit Euler
method for that ODE, so at fixed tau it converges to the flow at rate O(eta) (tested).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import scipy.integrate
import scipy.optimize

from .._precision import requires_float64
from ..config._config import resolve_config
from ..reduced import reduced_initial_state, reduced_metrics_jit, reduced_params, reduced_velocity_jit


def _unit_rate_params(config):
    cfg = resolve_config(config)
    if cfg.lr_kq <= 0:
        raise ValueError("the flow's time unit is lr_kq: it must be > 0")
    params = reduced_params(cfg)
    params["lr_v"] = jnp.asarray(cfg.lr_v / cfg.lr_kq, jnp.float64)
    params["lr_kq"] = jnp.asarray(1.0, jnp.float64)
    return cfg, params


@dataclasses.dataclass(frozen=True)
class FlowSolution:
    """The flow from the pretrained state: ``sol(tau)`` -> reduced state; ``context_reliance(tau)``."""

    params: dict
    solution: object  # scipy OdeSolution (dense output)
    t_max: float

    def state(self, tau):
        return self.solution(tau)

    def context_reliance(self, tau) -> np.ndarray:
        tau = np.atleast_1d(np.asarray(tau, dtype=np.float64))
        states = self.solution(tau).T
        return np.array(
            [float(reduced_metrics_jit(jnp.asarray(x), self.params)["context_reliance"]) for x in states]
        )


@requires_float64
def gradient_flow(
    config=None, *, t_max: float | None = None, rtol: float = 1e-11, atol: float = 1e-12
) -> FlowSolution:
    """Solve dx/dtau = F(x) from the pretrained state up to ``t_max`` (default lr_kq * steps).

    Time is measured in units of lr_kq * steps (tau = lr_kq * t), the rate ratio lr_v / lr_kq is kept.
    """
    cfg, params = _unit_rate_params(config)
    t_max = cfg.lr_kq * cfg.steps if t_max is None else float(t_max)

    def rhs(_, x):
        velocity, _ = reduced_velocity_jit(jnp.asarray(x), params)
        return np.asarray(velocity)

    x0 = np.asarray(reduced_initial_state(params))
    sol = scipy.integrate.solve_ivp(
        rhs, (0.0, t_max), x0, method="DOP853", rtol=rtol, atol=atol, dense_output=True
    )
    if not sol.success:
        raise RuntimeError(f"gradient flow integration failed: {sol.message}")
    return FlowSolution(params=params, solution=sol.sol, t_max=t_max)


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
