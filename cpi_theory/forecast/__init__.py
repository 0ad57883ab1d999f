"""Forecasting a finetuning run's context-reliance curve from its first checkpoints: the toy family's
posterior (stated priors, a residual process with its scale estimated, blackjax tempered SMC through the
minimal engine, NUTS as the reference), its posterior predictive with 50% / 90% bands, the late-time limit,
the probability that the curve has already peaked or will fall below a value, and the baselines
(persistence, a smooth curve) with stacking weights; above ``cpi_theory.fit``, below the CLI.
"""

from ._forecast import SCHEMA as SCHEMA
from ._forecast import check_forecast_inputs as check_forecast_inputs
from ._forecast import forecast as forecast
from ._forecast import forecast_steps as forecast_steps
from ._forecast import predictive as predictive
from ._forecast import stacking_weights as stacking_weights
from ._model import PRIOR_TEXT as PRIOR_TEXT
from ._model import Problem as Problem
from ._model import make_problem as make_problem
from ._model import natural_parameters as natural_parameters
from ._model import toy_curves as toy_curves
from ._plot import draw_forecast as draw_forecast
from ._plot import plot_forecast as plot_forecast
from ._sampler import Posterior as Posterior
from ._sampler import SMCSettings as SMCSettings
from ._sampler import nuts_posterior as nuts_posterior
from ._sampler import smc_posteriors as smc_posteriors
