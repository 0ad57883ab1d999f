"""The ``cpi-theory`` command line: ``main`` parses the arguments and dispatches to a subcommand."""

from ._main import build_parser as build_parser
from ._main import main as main
