"""The bridge transformer: causal mask, float32 pinning, QK-only finetuning, checkpoints.

Pretraining to memorization is tested at the tiny size end to end, in test_bridge_cli.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cpi_theory.bridge import (
    FactWorldConfig,
    FinetuneConfig,
    ModelConfig,
    Transformer,
    finetune,
    load_checkpoint,
    make_fact_world,
    measure_model,
    save_checkpoint,
)

MICRO_WORLD = dict(
    n_answers=16,
    n_known_facts=48,
    n_probe=16,
    n_copy_subjects=32,
    n_finetune=16,
    n_distractor_vocab=4,
    copy_rate=0.3,
    cs_fraction=0.5,
)
MICRO_MODEL = dict(n_layers=2, n_heads=2, d_model=32, d_mlp=64)


def _micro(seed=0):
    world = make_fact_world(FactWorldConfig(**MICRO_WORLD, seed=seed))
    return world, ModelConfig(
        vocab_size=world.config.vocab_size, seq_len=world.config.seq_len, seed=seed, **MICRO_MODEL
    )


def _flat(model):
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def test_causal_mask_early_outputs_ignore_later_inputs():
    world, cfg = _micro()
    model = Transformer(cfg)
    tokens = jnp.asarray(world.counterfactual_probe().tokens[:3], dtype=jnp.int32)
    x_BxLxD = model.embed_tokens(tokens)
    length = x_BxLxD.shape[1]
    # A random readout of the logits keeps the Jacobian small without letting terms cancel by symmetry.
    readout_V = jax.random.normal(jax.random.key(0), (cfg.vocab_size,), dtype=jnp.float32)
    jac = jax.jit(jax.jacrev(lambda x: model.from_embeddings(x)[0] @ readout_V))(x_BxLxD)  # (B, L, B, L, D)
    jac_by_pos = np.abs(np.asarray(jac)).sum(axis=4)  # (B, L_out, B, L_in)
    for i in range(length):
        for j in range(length):
            block = jac_by_pos[:, i, :, j]
            if j > i:
                assert np.all(block == 0.0), f"output {i} depends on later input {j}"
            else:
                assert np.all(np.diag(block) > 0.0), f"output {i} should depend on input {j}"
    # The batch rows do not talk to each other either.
    assert np.all(jac_by_pos[0, :, 1, :] == 0.0)


def test_parameters_and_outputs_are_float32_even_with_float64_enabled():
    assert jax.config.jax_enable_x64  # the conftest / package setting the model must coexist with
    world, cfg = _micro()
    model = Transformer(cfg)
    assert {v.dtype for v in _flat(model).values()} == {np.dtype("float32")}
    logits, att = model(world.recall_probe().tokens)
    assert logits.dtype == jnp.float32 and att.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(att).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "gd"])
def test_qk_only_finetuning_leaves_every_other_parameter_bit_identical(optimizer):
    world, cfg = _micro()
    model = Transformer(cfg)
    before = _flat(model)
    tuned, trajectory = finetune(
        model,
        world,
        FinetuneConfig(steps=4, optimizer=optimizer, lr=1e-2, params="qk", measure_every=2),
        progress=False,
    )
    after = _flat(tuned)
    assert before.keys() == after.keys()
    qk = [k for k in before if "w_query" in k or "w_key" in k]
    assert len(qk) == 2 * cfg.n_layers
    for key in before:
        if key in qk:
            assert not np.array_equal(before[key], after[key]), f"{key} did not train"
        else:
            assert before[key].tobytes() == after[key].tobytes(), f"{key} changed under QK-only finetuning"
    # The original model object is not modified by finetuning.
    assert all(np.array_equal(before[k], v) for k, v in _flat(model).items())
    np.testing.assert_array_equal(trajectory["step"], [0, 2, 4])


def test_full_finetuning_trains_every_parameter_and_starts_from_the_measured_state():
    world, cfg = _micro()
    model = Transformer(cfg)
    start = measure_model(model, world)
    tuned, trajectory = finetune(
        model,
        world,
        FinetuneConfig(steps=2, optimizer="sgd", lr=1e-1, batch_size=8, measure_every=2),
        progress=False,
    )
    before, after = _flat(model), _flat(tuned)
    assert all(not np.array_equal(before[k], after[k]) for k in before)
    assert trajectory["context_reliance"][0] == pytest.approx(float(start["context_reliance"]), abs=1e-6)
    assert trajectory["attention_context"].shape == (2, cfg.n_layers)
    assert np.all((trajectory["context_reliance"] >= 0) & (trajectory["context_reliance"] <= 1))


def test_checkpoint_roundtrip_is_exact(tmp_path):
    world, cfg = _micro(seed=1)
    model = Transformer(cfg)
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == cfg
    for key, value in _flat(model).items():
        assert value.tobytes() == _flat(loaded)[key].tobytes()
    tokens = world.counterfactual_probe().tokens
    np.testing.assert_array_equal(np.asarray(model(tokens)[0]), np.asarray(loaded(tokens)[0]))
