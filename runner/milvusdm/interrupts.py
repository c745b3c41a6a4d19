"""Ctrl-C and SIGTERM (a suspended Job's pods get SIGTERM) as ``KeyboardInterrupt``, never
raised inside a commit.

Blocking the signals around a commit is not enough: a signal delivered just before the block
is already pending in the interpreter, and its Python handler runs at the next bytecode, inside
the block. A commit cut there loses a landed batch from the checkpoint or folds it into the
digest twice (a resumed run then fails verification). So the handler itself defers: inside
``held()`` it only notes the signal, and the block's end raises it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    depth = 0  # nested held() blocks on the main thread
    pending = False  # a signal came inside one


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.depth:
        _state.pending = True
        return
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """Both signals raise ``KeyboardInterrupt``, outside ``held()`` blocks (main thread only)."""
    if _main_thread():
        for number in SIGNALS:
            signal.signal(number, _handle)


@contextmanager
def installed() -> Iterator[None]:
    """``install()`` for the block, the previous handlers restored after it."""
    if not _main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    install()
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(number, handler)


@contextmanager
def held() -> Iterator[None]:
    """Run the block whole: an interrupt that comes inside it is raised at its end."""
    if not _main_thread():  # signals are handled on the main thread only
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if not _state.depth and _state.pending:
            _state.pending = False
            raise KeyboardInterrupt
