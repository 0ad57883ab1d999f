"""The figures F1-F7: their definitions (``_f1_inversion`` ... ``_f7_designed_mixtures``), the shared
style (``_plotting``), byte-stable data files and ``reproduce``, which runs them and writes ``INDEX.md``.

Only the light pieces are re-exported here: importing :mod:`cpi_theory` imports this package, and the
figure modules pull in matplotlib and xarray.
"""

from ._data import load_dataset as load_dataset
from ._data import save_dataset as save_dataset
from ._data import write_figure_data as write_figure_data
from ._reproduce import packaged_figures as packaged_figures
from ._reproduce import reproduce as reproduce
from ._reproduce import script_main as script_main
from ._reproduce import write_index as write_index
