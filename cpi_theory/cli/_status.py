"""A status line for commands that compute for more than a few seconds without a progress bar of their
own: what is running, how long it usually takes, and the elapsed time (updated every second on a terminal;
one start and one end line otherwise, so logs stay short). Nothing is printed for work that ends within
``delay`` seconds: a refusal found at the start stays one line."""

import contextlib
import sys
import threading
import time


@contextlib.contextmanager
def status(verb: str, what: str, typical: str | None = None, *, stream=None, delay: float = 1.0):
    """``with status("appendix", "deriving the appendix", "about 50 s on 2 cores"): ...``"""
    stream = sys.stderr if stream is None else stream
    head = f"cpi-theory {verb}: {what}" + (f" ({typical})" if typical else "")
    live = getattr(stream, "isatty", lambda: False)()
    started = time.perf_counter()
    stop = threading.Event()
    shown = threading.Event()
    lock = threading.Lock()

    def tick():
        if stop.wait(delay):
            return
        with lock:
            stream.write(f"{head} ..." + ("" if live else "\n"))
            stream.flush()
            shown.set()
        while live and not stop.wait(1.0):
            with lock:
                stream.write(f"\r{head} ... {time.perf_counter() - started:.0f} s")
                stream.flush()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        ticker.join()
        if shown.is_set():
            elapsed = time.perf_counter() - started
            end = f"done in {elapsed:.1f} s" if ok else f"stopped after {elapsed:.1f} s"
            stream.write(f"\r{head} ... {end}\n" if live else f"cpi-theory {verb}: {end}\n")
            stream.flush()
