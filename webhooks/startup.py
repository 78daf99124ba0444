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
    marker = directory / f"{_MARKER_PREFIX}{_identity(arbiter_pid)}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def _remove_stale_markers(directory: Path) -> None:
    """Markers of arbiters that are gone, so a reused process id (a restarted container's
    gunicorn is often process 1 again) starts afresh."""
    for marker in directory.glob(f"{_MARKER_PREFIX}*"):
        pid = marker.name.removeprefix(_MARKER_PREFIX).split(".", 1)[0]
        if pid.isdigit() and marker.name != f"{_MARKER_PREFIX}{_identity(int(pid))}":
            with contextlib.suppress(OSError):
                marker.unlink()


def _identity(pid: int) -> str:
    """A running process as ``<pid>.<boot id>.<start time>`` where Linux tells them, so that a
    process that reused the id is another one; ``gone`` once it has exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return str(pid)
    started = stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counting "pid (comm)" as 1-2
    return f"{pid}.{boot}.{started}"
