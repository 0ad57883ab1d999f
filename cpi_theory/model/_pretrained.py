"""The pretrained initial state (SPEC.md §3; paper Assumptions 5-6, Lemma 3)."""

import jax.numpy as jnp

from .._precision import requires_float64
from ._forward import ToyState
from ._world import World


@requires_float64
def pretrained_state(world: World, relation_score) -> ToyState:
    """W_KQ(0) = rho phi(r) phi(r)^T and W_V(0) = P^T V P with P = pinv(Phi).

    ``Phi^T W_V(0) Phi = V`` exactly because Phi has full column rank (P Phi = I_K).
    """
    phi_DxK = world.embeddings
    phi_r = phi_DxK[:, world.relation]
    w_kq = relation_score * jnp.outer(phi_r, phi_r)
    pinv_KxD = jnp.linalg.pinv(phi_DxK)
    w_v = pinv_KxD.T @ world.value_table @ pinv_KxD
    return ToyState(w_kq=w_kq, w_v=w_v)
