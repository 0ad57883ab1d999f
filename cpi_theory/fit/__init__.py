"""Fitting the toy to measured context-reliance curves: below both the bridge (which measures real
transformers) and the advisor (which reads a fit's report), and usable on any curve.

- the toy parametrized from a measured start and its time scale fitted (``toy_parameters``, ``fit_curve``);
- the joint fit of every toy parameter with intervals, held-out checks and baselines (``joint_fit``), on the
  real run's learning-rate clock (``schedule_time``), against ``smooth_baseline``; its parameter-recovery
  check (``recovery_study``);
- measured curves read from CSV or JSON (``load_trajectory``).
"""

from ._fit import TOY_HORIZON as TOY_HORIZON
from ._fit import TOY_POINTS as TOY_POINTS
from ._fit import ToyParameters as ToyParameters
from ._fit import context_bias_for_start as context_bias_for_start
from ._fit import delta_c_for_start as delta_c_for_start
from ._fit import fit_curve as fit_curve
from ._fit import fit_time_scale as fit_time_scale
from ._fit import simulate_toy as simulate_toy
from ._fit import summary_record as summary_record
from ._fit import toy_parameters as toy_parameters
from ._fit import toy_start_reliance as toy_start_reliance
from ._joint import joint_fit as joint_fit
from ._joint import joint_report_fields as joint_report_fields
from ._joint import recovery_coverage as recovery_coverage
from ._joint import recovery_study as recovery_study
from ._joint import schedule_time as schedule_time
from ._joint import smooth_baseline as smooth_baseline
from ._trajectory_io import load_trajectory as load_trajectory
