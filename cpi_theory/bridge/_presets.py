"""Named sizes (model, world, training budget) and pretrained regimes (the pretraining mixture).

``micro`` is for tests only. ``tiny`` runs on a 2-core CPU in about a minute. ``small`` and ``base`` are GPU
sizes (not run on a GPU in the task that wrote them; their budgets are estimates, not tuned).

Regimes set how strongly the pretrained model copies a context, by the share of copy examples on unknown
subjects in the pretraining corpus and their label noise; every regime memorizes the same facts with
``fact_noise`` 0.3 (delta_M converges to about 0.7), so the toy's delta_M > 2 delta_C can hold.
"""

import dataclasses

from .._errors import ConfigError
from ._model import ModelConfig
from ._train import FinetuneConfig, PretrainConfig
from ._world import FactWorldConfig


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    model: dict  # ModelConfig fields
    world: dict  # FactWorldConfig fields
    pretrain: PretrainConfig
    finetune: FinetuneConfig


SIZES = {
    "micro": Size(
        "micro",
        dict(n_layers=2, n_heads=2, d_model=32, d_mlp=64),
        dict(
            n_answers=16,
            n_known_facts=48,
            n_probe=16,
            n_copy_subjects=32,
            n_finetune=16,
            n_distractor_vocab=4,
        ),
        PretrainConfig(steps=300, batch_size=64, lr=1e-2, chunk=50),
        FinetuneConfig(steps=20, optimizer="adam", lr=1e-3, batch_size=16, measure_every=5),
    ),
    "tiny": Size(
        "tiny",
        dict(n_layers=2, n_heads=4, d_model=64, d_mlp=256),
        dict(n_answers=64, n_known_facts=256, n_probe=64, n_copy_subjects=256, n_finetune=192),
        PretrainConfig(steps=800, batch_size=128, lr=3e-3, chunk=50),
        FinetuneConfig(steps=100, optimizer="adam", lr=3e-4, batch_size=192, measure_every=5),
    ),
    "small": Size(
        "small",
        dict(n_layers=4, n_heads=4, d_model=128, d_mlp=512),
        dict(n_answers=256, n_known_facts=1024, n_probe=128, n_copy_subjects=1024, n_finetune=256),
        PretrainConfig(steps=5000, batch_size=256, lr=1e-3, chunk=100),
        FinetuneConfig(steps=300, optimizer="adam", lr=1e-4, batch_size=256, measure_every=5),
    ),
    "base": Size(
        "base",
        dict(n_layers=6, n_heads=8, d_model=256, d_mlp=1024),
        dict(n_answers=1024, n_known_facts=4096, n_probe=256, n_copy_subjects=4096, n_finetune=512),
        PretrainConfig(steps=20000, batch_size=512, lr=5e-4, chunk=200),
        FinetuneConfig(steps=500, optimizer="adam", lr=5e-5, batch_size=512, measure_every=5),
    ),
}

# Pretraining mixtures: (copy_rate, copy_noise); agree_rate 0 and fact_noise 0.3 throughout.
REGIMES = {
    "weak": dict(copy_rate=0.02, copy_noise=0.7),
    "moderate": dict(copy_rate=0.035, copy_noise=0.7),
    "strong": dict(copy_rate=0.3, copy_noise=0.0),
}
FACT_NOISE = 0.3


def get_size(name: str) -> Size:
    if name not in SIZES:
        raise ConfigError("size", f"must be one of {sorted(SIZES)}, got {name!r}")
    return SIZES[name]


def fact_world_config(size: Size, regime: str, seed: int, **mixture) -> FactWorldConfig:
    """The fact world of ``size`` pretrained in ``regime`` with the given finetuning mixture overrides."""
    if regime not in REGIMES:
        raise ConfigError("regime", f"must be one of {sorted(REGIMES)}, got {regime!r}")
    return FactWorldConfig(**size.world, **REGIMES[regime], fact_noise=FACT_NOISE, seed=seed, **mixture)


def model_config(size: Size, config: FactWorldConfig, seed: int) -> ModelConfig:
    """The transformer of ``size`` for the vocabulary and sequence length of the fact world ``config``."""
    return ModelConfig(vocab_size=config.vocab_size, seq_len=config.seq_len, seed=seed, **size.model)
