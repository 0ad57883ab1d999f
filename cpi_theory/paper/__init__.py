"""SPEC.md §5 as code (the paper's lemmas, propositions and theorem) and what the paper left open (the
gradient flow, the peak, the late-time plateau, the phase boundary, the lr_v / lr_kq effect), with the
generated appendix."""

from ._analysis import inversion_peak as inversion_peak
from ._analysis import phase_boundary as phase_boundary
from ._analysis import plateau as plateau
from ._analysis import value_rate_effect as value_rate_effect
from ._flow import flow_peak as flow_peak
from ._flow import gradient_flow as gradient_flow
from ._paper import check_assumptions as check_assumptions
from ._paper import eta_star as eta_star
from ._paper import lemma3_value_logits as lemma3_value_logits
from ._paper import lemma4_margins as lemma4_margins
from ._paper import lemma4_values as lemma4_values
from ._paper import proposition2 as proposition2
from ._paper import proposition3 as proposition3
from ._paper import shared_direction_gradient as shared_direction_gradient
from ._paper import theorem1 as theorem1
