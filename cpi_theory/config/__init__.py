"""The configuration of the toy model (``Config``), the typed parameters of runs (``ToyParams``, one run or
columns of many), the one rule table both are checked by (``RULES``) and the data-class vocabulary
(``DataClass``)."""

from ._config import Config as Config
from ._config import read_json_file as read_json_file
from ._config import resolve_config as resolve_config
from ._data_class import DATA_CLASSES as DATA_CLASSES
from ._data_class import DataClass as DataClass
from ._params import PARAM_KEYS as PARAM_KEYS
from ._params import ClassSizes as ClassSizes
from ._params import ToyParams as ToyParams
from ._rules import CLASS_COUNT_KEYS as CLASS_COUNT_KEYS
from ._rules import INTEGER_CLASS_COUNT_RULES as INTEGER_CLASS_COUNT_RULES
from ._rules import RULES as RULES
from ._rules import Rule as Rule
