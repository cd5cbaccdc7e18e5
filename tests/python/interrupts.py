"""Child processes that receive Ctrl-C as at a terminal.

A process started in the background by a non-interactive shell (``cmd &``, as CI runners
and ``nohup`` jobs do) inherits SIGINT *ignored*, and Python then installs no
KeyboardInterrupt handler, so a test that sends SIGINT to a child would see it run to the
end. ``sigint_as_at_a_terminal`` is a ``preexec_fn`` that restores the default disposition
in the child before it starts Python, which then handles SIGINT as a user's shell gives it.
"""
from __future__ import annotations

import signal


def sigint_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
