"""``python -m cpi_theory.cli``: the same as the ``cpi-theory`` command."""

import sys

from ._main import main

sys.exit(main())
