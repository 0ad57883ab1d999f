"""How often does the exact posterior beat persistence after the peak? The posterior forecast of the
backtest's toy curves under their own law (issue 23).

The toy curves of ``forecast_backtest.py`` are drawn from a known law: the parameters uniform on
``TRUTH_BOX``, the toy time of the 400 steps uniform on 60-300, white Gaussian noise of sd uniform on
0.01-0.02, the values clipped to [0, 1]. The backtest scores a forecast at the origins after the truth's peak
(the issue's target: the posterior median beats persistence, the last fitted value, at >= 90% of them). This
script computes the *oracle*: the posterior predictive of the held-out noisy values under that very law,
given the fitted points *and* that the curve peaked before the origin (the event that selects the scored
origins), so it knows more than any forecast of a live run. Its median is the issue's statistic; its mean is
the forecast of least expected squared error. Each is scored as the backtest scores ``cpi-theory
forecast`` (RMSE against the noisy held-out points):

- on the backtest's 24 toy curves (its 27 after-peak origins), beside the backtest's own result;
- on more curves drawn by the same law (``toy_curve(index)`` for the next indices), for the rate in the
  population, with a 95% interval from resampling whole curves.

A count of wins is not a squared error: a hedge toward persistence can win more often while forecasting
worse, and the report shows one (halfway between persistence and the oracle's mean).

The posterior is computed by adaptive importance sampling (population Monte Carlo), independent of
``cpi_theory.forecast``'s sampler and priors: a bank of prior draws locates the mode (its 100 best by
likelihood); then rounds of draws from a defensive mixture (10% the prior box, 90% a multivariate t with 5
degrees of freedom, its shape twice the weighted covariance of the previous round) are weighted by prior x
likelihood / proposal; the last round gives the estimate and its effective sample size (ESS; while it is
under 500, up to 4 more rounds of the last size follow). The noise sd is integrated over its law (midpoint
rule, 21 cells); clipped points (at 0 or 1) count with the probability of the clipped tail, and the forecast
is of the clipped value. ``tests/test_forecast_oracle.py`` checks the sampler on a linear-Gaussian model
against the closed form, the likelihood, the clipped predictive and the peak rule against independent
computations, and reads the committed run back.

    python experiments/forecast_oracle.py --out figures/forecast              # the committed run (24 min)
    python experiments/forecast_oracle.py --out /tmp/oracle --curves 3 --rounds 2000,4000   # a quick look

Results stream into ``OUT/.oracle_partial.jsonl`` (a killed run resumes; rows made with other settings are
not reused); at the end ``OUT/oracle.json`` and ``OUT/oracle.md``.
"""

import argparse
import functools
import json
import math
import pathlib
import sys
import time

import numpy as np
from scipy import stats
from scipy.special import logsumexp, ndtr

import cpi_theory as cpi
from cpi_theory.forecast import make_problem, toy_curves

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import forecast_backtest as bt  # noqa: E402

STEPS = bt.TOY_STEPS
LAW_NAMES = (*bt.TRUTH_BOX, "toy_time")
LOWER = np.array([bt.TRUTH_BOX[n][0] for n in bt.TRUTH_BOX] + [60.0])
UPPER = np.array([bt.TRUTH_BOX[n][1] for n in bt.TRUTH_BOX] + [300.0])
# the noise sd's law U(0.01, 0.02), integrated by the midpoint rule on 21 cells
NOISE_GRID = bt.TOY_NOISE[0] + (np.arange(21) + 0.5) * (bt.TOY_NOISE[1] - bt.TOY_NOISE[0]) / 21
BACKTEST_CURVES = bt.TOY_CURVES
DEFAULT_ROUNDS = (8000, 8000, 8000, 24000)
BANK = 20000
T_DOF = 5.0
DEFENSIVE = 0.1  # the prior's share of each round's proposal: keeps the weights bounded
MIN_ESS = 500  # below this after the rounds, more rounds of the last size follow ...
MAX_EXTRA = 4  # ... at most this many


@functools.cache
def _toy_problem():
    return make_problem(STEPS, np.zeros_like(STEPS), STEPS)  # as toy_curve makes it; built once


def toy_of(u: np.ndarray) -> np.ndarray:
    """The noise-free toy curves (``(draws, 41)``) of draws ``u`` of the law (``LAW_NAMES``)."""
    problem = _toy_problem()
    x = np.zeros((u.shape[0], len(problem.names)))
    for j, name in enumerate(bt.TRUTH_BOX):
        x[:, problem.names.index(name)] = u[:, j]
    x[:, problem.names.index("log_time_scale")] = np.log(u[:, -1] / 400.0)  # as toy_curve draws it
    # padded to whole blocks of 512 draws: one compiled program serves every call (each block width compiles
    # its own, ~10 s)
    rows = x.shape[0]
    x = np.concatenate([x, np.repeat(x[:1], -rows % 512, axis=0)])
    return toy_curves(problem, x, STEPS)[:rows]


def log_likelihood_terms(curves: np.ndarray, y: np.ndarray, noise_grid: np.ndarray) -> np.ndarray:
    """log p(y | curve, sd) for each draw and each sd of ``noise_grid``: ``(draws, grid)``. The data are the
    curve plus white Gaussian noise, clipped to [0, 1] as ``toy_curve`` makes them: a point at 0 or 1 has
    the probability of the clipped tail, the others their density."""
    inside = (y > 0.0) & (y < 1.0)
    squares = ((curves[:, inside] - y[inside]) ** 2).sum(axis=1)
    k = int(inside.sum())
    terms = -0.5 * squares[:, None] / noise_grid**2 - k * np.log(noise_grid) - 0.5 * k * math.log(2 * math.pi)
    for j in np.flatnonzero(~inside):
        z = (y[j] - curves[:, j])[:, None] / noise_grid
        terms = terms + (stats.norm.logcdf(z) if y[j] <= 0.0 else stats.norm.logsf(z))
    return terms


def log_likelihood(curves: np.ndarray, y: np.ndarray, noise_grid: np.ndarray) -> np.ndarray:
    """log p(y | curve) per draw, the noise sd uniform over ``noise_grid`` (integrated)."""
    return logsumexp(log_likelihood_terms(curves, y, noise_grid), axis=1) - math.log(noise_grid.size)


def peaked_before(curves: np.ndarray, origin: float) -> np.ndarray:
    """Whether each noise-free curve (at ``STEPS``) peaks before ``origin``, by ``forecast_backtest.peak_step``'s
    rule (a maximum after step 0, at least 0.01 above the start): the event that selects the scored origins."""
    k = np.argmax(curves, axis=1)
    rises = (k > 0) & (curves[np.arange(k.size), k] - curves[:, 0] >= 0.01)
    return rises & (STEPS[k] < origin)


def clipped_mean(f, s):
    """E[clip(f + e, 0, 1)] for e ~ N(0, s^2) (elementwise)."""
    a, b = -f / s, (1.0 - f) / s
    return f * (ndtr(b) - ndtr(a)) + s * (stats.norm.pdf(a) - stats.norm.pdf(b)) + ndtr(-b)


def predictive_mean_median(
    curves: np.ndarray, joint: np.ndarray, noise_grid: np.ndarray, iterations: int = 40
):
    """Mean and median of the clipped noisy observation at each column of ``curves`` (``(draws, steps)``)
    under ``joint`` weights over (draw, sd) (``(draws, grid)``, summing to 1). The median of the clipped
    value is the clipped median (clipping is monotone); the unclipped median solves sum w Phi((m - f) / s)
    = 1/2, by bisection."""
    mass = joint.sum(axis=1)
    order = np.argsort(mass)[::-1]
    keep = order[: int(np.searchsorted(np.cumsum(mass[order]), 1.0 - 1e-10)) + 1]  # all but 1e-10 of the mass
    f, w = curves[keep][:, :, None], joint[keep][:, None, :]
    mean = np.sum(w * clipped_mean(f, noise_grid), axis=(0, 2))
    lo, hi = np.full(curves.shape[1], -1.0), np.full(curves.shape[1], 2.0)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = np.sum(w * ndtr((mid[None, :, None] - f) / noise_grid), axis=(0, 2)) < 0.5
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return mean, np.clip(0.5 * (lo + hi), 0.0, 1.0)


def importance_posterior(
    curve_fn,
    lower,
    upper,
    y_fit,
    fit,
    rng,
    *,
    rounds=DEFAULT_ROUNDS,
    bank=BANK,
    noise_grid=NOISE_GRID,
    min_ess=MIN_ESS,
    max_extra=MAX_EXTRA,
    given=None,
):
    """Population Monte Carlo for a uniform prior on the box ``[lower, upper]``, conditioned on the data
    ``y_fit`` at the columns ``fit`` and, if ``given`` is set, on the event ``given(curves)`` (a boolean per
    draw): draws ``u``, their curves (``curve_fn(u)``, all steps), normalized weights, the effective sample
    size of the last round and the number of extra rounds run (while that ESS was under ``min_ess``, at
    most ``max_extra``)."""

    def log_target(curves):
        log_l = log_likelihood(curves[:, fit], y_fit, noise_grid)
        return log_l if given is None else np.where(given(curves), log_l, -np.inf)

    dim = lower.size
    spread = np.diag((upper - lower) ** 2)
    log_volume = float(np.sum(np.log(upper - lower)))
    u = rng.uniform(lower, upper, (bank, dim))
    best = u[np.argsort(log_target(curve_fn(u)))[-100:]]
    mean, cov = best.mean(axis=0), np.cov(best.T) + 1e-6 * spread
    sizes, extra, ess = list(rounds), 0, 0.0
    while sizes or (ess < min_ess and extra < max_extra):
        if sizes:
            size = sizes.pop(0)
        else:
            size, extra = rounds[-1], extra + 1
        t = stats.multivariate_t(loc=mean, shape=2.0 * cov, df=T_DOF, seed=rng)
        n_t = int(rng.binomial(size, 1.0 - DEFENSIVE))
        u = np.concatenate([t.rvs(n_t).reshape(-1, dim), rng.uniform(lower, upper, (size - n_t, dim))])
        u = u[np.all((u >= lower) & (u <= upper), axis=1)]
        curves = curve_fn(u)
        log_q = np.logaddexp(math.log(DEFENSIVE) - log_volume, math.log(1.0 - DEFENSIVE) + t.logpdf(u))
        log_w = log_target(curves) - log_volume - log_q
        if not np.isfinite(log_w).any():
            raise RuntimeError("importance_posterior: no draw of this round meets the condition")
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
        mean = w @ u
        centred = u - mean
        cov = centred.T @ (centred * w[:, None])
        cov = 0.5 * (cov + cov.T) + 1e-6 * spread
        ess = float(1.0 / np.sum(w**2))
    return u, curves, w, ess, extra


def oracle_row(index: int, origin: float, rounds, seed: int) -> dict:
    steps, noisy, clean, _ = bt.toy_curve(index)
    fit = steps <= origin
    held = ~fit
    started = time.perf_counter()
    rng = np.random.default_rng([seed, index, int(origin)])
    # The scored origins are those after the truth's peak: the posterior is conditioned on that event too,
    # so that the oracle is the best forecast of the set it is scored on (it knows more than any forecast of
    # a live run can).
    _, curves, w, ess, extra = importance_posterior(
        toy_of, LOWER, UPPER, noisy[fit], fit, rng, rounds=rounds, given=lambda c: peaked_before(c, origin)
    )
    terms = log_likelihood_terms(curves[:, fit], noisy[fit], NOISE_GRID)
    joint = w[:, None] * np.exp(terms - logsumexp(terms, axis=1, keepdims=True))
    mean, median = predictive_mean_median(curves[:, held], joint, NOISE_GRID)
    persistence = float(noisy[fit][-1])
    return {
        "curve": f"toy/{index:02d}",
        "index": index,
        "in_backtest": index < BACKTEST_CURVES,
        "origin": origin,
        "ess": ess,
        "extra_rounds": extra,
        "seconds": time.perf_counter() - started,
        "rmse": {
            "oracle_median": bt.rmse(median, noisy[held]),
            "oracle_mean": bt.rmse(mean, noisy[held]),
            "persistence": bt.rmse(persistence, noisy[held]),
            "truth": bt.rmse(clean[held], noisy[held]),
        },
        "rmse_truth": {
            "oracle_median": bt.rmse(median, clean[held]),
            "oracle_mean": bt.rmse(mean, clean[held]),
            "persistence": bt.rmse(persistence, clean[held]),
        },
        "arrays": {
            "step": steps[held].tolist(),
            "observed": noisy[held].tolist(),
            "truth": clean[held].tolist(),
            "oracle_median": median.tolist(),
            "oracle_mean": mean.tolist(),
            "persistence": persistence,
        },
    }


def after_peak_origins(index: int) -> list[float]:
    steps, noisy, clean, _ = bt.toy_curve(index)
    curve = {"steps": steps, "values": noisy, "truth": clean, "group": "toy"}
    peak = bt.peak_step(curve)
    return [o for o in bt.origins(curve) if peak is not None and o > peak]


def curve_bootstrap(rows: list[dict], won: list[bool], draws: int = 4000, seed: int = 0) -> list[float]:
    """95% percentile interval of the share of wins, resampling whole curves (the origins of one curve
    share its noise and parameters: they are not independent)."""
    groups: dict[str, list[bool]] = {}
    for row, w in zip(rows, won, strict=True):
        groups.setdefault(row["curve"], []).append(bool(w))
    if not groups:
        return [0.0, 1.0]
    counts = np.array([len(g) for g in groups.values()])
    wins = np.array([sum(g) for g in groups.values()])
    pick = np.random.default_rng(seed).integers(0, counts.size, (draws, counts.size))
    share = wins[pick].sum(axis=1) / counts[pick].sum(axis=1)
    return [float(np.quantile(share, 0.025)), float(np.quantile(share, 0.975))]


def halfway_rmse(row: dict) -> float:
    """RMSE of the forecast halfway between persistence and the oracle's mean (a hedge toward persistence)."""
    a = row["arrays"]
    halfway = 0.5 * (np.asarray(a["oracle_mean"]) + a["persistence"])
    return bt.rmse(halfway, a["observed"])


FORECASTS = ("oracle_median", "oracle_mean", "truth")


def summarize(rows: list[dict], backtest_rows: list[dict] | None = None) -> dict:
    def block(selected):
        n = len(selected)
        out = {"origins": n, "curves": len({r["curve"] for r in selected})}
        for name in FORECASTS:
            won = [r["rmse"][name] < r["rmse"]["persistence"] for r in selected]
            out[name] = {"beats_persistence": sum(won), "share": sum(won) / n if n else None}
            out[name]["curve_bootstrap95"] = curve_bootstrap(selected, won)
        out["halfway"] = {
            "beats_persistence": sum(halfway_rmse(r) < r["rmse"]["persistence"] for r in selected)
        }
        out["mean_rmse"] = {
            **{m: float(np.mean([r["rmse"][m] for r in selected])) for m in (*FORECASTS, "persistence")},
            "halfway": float(np.mean([halfway_rmse(r) for r in selected])),
        }
        out["median_closer_to_truth"] = sum(
            r["rmse_truth"]["oracle_median"] < r["rmse_truth"]["persistence"] for r in selected
        )
        out["min_ess"] = min((r["ess"] for r in selected), default=None)
        out["losses"] = [
            f"{r['curve']}@{r['origin']:g}"
            for r in selected
            if not r["rmse"]["oracle_median"] < r["rmse"]["persistence"]
        ]
        return out

    out = {"backtest_curves": block([r for r in rows if r["in_backtest"]]), "all_curves": block(rows)}
    if backtest_rows is not None:
        scored = {
            (r["curve"], r["origin"]): r for r in backtest_rows if r["group"] == "toy" and r["after_peak"]
        }
        same = [r for r in rows if (r["curve"], r["origin"]) in scored]
        won = {key: r["rmse"]["toy"] < r["rmse"]["persistence"] for key, r in scored.items()}
        out["cpi_theory_forecast"] = {
            "origins": len(same),
            "beats_persistence": sum(won[(r["curve"], r["origin"])] for r in same),
            "losses": [f"{c}@{o:g}" for (c, o), w in won.items() if not w],
            "same_outcome_as_oracle_median": sum(
                won[(r["curve"], r["origin"])] == (r["rmse"]["oracle_median"] < r["rmse"]["persistence"])
                for r in same
            ),
            "mean_rmse": float(np.mean([scored[(r["curve"], r["origin"])]["rmse"]["toy"] for r in same])),
            "oracle_median_mean_rmse": float(np.mean([r["rmse"]["oracle_median"] for r in same])),
        }
    return out


def write_markdown(summary: dict, meta: dict, path: pathlib.Path) -> None:
    def line(name, b):
        cells = []
        for forecast in FORECASTS:
            f = b[forecast]
            lo, hi = f["curve_bootstrap95"]
            cells.append(f"{f['beats_persistence']}/{b['origins']} ({f['share']:.0%}; {lo:.0%}-{hi:.0%})")
        return (
            f"| {name} | {b['origins']} ({b['curves']} curves) | "
            + " | ".join(cells)
            + f" | {b['min_ess']:.0f} |"
        )

    a, k = summary["all_curves"], summary["backtest_curves"]
    m = a["mean_rmse"]
    lines = [
        "# The exact posterior forecast of the toy curves under their own law (issue 23)",
        "",
        f"Made by `{meta['command']}` ({meta['minutes']:.0f} min on the 2-core machine); importance sampling "
        f"rounds {meta['rounds']}. Every number is read from `oracle.json` (`tests/test_forecast_oracle.py` "
        "recomputes it from the rows).",
        "",
        "Origins after the truth's peak; each forecast beats persistence (the last fitted value) when its RMSE "
        "against the noisy held-out points is lower, as the backtest scores `cpi-theory forecast`. *oracle*: the "
        "posterior predictive under the law that drew the curves, also told that the curve has peaked before "
        "the origin (the event that selects these origins); its *median* is the issue's statistic, its *mean* "
        "the forecast of least expected squared error. *truth*: the noise-free curve itself (knowing the "
        "parameters exactly, which no forecast can). In brackets: the share and its 95% interval from "
        "resampling whole curves.",
        "",
        "| curves | origins after the peak | oracle median beats persistence | oracle mean | truth | min ESS |",
        "|---|---:|---:|---:|---:|---:|",
        line(f"the backtest's {BACKTEST_CURVES} toy curves", k),
        line(f"toy curves 0-{meta['curves'] - 1}, drawn by the same law", a),
        "",
        f"The oracle median's losses on the backtest's curves: {', '.join(k['losses']) or 'none'}.",
        f"Mean RMSE over the {a['origins']} origins: oracle median {m['oracle_median']:.4f}, oracle mean "
        f"{m['oracle_mean']:.4f}, persistence {m['persistence']:.4f}, truth {m['truth']:.4f}. A hedge halfway "
        f"between persistence and the oracle's mean beats persistence at {a['halfway']['beats_persistence']}/"
        f"{a['origins']}, with a worse mean RMSE ({m['halfway']:.4f}): a count of wins rewards hedging toward "
        "persistence, so it is read beside the RMSE.",
    ]
    if "cpi_theory_forecast" in summary:
        c = summary["cpi_theory_forecast"]
        lines.append(
            f"`cpi-theory forecast` (`backtest.json`) at the same origins: beats persistence at "
            f"{c['beats_persistence']}/{c['origins']}, losses {', '.join(c['losses']) or 'none'}; the same "
            f"outcome as the oracle median at {c['same_outcome_as_oracle_median']}/{c['origins']}; mean RMSE "
            f"{c['mean_rmse']:.4f} against the oracle median's {c['oracle_median_mean_rmse']:.4f}."
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--curves",
        type=int,
        default=150,
        help="toy curves 0..N-1 (default 150; the first 24 are the backtest's)",
    )
    parser.add_argument(
        "--rounds", default=",".join(map(str, DEFAULT_ROUNDS)), help="draws per importance round"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rounds = tuple(int(v) for v in args.rounds.split(","))
    except ValueError:
        parser.error(f"--rounds: must be comma-separated integers, got {args.rounds!r}")
    if not rounds or min(rounds) < 100:
        parser.error(f"--rounds: each round must have at least 100 draws, got {args.rounds!r}")
    if args.curves < 1:
        parser.error(f"--curves: must be >= 1, got {args.curves}")
    cpi.enable_float64()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".oracle_partial.jsonl"
    tag = f"oracle 2 (peak-conditioned median), rounds {','.join(map(str, rounds))}, seed {args.seed}"
    done = bt.read_partial(partial, tag, lambda row: (row["index"], row["origin"]))
    jobs = [(i, o) for i in range(args.curves) for o in after_peak_origins(i)]
    rows = []
    for k, (index, origin) in enumerate(jobs):
        if (index, origin) in done:
            rows.append(done[(index, origin)])
            continue
        row = {**oracle_row(index, origin, rounds, args.seed), "settings": tag}
        rows.append(row)
        bt.append_partial(partial, row)
        r = row["rmse"]
        print(
            f"[{k + 1}/{len(jobs)}] {row['curve']} @ {origin:g}: oracle median {r['oracle_median']:.4f} persistence "
            f"{r['persistence']:.4f} (ESS {row['ess']:.0f}, {row['seconds']:.0f} s)",
            flush=True,
        )
    backtest = out / "backtest.json"
    backtest_rows = json.loads(backtest.read_text())["rows"] if backtest.exists() else None
    summary = summarize(rows, backtest_rows)
    meta = {
        "command": "python experiments/forecast_oracle.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "minutes": sum(r["seconds"] for r in rows) / 60.0,
        "rounds": list(rounds),
        "curves": args.curves,
        "settings": tag,
    }
    (out / "oracle.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1) + "\n"
    )
    write_markdown(summary, meta, out / "oracle.md")
    print(f"wrote {out / 'oracle.json'} and {out / 'oracle.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
