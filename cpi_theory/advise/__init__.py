"""The advisor: for a data mixture, where the toy's context reliance M_C stands at a horizon, its limit,
and the smallest dose of each mitigation (filtering C+S, counterfactual augmentation, the lr_v / lr_kq
ratio, the S share) that brings M_C at the horizon to a target, by root finding on the exact engine.
Behind ``cpi-theory advise`` (its ``--help`` is the manual; docs/advise.md has worked examples). Importing
it loads no JAX: the inputs are checked first, the computation is imported by :func:`advise`."""

from ._advise import advise as advise
from ._inputs import fit_inputs as fit_inputs
from ._result import MITIGATIONS as MITIGATIONS
from ._result import Advice as Advice
from ._result import Mitigation as Mitigation
