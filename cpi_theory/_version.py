"""The package version (one place: the top-level package and results files read it)."""

__version__ = "0.1.0"
