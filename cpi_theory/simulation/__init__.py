"""One configuration through a named engine: the engine registry and :func:`simulate`."""

from ._registry import ENGINES as ENGINES
from ._registry import RegisteredEngine as RegisteredEngine
from ._registry import get_engine as get_engine
from ._simulate import check_finite as check_finite
from ._simulate import check_precision as check_precision
from ._simulate import simulate as simulate
