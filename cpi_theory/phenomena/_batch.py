"""Batched runs and statistics shared by the figure experiments (``experiments/``).

Many runs of one shape are trained together: worlds are padded to a common number of points with
zero-weight points (they add nothing to the loss, its gradient or the per-class metrics), stacked, and the
trainer is ``vmap``-ed over worlds and learning rates. One compilation per (shape, steps, record_every).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from .._precision import requires_float64
from ..engine._divergence import first_bad_step, raise_if_diverged
from ..engine._loop import Recorded, recorded_steps, run_batched
from ..model._pretrained import pretrained_state
from ..model._train import train
from ..model._world import World


@requires_float64
def pad_world(world: World, n_points: int) -> World:
    """``world`` with zero-weight dummy points appended up to ``n_points`` (a no-op if already that size).

    A dummy point is ``[s, r] -> r`` for subject 0 with weight 0: it is excluded from the weighted loss
    and from every per-class mean, so padding changes no trajectory.
    """
    n = world.n_points
    if n_points < n:
        raise ValueError(f"n_points must be >= the world's {n} points, got {n_points}")
    extra = n_points - n
    if extra == 0:
        return world

    def grow(values, fill):
        return jnp.concatenate([values, jnp.full((extra,), fill, dtype=values.dtype)])

    relation = world.relation
    return World(
        embeddings=world.embeddings,
        value_table=world.value_table,
        context=grow(world.context, relation),
        subject=grow(world.subject, 0),
        target=grow(world.target, relation),
        has_context=grow(world.has_context, False),
        weight=grow(world.weight, 0.0),
        data_class=grow(world.data_class, 0),
        probe_context=world.probe_context,
        probe_subject=world.probe_subject,
        probe_memorized=world.probe_memorized,
    )


@requires_float64
def stack_worlds(worlds) -> World:
    """One World whose arrays have a leading batch axis (all worlds padded to the largest)."""
    worlds = list(worlds)
    n_max = max(w.n_points for w in worlds)
    worlds = [pad_world(w, n_max) for w in worlds]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *worlds)


@functools.partial(jax.jit, static_argnames=("steps", "record_every"))
def _batched_train(worlds, lr_kq, lr_v, relation_score, *, steps, record_every):
    def one(per_run):
        world, lr_kq, lr_v = per_run
        state0 = pretrained_state(world, relation_score)
        return train(world, state0, lr_kq, lr_v, steps=steps, record_every=record_every)

    return run_batched(one, (worlds, lr_kq, lr_v))


@requires_float64
def train_batch(
    worlds,
    lr_kq,
    lr_v,
    *,
    relation_score: float,
    steps: int,
    record_every: int = 1,
) -> Recorded:
    """Train every world from its pretrained state; returns the loop's :class:`Recorded` with a leading
    batch axis.

    ``worlds`` is a sequence of worlds (padded and stacked here) or an already stacked World; ``lr_kq``
    and ``lr_v`` are scalars or one value per world. Raises :class:`DivergenceError` naming the first run
    and step that stopped being finite.
    """
    if not isinstance(worlds, World):
        worlds = stack_worlds(worlds)
    batch = worlds.context.shape[0]
    dtype = worlds.embeddings.dtype
    lr_kq = jnp.broadcast_to(jnp.asarray(lr_kq, dtype=dtype), (batch,))
    lr_v = jnp.broadcast_to(jnp.asarray(lr_v, dtype=dtype), (batch,))
    result = _batched_train(
        worlds, lr_kq, lr_v, jnp.asarray(relation_score, dtype=dtype), steps=steps, record_every=record_every
    )
    step = recorded_steps(steps, record_every)
    records = result.records
    bad = first_bad_step(result.first_nonfinite_step, step, records["loss"], records["context_reliance"])
    raise_if_diverged(bad, "lower the learning rate")
    return result


# -- knowledge consistency (Ren et al.) ---------------------------------------------------------------------


def _rounded(x, decimals: int):
    # Ties in a pretrained distribution (all unrelated answers equal) must stay ties after finetuning
    # perturbs them by rounding noise; rounding the log-probabilities makes ranks reproducible.
    return np.round(np.asarray(x, dtype=np.float64), decimals)


def rank_correlation(p, q, *, decimals: int = 9) -> np.ndarray:
    """Spearman rank correlation between rows of ``p`` and ``q`` (distributions over the same answers).

    Ranks are computed on log-probabilities rounded to ``decimals`` (ties get average ranks). A row whose
    ranks are all tied has no defined correlation and gives NaN.
    """
    p, q = np.atleast_2d(p), np.atleast_2d(q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    rp = scipy.stats.rankdata(_rounded(np.log(p), decimals), axis=-1)
    rq = scipy.stats.rankdata(_rounded(np.log(q), decimals), axis=-1)
    rp = rp - rp.mean(axis=-1, keepdims=True)
    rq = rq - rq.mean(axis=-1, keepdims=True)
    denom = np.sqrt((rp**2).sum(axis=-1) * (rq**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rp * rq).sum(axis=-1) / np.where(denom > 0, denom, 1.0), np.nan)


def kl_divergence(p, q) -> np.ndarray | np.floating:
    """KL(p || q) in nats along the last axis (p, q strictly positive distributions)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def partial_correlation(x, y, z) -> float:
    """Pearson correlation of ``x`` and ``y`` controlling for ``z``: the correlation of the residuals of
    ``x`` and ``y`` after least-squares regression on ``[1, z]``."""
    x, y, z = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, z))
    if not (x.shape == y.shape == z.shape):
        raise ValueError("x, y and z must have the same number of values")
    if x.size < 4:
        raise ValueError(f"need at least 4 observations, got {x.size}")
    design = np.stack([np.ones_like(z), z], axis=1)

    def residual(v):
        coef, *_ = np.linalg.lstsq(design, v, rcond=None)
        return v - design @ coef

    rx, ry = residual(x), residual(y)
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    if denom == 0:
        return float("nan")
    return float((rx * ry).sum() / denom)
