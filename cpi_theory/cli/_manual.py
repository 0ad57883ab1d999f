"""The manual printed by ``cpi-theory COMMAND --help``: the toy's configuration keys and what each command
writes. It ships inside the package (a wheel install has no docs/ folder), and the configuration table is
generated from :class:`cpi_theory.Config` itself: its keys, order and defaults come from the dataclass, the
meanings from :data:`CONFIG_MEANINGS` (a test fails when a key lacks one)."""

import dataclasses
import textwrap

from ..config._config import Config

# Config key -> (meaning, allowed values). The rules are those Config enforces (config/_config.py).
CONFIG_MEANINGS = {
    "n_answers": ("K_A: answer/context tokens in the vocabulary", "integer >= nC + nCS + nS + 2 nAug + 2"),
    "n_subjects": ("K_S: subject tokens", "integer >= nC + nCS + nS + nAug + 1"),
    "n_context_critical": ("nC: C points [c, s, r] -> c, subject not memorized", "count >= 0"),
    "n_non_context_critical": ("nCS: C+S points [c, s, r] -> c, (s, c) a memorized fact", "count >= 0"),
    "n_subject_only": ("nS: S points [s, r] -> a, (s, a) memorized", "count >= 0"),
    "n_counterfactual_augmented": ("nAug: [c, s, r] -> c where s memorized another answer", "count >= 0"),
    "delta_c": ("self-copy probability of a context token (weak copying)", "in (0, 1)"),
    "delta_m": ("probability a memorized subject puts on its answer", "in (0, 1), > 2 delta_c"),
    "o_c": ("value logit of answer tokens not otherwise set", "in [-700, 700]"),
    "o_r": ("value logit of the relation token", "in [-700, 700]"),
    "relation_score": ("rho in W_KQ(0) = rho phi(r) phi(r)^T: r's attention score at the start", "finite"),
    "lr_kq": ("learning rate of W_KQ", ">= 0"),
    "lr_v": ("learning rate of W_V (0: QK-only finetuning, the paper's setting)", ">= 0"),
    "steps": ("gradient-descent steps", "integer >= 1 (simulate)"),
    "record_every": ("record every k-th step (the last step is always recorded)", "integer >= 1"),
}


def config_keys_table(width: int = 108) -> str:
    """The configuration keys in :class:`Config` order: key, default, meaning and allowed values (wrapped
    under the meaning)."""
    rows = [(f.name, repr(f.default), *CONFIG_MEANINGS[f.name]) for f in dataclasses.fields(Config)]
    key_width = max(len(r[0]) for r in rows)
    default_width = max(len(r[1]) for r in rows)
    lines = []
    for key, default, meaning, allowed in rows:
        head = f"  {key:<{key_width}}  {default:>{default_width}}  "
        lines += textwrap.wrap(
            f"{meaning}; {allowed}", width, initial_indent=head, subsequent_indent=" " * len(head)
        )
    return "\n".join(lines)


def simulate_epilog() -> str:
    return f"""\
configuration keys (--set KEY=VALUE or a --config JSON object; default, meaning, allowed values):
{config_keys_table()}
  Counts may be real numbers (class sizes, mixture weights) with --engine reduced only. Every rule is
  checked before the run; a key that breaks one is named (exit 2).

output (--out FILE.json, or stdout with --json): one JSON object
  config                 every key above, resolved
  engine                 "full" or "reduced"
  step                   the recorded steps (every record_every-th, and the last)
  context_reliance       M_C = p(c*) / (p(c*) + p(a*)) on the counterfactual test point [c*, s*, r]
  attention_context      attention on c* at the readout of the test point
  attention_subject      attention on s*
  counterfactual_accuracy, parametric_accuracy
                         whether the argmax is c* (resp. a*) on the test point, 0 or 1
  loss                   the training loss (mean cross-entropy, nats)
  per_class              {{class: {{loss, attention_context, attention_subject, margin}}}} per data class
                         present (margin: Lemma 2's logit margin of the target)
  summary                start, peak, peak_step, final, final_step of M_C
  Without --out or --json only the summary line is printed (on stderr). --plot draws M_C, attention per
  class and the losses (PNG, PDF or SVG, from the file name).

examples:
  cpi-theory simulate --out paper_default.json --plot paper_default.png
  cpi-theory simulate --set delta_m=0.8 --set n_subject_only=5 --engine reduced --json | head"""


SWEEP_EPILOG = """\
spec (JSON or TOML):
  {"base": {KEY: value, ...}, "grid": {KEY: [values], ...}, "random": {KEY: {"uniform": [lo, hi]}},
   "n_runs": N, "seed": 0, "trajectory_every": K}
  base: configuration keys (see `cpi-theory simulate --help`); grid: every combination; random: N draws.

output: an xarray Dataset, one run per point of the grid (swept keys as coordinates): start, peak,
  peak_step, final, inversion_depth, diverged, diverged_step per run, and context_reliance every K steps
  unless trajectory_every is 0; its attributes hold the spec, the engine and computed_by (the engine path
  that ran: on a CPU the reduced engine's summaries and stored context_reliance run on its CPU kernel, the
  whole loop in vector registers, within 1e-13 of XLA's program).
  --out OUT.zarr: a Zarr store, created before the first run and filled chunk by chunk (memory bounded by a
    chunk); xarray.open_zarr reads it while the sweep runs (chunk_done: which chunks are in; complete: all).
  --out OUT.nc: netCDF, for results that fit in memory; finished chunks are kept in OUT.nc.chunks/ until
    the final write.
  --resume continues an interrupted sweep (bit-identical to an uninterrupted one). A sweep estimated at
  more than a minute prints its estimate; one estimated above 30 days is refused.

examples:
  cpi-theory sweep spec.json --out results.zarr
  cpi-theory sweep spec.json --out results.zarr --resume
  cpi-theory sweep spec.json --out results.nc"""


ADVISE_EPILOG = """\
inputs: a mixture of --n-points training points (default 20, the paper's setting): a share --cs-fraction
  of C+S points, --s-fraction of S points, the rest C points; the base model's --delta-m, --delta-c and
  optionally its --start-mc; W_V trained at --lr-v-ratio x lr_kq; the toy run for --horizon steps at
  lr_kq = 1. --from-fit REPORT.json takes delta_M, delta_C, the fractions, the start, lr_v / lr_kq and the
  horizon (the measured run's span in toy steps; none when the run had a learning-rate schedule) from the
  joint fit of `cpi-theory bridge fit`; a flag given beside it overrides the report. --target is never in
  a report: it is what you want M_C(T) to be.

the search: for each mitigation, doses on a grid (41 doses, the lr_v / lr_kq grid extended geometrically
  beyond 1 when the base ratio is larger) are simulated; the first grid cell where M_C(T) crosses the
  target is refined by root finding (brentq, to ~1e-13), and the dose found is simulated once more.
  mitigations and their doses:
  filter_cs   share of the C+S points dropped, in [0, 1] (the other points kept)
  augment     share of the C+S points replaced by counterfactual-augmented points, in [0, 1]
  lr_v_ratio  lr_v / lr_kq, from 0 (attention-only finetuning)
  add_s       S share of the points, from --s-fraction to 0.95 (C and C+S scaled down together)
  status: already met | met (the smallest dose the grid resolves) | not reachable (the best grid dose,
  marked *) | not applicable. mem. cost: closed-book recall p(a* | [s*, r]) of a held-out memorized fact at
  T, base minus dose (> 0: the dose loses memory).

output: a screen of text, or with --json one object: inputs, shape, start, peak, peak_step, at_horizon,
  target, target_met, limit {value, kind, closed_form, exponent, ...} (the late-time law), memory, and
  mitigations [{name, dose_meaning, status, dose, base_dose, dose_range, met, at_horizon, memory_recall,
  memory_cost, best_dose, dose_points, note}], notes.

examples:
  cpi-theory advise --delta-m 0.6 --delta-c 0.2 --cs-fraction 0.5 --horizon 300 --target 0.7
  cpi-theory advise --from-fit DIR/report.json --target 0.8"""


REPRODUCE_EPILOG = """\
output (in --outdir): per figure FN its data fN_*.nc (netCDF3, xarray), fN_*.png and fN_*.pdf, its entry
  index/FN.json, and INDEX.md listing every figure's command, key numbers (read back from the data) and
  notes. --only F3 updates F3's entry and keeps the others.

--check: compares every number of INDEX.md (each figure's table and notes) and every data variable and
  coordinate of fN_*.nc with those in --reference (default: figures, the repository's committed ones), at
  the figure's tolerance, relative to the largest magnitude of each variable:
    F1-F6 (exact engines, fixed grids)          1e-12
    F7 hand mitigations and fixed inputs        1e-12
    F7 optimizer outputs (designs, their M_C    1e-6  (SLSQP stops at ftol 1e-10 on M_C; the designs
       and retention)                                  it returns move by ~1e-8 between machines)
  A number printed with 4 significant digits may differ by one unit in its last digit where the exact
  value sits on a rounding edge. Prints one row per figure and exits 1 on any disagreement. Files being
  byte-identical is reported, not required: bytes are guaranteed only on the same machine and package
  versions; numbers within these tolerances anywhere.

examples:
  cpi-theory reproduce                          # every figure into figures/ (about 4 minutes on 2 cores)
  cpi-theory reproduce --check                  # regenerate into a temporary folder and compare
  cpi-theory reproduce --check --only F1,F3     # the same, two figures (about 1 minute)
  cpi-theory reproduce --check out/             # compare an already regenerated folder"""


APPENDIX_EPILOG = """\
output (in --outdir): appendix.tex (LaTeX; every equation from sympy.latex) and appendix.md (its Markdown
  rendering), with the predicted vs simulated numbers of each result; appendix.pdf when latexmk or
  pdflatex is on PATH and --no-pdf is not given. Regenerating is byte-identical. Takes about 50 s on 2
  cores (the sympy derivation and fresh simulations)."""


BRIDGE_RUN_EPILOG = """\
output (in --out): report.json and bridge.png / bridge.pdf (measured M_C with the fitted toy, attention on
  the context per layer). report.json:
  size, regime, seed, mixture, model, world
                         what was run: the options, the transformer's and the fact world's settings
  start                  measured on the pretrained model: delta_m, delta_c, context_reliance (M_C(0)),
                         parametric_accuracy, attention_context
  pretrain_seconds, finetune_seconds, wall_seconds
  real                   per measured step: context_reliance, attention_context (per layer),
                         counterfactual and parametric accuracy, the measured delta_c / delta_m, per-class
                         losses
  train_loss, class_counts, finetune
                         the finetuning loss per step, points per class, the settings used
  toy, fit, prediction, extended_fit, prediction_calibrated, measured, best_fit, holdout,
  inversion_real, inversion_toy, inversion_toy_fitted
                         the toy fitted to the measured curve, as in `cpi-theory bridge fit --help`

examples:
  cpi-theory bridge run --size tiny --out runs/tiny             # about 1.5 minutes on 2 cores
  cpi-theory bridge run --size tiny --cs-fraction 0.75 --optimizer gd --lr 0.1 --out runs/gd"""


BRIDGE_FIT_EPILOG = """\
trajectory: a CSV with a header naming step and context_reliance (other columns ignored), or JSON (an
  object with step and context_reliance lists, a bridge report, or a list of records); at least 3 points,
  steps >= 0 and strictly increasing, M_C in [0, 1].

output (in --out): report.json and fit.png / fit.pdf (the measured curve, the a-priori toy, the joint fit
  with its 95% band, and the held-out part with --fit-until). report.json:
  source                 the trajectory file read
  real                   its step and context_reliance
  prediction             the a-priori toy: parametrized from what was given (defaults elsewhere: delta_M
                         0.6, C+S fraction 0.5, delta_C from M_C(0)), its curve and summary
  toy, fit               that toy with its time scale fitted: time_scale, curve_error (RMSE), curve
  extended_fit, prediction_calibrated
                         the same with the initial attention split from M_C(0) (and lr_v / lr_kq)
  measured               the measured curve's shape, start, peak, peak_step, final, inversion
  best_fit               the joint fit: parameters {name: {value, low, high, fixed}} for delta_m,
                         delta_c, c_fraction, cs_fraction, s_fraction, context_bias, lr_v_ratio,
                         time_scale (95% intervals); free; curve_error (RMSE) on n_points; summary; step /
                         context_reliance (the toy at the measured steps); dense (a fine curve with its
                         band); uncertainty {internal, correlations, undetermined (what the curve does not
                         determine), dof}; notes; horizon; starts; fit_until; schedule
  holdout                with --fit-until: curve_error of the toy, persistence_error, smooth_error (a
                         smooth curve of equal flexibility), winner, on the held-out points
  inversion_real, inversion_toy, inversion_toy_fitted
                         whether each curve rises then falls
  mixture                the --cs-fraction and --s-fraction given (null: fitted)
  `cpi-theory advise --from-fit DIR/report.json --target M` reads it.

examples:
  cpi-theory bridge fit curve.csv --out fit/
  cpi-theory bridge fit curve.csv --out fit/ --fit-until 300 --delta-m 0.8"""


# The report of `cpi-theory forecast` (forecast.json): each top-level key and its meaning. The one statement
# of the contract: the help prints it, tests/test_forecast.py checks a report's keys against it.
FORECAST_FIELDS = {
    "schema": '"cpi_theory.forecast/1"',
    "source": "the curve file read",
    "until": "the origin: the last measured step <= --until (the points up to it are fitted)",
    "horizon": "the last forecast step",
    "data": "step, context_reliance, fitted (true for the fitted points)",
    "forecast": "per forecast step (every measured step after the origin up to the horizon, then an even grid "
    "at most the fitted part's median spacing apart): step, observed (null where not measured), median, q05, q25, q75, q95 (the "
    "posterior predictive: 50% band q25-q75, 90% band q05-q95), toy (the toy curve alone, posterior "
    "median), persistence (the last fitted value), smooth (the smooth baseline), stacked",
    "fitted": "step, median, q05, q95: the toy's posterior over the fitted part",
    "late_time_limit": "median, q05, q95 of M_C as t -> infinity (the late-time law of each of up to 200 "
    "posterior draws), kind_probability {memory, context, plateau}, p_below_start, p_below_origin_value, "
    "draws, note",
    "peak": "p_already_peaked (the toy curve's maximum over [first step, horizon] lies at or before the "
    "origin), step_median, step_q05, step_q95",
    "below": "value (--below; default the first measured value), p_ever (a predictive path goes below it "
    "at some forecast step), p_at_horizon",
    "posterior": "sampler, reference (where the tempering started: the share of a Gaussian around the "
    "least-squares fit, the rest the prior), reference_starts (the starts of that least-squares search), "
    "replicas, particles_per_replica, mutations_per_stage, stages, reached_posterior, "
    "log_evidence, final_acceptance, unique_fraction, rhat and ess per coordinate, max_rhat, min_ess, "
    "draws, parameters {delta_m, delta_c, c_fraction, cs_fraction, s_fraction, context_bias, time_scale, "
    "sigma, rho: {median, q05, q95}}, priors, noise_model, sampling_seconds",
    "stacking": "weights {toy, persistence, smooth} (least squares on the simplex, step 1/20, from "
    "forecasts made at internal origins of the fitted part), internal_origins, rmse per member there, "
    "n_points, note",
    "misspecification": "residual_rmse and residual_lag1 of the posterior-median toy on the fitted part, "
    "noise_sd (the curve's point-to-point noise from second differences), misspecified, statement",
    "holdout": "with measured points after the origin: n_points, rmse {toy (the median), persistence, smooth, "
    "stacked}, coverage50, coverage90, winner; null without",
    "seconds": "wall time of the forecast",
}


def _fields_table(fields: dict, width: int = 108) -> str:
    key_width = max(len(k) for k in fields) + 2
    lines = []
    for key, meaning in fields.items():
        head = f"  {key:<{key_width}}"
        lines += textwrap.wrap(meaning, width, initial_indent=head, subsequent_indent=" " * len(head))
    return "\n".join(lines)


FORECAST_EPILOG = f"""\
curve: a CSV with a header naming step and context_reliance (other columns ignored), or JSON (an object
  with step and context_reliance lists, a bridge report, or a list of records); steps >= 0 and strictly
  increasing, M_C in [0, 1]; at least 5 points at or before --until.

the model: the toy family of `bridge fit` (delta_M, delta_C, the C / C+S / S fractions, the initial
  attention split, the time scale; lr_v = 0) run by the differentiable minimal engine, plus a residual that
  is an Ornstein-Uhlenbeck process in the step (stationary sd sigma, correlation rho per median step gap;
  --noise white fixes rho = 0). Priors: uniform on the joint fit's boxes (delta_m U(0.05, 0.98), delta_C /
  (delta_M / 2) U(0.02, 0.98), context share U(0.05, 1), C+S share of it U(0, 1), context_bias U(-8, 8),
  log time scale uniform over four decades up to the fitted part spanning 400 toy steps), log sigma
  U(log 1e-4, log 0.5), rho U(0, 0.99). Sampled by adaptive tempered SMC (blackjax; --replicas independent
  runs of --particles particles, --mutations random-walk moves per stage); R-hat and ESS over the replicas.
  The forecast: each draw's toy plus the residual carried on from the last fitted one. Stacking: the same
  forecast made from internal origins (60% and 80% of the fitted points) and scored on the rest of the
  fitted part gives the weights of the toy median, persistence and the smooth baseline. Details:
  cpi_theory/forecast/README.md.

output (in --out): forecast.json and forecast.png / forecast.pdf (the data, the fitted part, the bands,
  the baselines, the held-out part). forecast.json:
{_fields_table(FORECAST_FIELDS)}

examples:
  cpi-theory forecast curve.csv --until 300 --out fc/                 # held-out points after 300 are scored
  cpi-theory forecast curve.csv --until 300 --horizon 1000 --below 0.75 --out fc/"""
