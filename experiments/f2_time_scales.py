"""F2: Time scales: collapse in lr*t, and the one-step regime of Theorem 1.

``python experiments/f2_time_scales.py [--quick] [--outdir DIR]``. The figure is defined in the package,
``cpi_theory/figures/_f2_time_scales.py`` (configuration, data, plot and key numbers), so that ``cpi-theory
reproduce`` works from an installed wheel; this script runs it. It also defines ``FIGURE``, ``TITLE`` and
``run``, so ``cpi-theory reproduce --experiments-dir experiments`` loads it.
"""

import sys

from cpi_theory.figures import packaged_figures, script_main

figure = packaged_figures()["F2"]

FIGURE, TITLE, run = figure.FIGURE, figure.TITLE, figure.run

if __name__ == "__main__":
    sys.exit(script_main(vars(figure)))
