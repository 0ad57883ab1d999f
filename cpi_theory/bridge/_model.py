"""A small decoder-only transformer in Flax NNX: pre-norm blocks, causal multi-head attention, GELU MLP.

Precision is pinned on purpose. The toy's theory code runs with float64 enabled globally, so every
parameter here is created as float32 and inputs are cast to float32; and every matmul passes
``precision=HIGHEST`` so that an H100 does not silently switch to TF32 (results then match the CPU to
float32 rounding instead of to TF32's 10-bit mantissa).

Attention query/key weights are named ``w_query`` / ``w_key`` so QK-only finetuning can select them by path.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

F32 = jnp.float32
HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    seq_len: int
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_mlp: int = 256
    init_std: float = 0.02
    seed: int = 0


def _normal(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> nnx.Param:
    return nnx.Param(jax.random.normal(rngs.params(), shape, dtype=F32) * std)


class LayerNorm(nnx.Module):
    def __init__(self, d: int):
        self.scale = nnx.Param(jnp.ones((d,), dtype=F32))
        self.bias = nnx.Param(jnp.zeros((d,), dtype=F32))

    # Parameters broadcast explicitly ([None, None]): the tests run with rank promotion "raise".
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        mean_BxLx1 = x_BxLxD.mean(axis=-1, keepdims=True)
        var_BxLx1 = jnp.square(x_BxLxD - mean_BxLx1).mean(axis=-1, keepdims=True)
        return (x_BxLxD - mean_BxLx1) * jax.lax.rsqrt(var_BxLx1 + 1e-5) * self.scale[...][
            None, None
        ] + self.bias[...][None, None]


class CausalAttention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d_head = cfg.d_model // cfg.n_heads
        self.w_query = _normal(rngs, (cfg.d_model, cfg.n_heads, d_head), cfg.init_std)
        self.w_key = _normal(rngs, (cfg.d_model, cfg.n_heads, d_head), cfg.init_std)
        self.w_value = _normal(rngs, (cfg.d_model, cfg.n_heads, d_head), cfg.init_std)
        # Residual-branch outputs start smaller so deeper stacks begin near the identity.
        self.w_out = _normal(
            rngs, (cfg.n_heads, d_head, cfg.d_model), cfg.init_std / (2 * cfg.n_layers) ** 0.5
        )

    def __call__(self, x_BxLxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        q_BxLxHxK = jnp.einsum("bld,dhk->blhk", x_BxLxD, self.w_query[...], precision=HIGHEST)
        k_BxLxHxK = jnp.einsum("bld,dhk->blhk", x_BxLxD, self.w_key[...], precision=HIGHEST)
        v_BxLxHxK = jnp.einsum("bld,dhk->blhk", x_BxLxD, self.w_value[...], precision=HIGHEST)
        d_head = q_BxLxHxK.shape[-1]
        logits_BxHxLxL = jnp.einsum("bqhk,bshk->bhqs", q_BxLxHxK, k_BxLxHxK, precision=HIGHEST) / d_head**0.5
        length = x_BxLxD.shape[1]
        causal_LxL = jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))
        logits_BxHxLxL = jnp.where(causal_LxL, logits_BxHxLxL, jnp.finfo(F32).min)
        att_BxHxLxL = jax.nn.softmax(logits_BxHxLxL, axis=-1)
        mixed_BxLxHxK = jnp.einsum("bhqs,bshk->bqhk", att_BxHxLxL, v_BxLxHxK, precision=HIGHEST)
        out_BxLxD = jnp.einsum("blhk,hkd->bld", mixed_BxLxHxK, self.w_out[...], precision=HIGHEST)
        return out_BxLxD, att_BxHxLxL


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.norm_attn = LayerNorm(cfg.d_model)
        self.attn = CausalAttention(cfg, rngs)
        self.norm_mlp = LayerNorm(cfg.d_model)
        self.w_mlp_in = _normal(rngs, (cfg.d_model, cfg.d_mlp), cfg.init_std)
        self.b_mlp_in = nnx.Param(jnp.zeros((cfg.d_mlp,), dtype=F32))
        self.w_mlp_out = _normal(rngs, (cfg.d_mlp, cfg.d_model), cfg.init_std / (2 * cfg.n_layers) ** 0.5)
        self.b_mlp_out = nnx.Param(jnp.zeros((cfg.d_model,), dtype=F32))

    def __call__(self, x_BxLxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        attn_BxLxD, att_BxHxLxL = self.attn(self.norm_attn(x_BxLxD))
        x_BxLxD = x_BxLxD + attn_BxLxD
        h_BxLxF = jnp.einsum("bld,df->blf", self.norm_mlp(x_BxLxD), self.w_mlp_in[...], precision=HIGHEST)
        h_BxLxF = jax.nn.gelu(h_BxLxF + self.b_mlp_in[...][None, None])
        mlp_BxLxD = jnp.einsum("blf,fd->bld", h_BxLxF, self.w_mlp_out[...], precision=HIGHEST)
        return x_BxLxD + mlp_BxLxD + self.b_mlp_out[...][None, None], att_BxHxLxL


class Transformer(nnx.Module):
    """``model(tokens_BxL) -> (logits_BxLxV, att_NxBxHxLxL)`` with N = n_layers."""

    def __init__(self, cfg: ModelConfig):
        rngs = nnx.Rngs(params=cfg.seed)
        self.config = cfg
        self.embed = _normal(rngs, (cfg.vocab_size, cfg.d_model), cfg.init_std)
        self.pos_embed = _normal(rngs, (cfg.seq_len, cfg.d_model), cfg.init_std)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.norm_out = LayerNorm(cfg.d_model)
        self.w_unembed = _normal(rngs, (cfg.d_model, cfg.vocab_size), cfg.init_std)

    def embed_tokens(self, tokens_BxL: jax.Array | np.ndarray) -> jax.Array:
        tokens_BxL = jnp.asarray(tokens_BxL, dtype=jnp.int32)
        return (
            jnp.take(self.embed[...], tokens_BxL, axis=0) + self.pos_embed[...][None, : tokens_BxL.shape[1]]
        )

    def from_embeddings(self, x_BxLxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        x_BxLxD = jnp.asarray(x_BxLxD, dtype=F32)
        atts = []
        for block in self.blocks:
            x_BxLxD, att_BxHxLxL = block(x_BxLxD)
            atts.append(att_BxHxLxL)
        logits_BxLxV = jnp.einsum(
            "bld,dv->blv", self.norm_out(x_BxLxD), self.w_unembed[...], precision=HIGHEST
        )
        return logits_BxLxV, jnp.stack(atts)

    def __call__(self, tokens_BxL: jax.Array | np.ndarray) -> tuple[jax.Array, jax.Array]:
        return self.from_embeddings(self.embed_tokens(tokens_BxL))


def qk_filter():
    """The NNX filter selecting attention query and key weights (the paper's QK finetuning)."""
    return nnx.Any(nnx.PathContains("w_query"), nnx.PathContains("w_key"))
