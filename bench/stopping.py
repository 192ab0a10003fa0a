"""Benchmarks stop what they started, however they are stopped.

``on_signals_exit()`` turns SIGTERM (a ``timeout``, a CI job's cancel) and a
second Ctrl-C into an ordinary ``SystemExit``, so every ``finally`` and
``with Stack(...)`` runs and no server or embedded Redis is left behind.
"""
import signal
import sys


def on_signals_exit() -> None:
    """Make SIGTERM and SIGINT raise ``SystemExit`` (exit status 128 + signal)."""

    def _exit(signum, _frame):
        # Ignore repeats while we unwind: stopping must finish.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
