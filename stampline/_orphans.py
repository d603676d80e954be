"""No orphans: a child stampline starts gets SIGTERM when the process that started it dies.

SIGTERM and Ctrl-C stop `stampline run`'s children through the supervisor, but a parent
killed outright (SIGKILL, the OOM killer, a CI timeout) runs no code, and its children
would keep the store lock, the metrics ports and their consumer-group membership. So each
child is started with ``preexec_fn=die_with_parent()``: between fork and exec it asks the
kernel, with ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, to be sent SIGTERM when its parent dies,
however it dies. The child then stops through its ordinary SIGTERM path (a gate commits
what it can, the recorder releases the store). The setting survives exec (but not into a
set-user-ID binary) and is not inherited by the child's own children: each parent arms its
own.

Two pitfalls, from prctl(2), and how they are met:

- The signal is sent when the *thread* that started the child exits, not the process: a
  child must be started from a thread that outlives it. The supervisor starts, restarts and
  stops its children from the one thread that runs it, and an embedded broker is stopped
  by the ``with`` block that started it.
- A parent that died before the child's ``prctl`` call is never signalled for: the child
  compares ``getppid()`` with its parent's pid afterwards and exits at once (before exec)
  if it was already re-parented.

Linux only: elsewhere (macOS, the BSDs) there is no such call, ``die_with_parent`` returns
None, and the children of a parent killed with SIGKILL keep running until stopped by hand.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (the child only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # a libc without prctl: nothing to arm
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


def die_with_parent(then: Callable[[], object] | None = None) -> Callable[[], object] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that makes the child get SIGTERM when this
    process (strictly: the calling thread) dies, then runs ``then`` (e.g. a renice).

    Call it in the process, and from the thread, that starts the child. Returns ``then``
    itself where the kernel offers no parent-death signal (not Linux).

    The returned function runs between fork and exec, in a copy of a process that may have
    other threads, so it does no more than two system calls before ``then``. It raises
    OSError in the child if prctl fails, which makes ``Popen`` fail in the parent rather
    than start a child that could be orphaned.
    """
    prctl = _prctl()
    if prctl is None:
        return then
    parent = os.getpid()

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the call above: nobody to serve
            os._exit(1)
        if then is not None:
            then()

    return arm
