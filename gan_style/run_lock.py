"""One run at a time in a folder: an exclusive lock on a file in it.

Training holds ``workdir/.lock``; catalog conversion holds one per output
folder and shard. A second run started on the same folder stops at once,
naming the process that holds it, instead of racing the first (deleting its
temporary files, rewriting its manifest). The OS drops the lock when the
process dies, kill -9 too, so a killed run never leaves a folder locked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import socket
from collections.abc import Callable, Iterator

from absl import logging

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not guarded there
    fcntl = None

_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


@contextlib.contextmanager
def held(path: pathlib.Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (created if missing) until the block ends.

    Raises ``busy(holder)`` at once if another process holds it; ``holder``
    is what that process wrote into the file ("pid 123 on host").
    """
    if fcntl is None:
        yield
        return
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            unsupported = None
        except BlockingIOError:
            handle.seek(0)
            raise busy(handle.read().strip() or "another process") from None
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise
            unsupported = e.strerror
        if unsupported is not None:
            # A file system without locks (an NFS mount without lockd, say):
            # the run goes on unguarded, as runs did before there were locks.
            logging.warning("%s: this file system takes no locks (%s); nothing stops a second run here",
                            path, unsupported)
            yield
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
