"""A bad configuration under gunicorn ends start-up once, with one line.

Every gunicorn worker builds the app itself, so with a bad configuration every worker fails to
load. gunicorn halts on the first worker that exits with "App failed to load" (4), but a second
one reaped while it halts raises the same halt again inside ``Arbiter.stop()`` and ends in a
traceback and exit status 1 (still so in gunicorn 27). So only the first worker of an arbiter
reports the error and exits 4; the others exit quietly with status 0, which the arbiter neither
reports nor halts on (while it still runs it starts a replacement, which fails the same way).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from gunicorn.errors import AppImportError

_MARKER_PREFIX = "optout-hub-config-error-"


def fail_start(message: str) -> NoReturn:
    """Stop the WSGI server's start-up with ``message``: gunicorn prints an ``AppImportError``'s
    message alone (no traceback) and exits 4."""
    if "gunicorn.arbiter" not in sys.modules or _first_to_report(os.getppid()):
        raise AppImportError(message)
    sys.exit(0)


def _first_to_report(arbiter_pid: int) -> bool:
    """True in exactly one worker of the arbiter: the one that creates the arbiter's marker."""
    directory = Path(tempfile.gettempdir())
    _remove_stale_markers(directory)
    try:
        os.close(os.open(directory / f"{_MARKER_PREFIX}{arbiter_pid}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def _remove_stale_markers(directory: Path) -> None:
    """Markers of arbiters that have exited, so a reused process id starts afresh."""
    for marker in directory.glob(f"{_MARKER_PREFIX}*"):
        pid = marker.name.removeprefix(_MARKER_PREFIX)
        if pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                marker.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
