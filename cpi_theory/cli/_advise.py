"""``cpi-theory advise``: M_C at a horizon for a mixture, and the smallest dose of each mitigation that
brings it to a target (:func:`cpi_theory.advise.advise`); one JSON object with ``--json``, else one screen."""

import sys

from .._errors import ConfigError
from ._exit import exit_at_once_on_interrupt
from ._manual import ADVISE_EPILOG
from ._status import status

# The advisor's field names and the flags that give them: its errors name the field, the CLI the flag.
_FLAGS = {
    "delta_m": "--delta-m",
    "delta_c": "--delta-c",
    "cs_fraction": "--cs-fraction",
    "s_fraction": "--s-fraction",
    "n_points": "--n-points",
    "horizon": "--horizon",
    "target": "--target",
    "start_mc": "--start-mc",
    "lr_v_ratio": "--lr-v-ratio",
}
# Fields a --from-fit report supplies (each overridden by its flag when that is given).
_FROM_FIT = ("delta_m", "delta_c", "cs_fraction", "s_fraction", "n_points", "lr_v_ratio", "horizon")


def _number(flag: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(flag, f"must be a number, got {text!r}") from None


def _inputs(args) -> dict:
    given = {field: _number(flag, getattr(args, field)) for field, flag in _FLAGS.items()}
    if given["horizon"] is not None and not given["horizon"].is_integer():
        raise ConfigError(
            "--horizon", f"must be a positive integer number of toy steps, got {args.horizon!r}"
        )
    inputs = {}
    fit = None
    if args.from_fit:
        from ..advise import fit_inputs

        fit = fit_inputs(args.from_fit)
        inputs = {field: fit[field] for field in _FROM_FIT if fit[field] is not None}
        inputs["time_scale"] = fit["time_scale"]
        if given["start_mc"] is None:
            inputs["context_bias"] = fit["context_bias"]
    inputs.update({field: value for field, value in given.items() if value is not None})
    for field in ("delta_m", "delta_c", "cs_fraction", "horizon", "target"):
        if field not in inputs:
            raise ConfigError(_FLAGS[field], _missing(field, fit))
    if "horizon" in inputs:
        inputs["horizon"] = int(inputs["horizon"])
    return inputs


def _missing(field: str, fit: dict | None) -> str:
    """Why a required input is missing, for the way the inputs were given."""
    if field == "target":
        what = "required: the M_C wanted at the horizon, in (0, 1)"
        return what + (
            " (a --from-fit report gives the mixture and the horizon, never a target)" if fit else ""
        )
    if fit is None:
        return "required (or take it from the report of `cpi-theory bridge fit` with --from-fit REPORT.json)"
    if field == "horizon":
        return (
            "required: the --from-fit report gives no horizon (its run had a learning-rate schedule, so "
            "its steps are not toy steps at a constant rate); give --horizon in toy steps"
        )
    return "required: the --from-fit report does not give it"


def _validate(args) -> None:
    from ..advise._inputs import check_advice_inputs

    args.inputs = _inputs(args)
    try:
        check_advice_inputs(**args.inputs)
    except ConfigError as err:
        raise _with_flag(err) from None


def _with_flag(err: ConfigError) -> ConfigError:
    """The advisor's errors name its fields; the command line names the flags."""
    flag = _FLAGS.get(err.key)
    return err if flag is None else ConfigError(flag, str(err)[len(err.key) + 2 :])


def _summary(advice) -> str:
    i = advice.inputs
    sizes = i["class_sizes"]
    limit = advice.limit
    limit_text = (
        f"{limit['value']:.4f} ({limit['kind']}, closed form)"
        if limit["value"] is not None
        else f"not derived ({limit['reason']})"
    )
    memory = advice.memory
    lines = [
        f"mixture: delta_M {i['delta_m']:.4g}, delta_C {i['delta_c']:.4g}; {i['n_points']:g} points "
        f"(C {sizes['C']:.4g}, C+S {sizes['C+S']:.4g}, S {sizes['S']:.4g}); lr_v/lr_kq {i['lr_v_ratio']:g}; "
        f"start M_C {i['start_mc']:.4f} (context_bias {i['context_bias']:.4g})",
        f"M_C: {advice.shape}, peak {advice.peak:.4f} at step {advice.peak_step}; at the horizon T = "
        f"{i['horizon']}: {advice.at_horizon:.4f} (target {advice.target:g}: "
        f"{'met' if advice.target_met else 'not met'})"
        + (f"; T = {i['horizon_real_steps']:.1f} real steps of the fitted run" if "time_scale" in i else ""),
        f"limit t -> infinity: {limit_text}",
        f"memory ({memory['measure']}) at T: "
        + ("n/a" if memory["base_at_horizon"] is None else f"{memory['base_at_horizon']:.4f}"),
        "",
        f"{'mitigation':<11} {'status':<14} {'dose':>10} {'points':>7} {'M_C(T)':>9} {'mem. cost':>10}  dose is",
    ]
    for m in advice.mitigations:
        dose = m.dose if m.dose is not None else m.best_dose
        dose_text = "-" if dose is None else f"{dose:.6f}" + ("" if m.dose is not None else "*")
        value = "-" if m.at_horizon is None else f"{m.at_horizon:.6f}"
        cost = "-" if m.memory_cost is None else f"{m.memory_cost:+.3g}"
        points = "-" if m.dose_points is None else f"{m.dose_points:.3g}"
        lines.append(
            f"{m.name:<11} {m.status:<14} {dose_text:>10} {points:>7} {value:>9} {cost:>10}  {m.dose_meaning}"
        )
        if m.note:
            lines.append(f"{'':<11} note: {m.note}")
    lines.append(
        "(* not reachable: the best dose on the grid. points: the points the dose drops, replaces or makes S."
        "\n M_C(T): one more simulation at the dose; mem. cost: base memory at T minus memory at the dose)"
    )
    return "\n".join(lines)


@exit_at_once_on_interrupt("advise")
def _run(args) -> int:
    from ..advise import advise

    with status(
        "advise", "simulating the mixture and searching each mitigation's dose", "about 20 s on 2 cores"
    ):
        try:
            advice = advise(**args.inputs)
        except ConfigError as err:
            raise _with_flag(err) from None
    sys.stdout.write((advice.to_json() if args.json else _summary(advice)) + "\n")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "advise",
        help="M_C at a horizon for a mixture, and the smallest dose of each mitigation that reaches a target",
        description="Run the exact toy (lr_kq = 1) for a data mixture: the shape and peak of M_C(t), M_C at "
        "the horizon and as t -> infinity, and for each mitigation (filter C+S, counterfactual "
        "augmentation, lr_v/lr_kq, S share) the smallest dose with M_C(horizon) >= target, found by root "
        "finding and checked by one more simulation. Give --delta-m, --delta-c, --cs-fraction, --horizon "
        "and --target, or --from-fit and --target.",
        epilog=ADVISE_EPILOG,
    )
    parser.add_argument(
        "--delta-m",
        dest="delta_m",
        metavar="P",
        help="memorized-fact strength delta_M, in (0, 1), > 2 delta_C; required unless --from-fit gives it",
    )
    parser.add_argument(
        "--delta-c",
        dest="delta_c",
        metavar="P",
        help="self-copy strength delta_C, in (0, 1); required unless --from-fit gives it",
    )
    parser.add_argument(
        "--cs-fraction",
        dest="cs_fraction",
        metavar="F",
        help="C+S share of the points, in [0, 1]; required unless --from-fit gives it",
    )
    parser.add_argument(
        "--s-fraction",
        dest="s_fraction",
        metavar="F",
        help="S share of the points, in [0, 1), cs + s <= 1 (default 0)",
    )
    parser.add_argument(
        "--n-points",
        dest="n_points",
        metavar="N",
        help="training points, > 0, may be fractional (default 20, the paper's setting)",
    )
    parser.add_argument(
        "--horizon",
        metavar="T",
        help="toy steps at lr_kq = 1: an integer in [1, 1e7] (cost grows with it); required unless --from-fit "
        "gives it",
    )
    parser.add_argument(
        "--target", metavar="M", help="the M_C wanted at the horizon, in (0, 1) (met: M_C(T) >= M); required"
    )
    parser.add_argument(
        "--start-mc",
        dest="start_mc",
        metavar="M",
        help="the base model's M_C at step 0, in (0, 1) and within what delta_M, delta_C allow (default: the "
        "paper's pretrained state, attention 1/2 : 1/2)",
    )
    parser.add_argument(
        "--lr-v-ratio",
        dest="lr_v_ratio",
        metavar="R",
        help="lr_v / lr_kq of the base finetuning, >= 0 (default 0)",
    )
    parser.add_argument(
        "--from-fit",
        dest="from_fit",
        metavar="REPORT.json",
        help="take delta_M, delta_C, the fractions, the start, lr_v/lr_kq and the horizon from the report.json "
        "of `cpi-theory bridge fit` (flags given beside it override them; default: none)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the screen")
    parser.set_defaults(func=_run, validate=_validate)
