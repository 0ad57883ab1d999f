"""F3: Phase diagram of the inversion depth.

``python experiments/f3_phase_diagram.py [--quick] [--outdir DIR]``. The figure is defined in the package,
``cpi_theory/figures/_f3_phase_diagram.py`` (configuration, data, plot and key numbers), so that ``cpi-
theory reproduce`` works from an installed wheel; this script runs it. It also defines ``FIGURE``, ``TITLE``
and ``run``, so ``cpi-theory reproduce --experiments-dir experiments`` loads it.
"""

import sys

from cpi_theory.figures import packaged_figures, script_main

figure = packaged_figures()["F3"]

FIGURE, TITLE, run = figure.FIGURE, figure.TITLE, figure.run

if __name__ == "__main__":
    sys.exit(script_main(vars(figure)))
