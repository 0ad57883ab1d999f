"""Leaving at once on Ctrl-C, for the subcommands that run long computations (simulate, sweep)."""

import functools
import os
import sys


def exit_at_once_on_interrupt(command: str):
    """Decorate a subcommand: on Ctrl-C, print ``cpi-theory <command>: interrupted`` and end the process
    with status 130 now. A computation XLA is still running would hold the interpreter's exit until it is
    done; the subcommands write every file atomically, so nothing partial is left."""

    def decorate(work):
        @functools.wraps(work)
        def run(args) -> int:
            try:
                return work(args)
            except KeyboardInterrupt:
                print(f"cpi-theory {command}: interrupted", file=sys.stderr)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(130)

        return run

    return decorate
