"""How many least-squares starts the forecast's reference needs (issue 23): the one toy forecast of the
committed backtest flagged misspecified although its truth is in the family (toy/20 fitted to step 320).

For a backtest toy curve and origins, runs the whole forecast with each number of least-squares starts of
its reference (``SMCSettings.reference_starts``; the backtest's seed 0) and prints the fitted part's residual
RMSE of the posterior's median toy beside the noise-free truth's, the residual check's verdict, and the
held-out RMSE of the median against persistence's.

    python experiments/forecast_reference_starts.py                          # toy/20 at 320: 4 and 16 starts
    python experiments/forecast_reference_starts.py --origins 160,240,320 --starts 4,8,16
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

import cpi_theory as cpi
from cpi_theory.forecast import SMCSettings, forecast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forecast_backtest import toy_curve  # noqa: E402


def _numbers(kind):
    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None
        if min(values) < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
        return values

    return parse


def rows(curve: int, origins, starts, settings: SMCSettings | None = None) -> list[dict]:
    """One row per (origin, number of starts): the forecast's residual check and held-out RMSEs."""
    settings = SMCSettings() if settings is None else settings
    steps, noisy, clean, _ = toy_curve(curve)
    out = []
    for origin in origins:
        fit = steps <= origin
        truth = float(np.sqrt(np.mean((clean[fit] - noisy[fit]) ** 2)))
        for n in starts:
            config = dataclasses.replace(settings, reference_starts=n)
            report = forecast(steps, noisy, until=origin, settings=config)
            out.append(
                {
                    "origin": origin,
                    "starts": n,
                    "truth_residual_rmse": truth,
                    "residual_rmse": report["misspecification"]["residual_rmse"],
                    "misspecified": report["misspecification"]["misspecified"],
                    "rmse": report["holdout"]["rmse"],
                    "seconds": report["seconds"],
                }
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--curve", type=int, default=20, help="backtest toy curve index (default 20)")
    parser.add_argument(
        "--origins", type=_numbers(float), default=[320.0], help="comma-separated (default 320)"
    )
    parser.add_argument(
        "--starts", type=_numbers(int), default=[4, 16], help="comma-separated (default 4,16)"
    )
    args = parser.parse_args(argv)
    cpi.enable_float64()
    print(f"toy/{args.curve:02d}, forecast seed 0, SMC defaults otherwise")
    for r in rows(args.curve, args.origins, args.starts):
        print(
            f"  until {r['origin']:g}, {r['starts']:2d} starts: fitted-part residual RMSE {r['residual_rmse']:.4f} "
            f"(the truth's {r['truth_residual_rmse']:.4f}), misspecified {r['misspecified']}; held out: median "
            f"{r['rmse']['toy']:.4f}, persistence {r['rmse']['persistence']:.4f} ({r['seconds']:.0f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
