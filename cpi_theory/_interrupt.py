"""Ctrl-C that is never lost: a SIGINT handler that remembers the request as well as raising.

Python runs a signal handler between bytecodes of whatever code is executing; when that is a garbage
collection callback (JAX installs one), the ``KeyboardInterrupt`` it raises is printed as "Exception
ignored" and swallowed, and a sweep would run on to the end. The CLI installs :func:`install`; the loops
that wait for results (:func:`cpi_theory.simulation.wait_for`, the sweep's chunk loop) call
:func:`raise_if_interrupted`, which raises the request again at a point where it cannot be swallowed.
"""

import signal
import threading

_requested = False


def _handler(signum, frame):
    global _requested
    _requested = True
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT by remembering it and raising ``KeyboardInterrupt``; outside the main thread (where
    Python delivers no signal) nothing is installed."""
    global _requested
    _requested = False
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived since :func:`install` (even one that was swallowed)."""
    if _requested:
        raise KeyboardInterrupt
