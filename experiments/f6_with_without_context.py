"""F6: Training new facts with vs without context; mixed model vs router.

``python experiments/f6_with_without_context.py [--quick] [--outdir DIR]``. The figure is defined in the
package, ``cpi_theory/figures/_f6_with_without_context.py`` (configuration, data, plot and key numbers), so
that ``cpi-theory reproduce`` works from an installed wheel; this script runs it. It also defines
``FIGURE``, ``TITLE`` and ``run``, so ``cpi-theory reproduce --experiments-dir experiments`` loads it.
"""

import sys

from cpi_theory.figures import packaged_figures, script_main

figure = packaged_figures()["F6"]

FIGURE, TITLE, run = figure.FIGURE, figure.TITLE, figure.run

if __name__ == "__main__":
    sys.exit(script_main(vars(figure)))
