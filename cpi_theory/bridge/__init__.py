"""The bridge: small real transformers trained under the toy's data mixtures, and the toy fitted to them.

It is the package's verification path: a synthetic fact world (``make_fact_world``; not the toy's
``cpi_theory.World``), a decoder-only transformer (``Transformer``), pretraining to a controlled regime and
finetuning on a mixture (``pretrain``, ``finetune``), the toy's quantities measured on the real model
(``make_measure_fn``) and one run (``run_bridge``: pretrain, finetune, measure, and fit the toy with
:mod:`cpi_theory.fit`). The verification study and the regime search are studies: ``experiments/``.
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
# One run and the verification study.
from ._run import finetune_and_fit as finetune_and_fit
from ._run import pretrained_model as pretrained_model
from ._run import run_bridge as run_bridge
from ._run import start_state as start_state
from ._run import write_json as write_json
from ._run import write_report as write_report

# isort: split
# Building blocks of studies (experiments/: the verification study, the regime search).
from ._measure import CLASS_LOSS_KEYS as CLASS_LOSS_KEYS
from ._plot import plot_study as plot_study
from ._train import check_finite as check_finite
from ._train import init_optimizer as init_optimizer
from ._train import make_tx as make_tx
from ._train import scan_steps as scan_steps

# isort: split
# Round two (issue 22): recipes (per-group rates, freezing, LoRA, schedules, weight decay, fresh C points,
# members trained together), the gate, the pre-registered designs, and the toy out of sample.
from ._designs import DESIGN_NAMES as DESIGN_NAMES
from ._designs import ROUND2_REGIME as ROUND2_REGIME
from ._designs import V3_REGIME as V3_REGIME
from ._designs import Arm as Arm
from ._designs import Cell as Cell
from ._designs import Design as Design
from ._designs import gate as gate
from ._designs import gate_line as gate_line
from ._designs import get_design as get_design
from ._designs import round2_world as round2_world
from ._recipe import GROUPS as GROUPS
from ._recipe import Adapters as Adapters
from ._recipe import Member as Member
from ._recipe import Recipe as Recipe
from ._recipe import finetune_members as finetune_members
from ._recipe import param_group as param_group
from ._round2 import finetune_arms as finetune_arms
from ._round2 import gated_checkpoint as gated_checkpoint
from ._round2 import gated_seeds as gated_seeds
from ._round2 import members_of as members_of
from ._toy_oos import curve_numbers as curve_numbers
from ._toy_oos import predict_arms as predict_arms
from ._toy_oos import score_prediction as score_prediction
