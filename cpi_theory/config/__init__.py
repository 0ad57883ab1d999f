"""The configuration of the toy model (``Config``) and the data-class vocabulary (``DataClass``)."""

from ._config import Config as Config
from ._config import read_json_file as read_json_file
from ._config import resolve_config as resolve_config
from ._data_class import DATA_CLASSES as DATA_CLASSES
from ._data_class import DataClass as DataClass
