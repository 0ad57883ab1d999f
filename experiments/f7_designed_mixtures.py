"""F7: Mixtures designed by gradient: M_C(T) vs memory retention, against the hand mitigations.

``python experiments/f7_designed_mixtures.py [--quick] [--outdir DIR]``. The figure is defined in the
package, ``cpi_theory/figures/_f7_designed_mixtures.py`` (admissible set, optimizer, data, plot and key
numbers), so that ``cpi-theory reproduce`` works from an installed wheel; this script runs it. It also
defines ``FIGURE``, ``TITLE`` and ``run``, so ``cpi-theory reproduce --experiments-dir experiments`` loads it.
"""

import sys

from cpi_theory.figures import _f7_designed_mixtures as figure
from cpi_theory.figures import script_main

FIGURE, TITLE, run = figure.FIGURE, figure.TITLE, figure.run

if __name__ == "__main__":
    sys.exit(script_main(vars(figure)))
