"""SPEC.md §1-4: tokens and embeddings, the pretrained state, the one-layer model, its metrics, and the
full d x d engine (exact full-batch gradient descent)."""

from ._forward import ToyState as ToyState
from ._forward import attention as attention
from ._forward import context_reliance as context_reliance
from ._forward import cross_entropy as cross_entropy
from ._forward import forward as forward
from ._forward import point_losses as point_losses
from ._forward import probe_logits as probe_logits
from ._forward import relation_query as relation_query
from ._forward import training_loss as training_loss
from ._forward import value_logits as value_logits
from ._metrics import class_metrics as class_metrics
from ._metrics import metrics as metrics
from ._metrics import probe_metrics as probe_metrics
from ._pretrained import pretrained_state as pretrained_state
from ._train import FROZEN_VALUES_ENGINE as FROZEN_VALUES_ENGINE
from ._train import FULL_ENGINE as FULL_ENGINE
from ._train import FullInputs as FullInputs
from ._train import gd_step as gd_step
from ._train import train as train
from ._world import Vocabulary as Vocabulary
from ._world import World as World
from ._world import build_world as build_world
from ._world import embeddings as embeddings
from ._world import make_world as make_world
from ._world import value_table as value_table
