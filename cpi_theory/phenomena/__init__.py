"""SPEC.md §7 in the toy model: batched runs for the mitigations, learning vs self-aligning (Ren et al.),
with vs without context (Lee et al.), and the statistics they report."""

from ._batch import kl_divergence as kl_divergence
from ._batch import pad_world as pad_world
from ._batch import partial_correlation as partial_correlation
from ._batch import rank_correlation as rank_correlation
from ._batch import stack_worlds as stack_worlds
from ._batch import train_batch as train_batch
