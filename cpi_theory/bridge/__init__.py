"""The bridge: small real transformers trained under the toy's data mixtures, and the toy fitted to them.

It is the package's verification path: a synthetic fact world (``make_fact_world``; not the toy's
``cpi_theory.World``), a decoder-only transformer (``Transformer``), pretraining to a controlled regime and
finetuning on a mixture (``pretrain``, ``finetune``), the toy's quantities measured on the real model
(``make_measure_fn``), the toy parametrized from the measured start and fitted to the measured curve
(``toy_parameters``, ``fit_curve``; the joint fit of every toy parameter with intervals and held-out
checks is ``joint_fit``, on the real run's learning-rate clock ``schedule_time``, against the
``smooth_baseline``, behind ``cpi-theory bridge fit``), one run (``run_bridge``) and the verification study (``run_study``).
Curves are summarized and shape-classified by :func:`cpi_theory.engine.summarize`. See README.md beside
this file.
"""

# The fact world and its data.
from ._world import Examples as Examples
from ._world import FactWorld as FactWorld
from ._world import FactWorldConfig as FactWorldConfig
from ._world import make_fact_world as make_fact_world
from ._world import pretraining_batch as pretraining_batch

# isort: split
# The transformer, its training and what is measured on it.
from ._measure import make_measure_fn as make_measure_fn
from ._model import ModelConfig as ModelConfig
from ._model import Transformer as Transformer
from ._model import qk_filter as qk_filter
from ._train import FinetuneConfig as FinetuneConfig
from ._train import PretrainConfig as PretrainConfig
from ._train import finetune as finetune
from ._train import load_checkpoint as load_checkpoint
from ._train import measure_model as measure_model
from ._train import pretrain as pretrain
from ._train import save_checkpoint as save_checkpoint

# isort: split
# Named sizes and pretrained regimes.
from ._presets import REGIMES as REGIMES
from ._presets import SIZES as SIZES
from ._presets import fact_world_config as fact_world_config
from ._presets import get_size as get_size
from ._presets import model_config as model_config

# isort: split
# The toy parametrized from a measured start and fitted to a measured curve.
from ._fit import ToyParameters as ToyParameters
from ._fit import context_bias_for_start as context_bias_for_start
from ._fit import delta_c_for_start as delta_c_for_start
from ._fit import fit_curve as fit_curve
from ._fit import fit_time_scale as fit_time_scale
from ._fit import simulate_toy as simulate_toy
from ._fit import toy_parameters as toy_parameters
from ._fit import toy_start_reliance as toy_start_reliance
from ._joint import joint_fit as joint_fit
from ._joint import schedule_time as schedule_time
from ._joint import smooth_baseline as smooth_baseline
from ._trajectory_io import load_trajectory as load_trajectory

# isort: split
# One run and the verification study.
from ._run import run_bridge as run_bridge
from ._run import write_report as write_report
from ._study import CELLS as CELLS
from ._study import run_study as run_study
from ._study import summarize_cells as summarize_cells
from ._study import write_study as write_study
