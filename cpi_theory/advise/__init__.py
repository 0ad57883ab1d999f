"""The advisor: for a data mixture, where the toy's context reliance M_C stands at a horizon, its limit,
and the smallest dose of each mitigation (filtering C+S, counterfactual augmentation, the lr_v / lr_kq
ratio, the S share) that brings M_C at the horizon to a target, by root finding on the exact engine.
Behind ``cpi-theory advise``; see docs/advise.md."""

from ._advise import MITIGATIONS as MITIGATIONS
from ._advise import Advice as Advice
from ._advise import Mitigation as Mitigation
from ._advise import advise as advise
from ._inputs import fit_inputs as fit_inputs
