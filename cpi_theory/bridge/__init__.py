"""The bridge: small real transformers trained under the toy's data mixtures, and the toy fitted to them.

It is the package's verification path: a synthetic fact world (``make_world``), a decoder-only transformer
(``Transformer``), pretraining to a controlled regime and finetuning on a mixture (``pretrain``,
``finetune``), the toy's quantities measured on the real model (``make_measure_fn``), the toy parametrized
from the measured start and fitted to the measured curve (``toy_parameters``, ``fit_curve``), one run
(``run_bridge``) and the verification study (``run_study``). See README.md beside this file.
"""

from ._fit import (
    LR_V_RATIOS,
    TOY_HORIZON,
    TOY_POINTS,
    ToyParameters,
    context_bias_for_start,
    delta_c_for_start,
    fit_curve,
    fit_time_scale,
    simulate_toy,
    toy_class_counts,
    toy_parameters,
    toy_start_reliance,
)
from ._measure import make_measure_fn
from ._model import ModelConfig, Transformer, qk_filter
from ._presets import REGIMES, SIZES, get_size, model_config, world_config
from ._run import run_bridge, write_report
from ._shape import SHAPES, classify_shape, curve_summary
from ._study import CELLS, run_study, study_table
from ._train import (
    FinetuneConfig,
    PretrainConfig,
    finetune,
    load_checkpoint,
    measure_model,
    pretrain,
    save_checkpoint,
)
from ._trajectory_io import load_trajectory
from ._world import Examples, World, WorldConfig, make_world, pretraining_batch, sequences

__all__ = [
    "CELLS",
    "LR_V_RATIOS",
    "REGIMES",
    "SHAPES",
    "SIZES",
    "TOY_HORIZON",
    "TOY_POINTS",
    "Examples",
    "FinetuneConfig",
    "ModelConfig",
    "PretrainConfig",
    "ToyParameters",
    "Transformer",
    "World",
    "WorldConfig",
    "classify_shape",
    "context_bias_for_start",
    "curve_summary",
    "delta_c_for_start",
    "finetune",
    "fit_curve",
    "fit_time_scale",
    "get_size",
    "load_checkpoint",
    "load_trajectory",
    "make_measure_fn",
    "make_world",
    "measure_model",
    "model_config",
    "pretrain",
    "pretraining_batch",
    "qk_filter",
    "run_bridge",
    "run_study",
    "save_checkpoint",
    "sequences",
    "simulate_toy",
    "study_table",
    "toy_class_counts",
    "toy_parameters",
    "toy_start_reliance",
    "world_config",
    "write_report",
]
