"""SPEC.md §5 as code (the paper's lemmas, propositions and theorem) and what the paper left open (the
gradient flow, the peak, the late-time plateau and the late-time law of every mixture, the phase boundary,
the lr_v / lr_kq effect), with the generated appendix. Each result is a frozen dataclass with named fields (``.holds`` where a claim is
checked); the peak and the lr_v / lr_kq effect are the one :class:`cpi_theory.engine.Summary`."""

from ._analysis import Plateau as Plateau
from ._analysis import PlateauExpressions as PlateauExpressions
from ._analysis import inversion_depth as inversion_depth
from ._analysis import inversion_peak as inversion_peak
from ._analysis import mc_trajectory as mc_trajectory
from ._analysis import phase_boundary as phase_boundary
from ._analysis import plateau as plateau
from ._analysis import plateau_expressions as plateau_expressions
from ._analysis import value_rate_effect as value_rate_effect
from ._flow import FlowPeak as FlowPeak
from ._flow import FlowSolution as FlowSolution
from ._flow import flow_peak as flow_peak
from ._flow import gradient_flow as gradient_flow
from ._late_time import LateTimeExpressions as LateTimeExpressions
from ._late_time import LateTimeLaw as LateTimeLaw
from ._late_time import infinite_horizon_boundary as infinite_horizon_boundary
from ._late_time import late_time_expressions as late_time_expressions
from ._late_time import late_time_law as late_time_law
from ._late_time import saturation_amplitudes as saturation_amplitudes
from ._paper import Assumptions as Assumptions
from ._paper import Lemma3ValueLogits as Lemma3ValueLogits
from ._paper import Lemma4Margins as Lemma4Margins
from ._paper import Lemma4Values as Lemma4Values
from ._paper import Proposition2 as Proposition2
from ._paper import Proposition3 as Proposition3
from ._paper import Theorem1 as Theorem1
from ._paper import check_assumptions as check_assumptions
from ._paper import eta_star as eta_star
from ._paper import lemma3_value_logits as lemma3_value_logits
from ._paper import lemma4_margins as lemma4_margins
from ._paper import lemma4_values as lemma4_values
from ._paper import proposition2 as proposition2
from ._paper import proposition3 as proposition3
from ._paper import shared_direction_gradient as shared_direction_gradient
from ._paper import theorem1 as theorem1
