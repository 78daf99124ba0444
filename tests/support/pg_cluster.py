"""A private PostgreSQL server for one test: ``initdb`` in a temporary directory, ``pg_ctl`` on
a free port, so a test can take its database away (``pg_ctl stop -m immediate``, a crash as
far as PostgreSQL is concerned) and bring it back without touching the machine's shared
server. PostgreSQL refuses to run as root, so as root the commands run as the ``postgres``
OS user (``runuser``), which owns the directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.prerequisites import unavailable
from tests.support.servers import free_port

INSTALL_HINT = "apt-get install postgresql"


def _bin_dir() -> Path:
    """The newest installed server's ``bin`` directory (Debian's layout), or skip/fail."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        unavailable(f"needs PostgreSQL's server programs (initdb, pg_ctl): {INSTALL_HINT}")
    return Path(found[-1]).parent


class PrivateCluster:
    """One PostgreSQL cluster on 127.0.0.1 and a free port; :meth:`stop` and :meth:`start`
    make it unavailable and available again, keeping its data."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="optout-hub-pg-"))
        self.data = self.directory / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                unavailable(f"needs the postgres OS user to run a private PostgreSQL as root: {INSTALL_HINT}")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._as = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / program), *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{program} failed ({done.returncode}): {done.stderr or done.stdout}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory}"
        options += " -c fsync=off -c max_connections=200"  # no machine crash here, only the server's
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.directory / "log"), "-o", options
        )

    def stop(self) -> None:
        """Stop at once, as a crash would: connections are cut, nothing is shut down cleanly."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))

    def remove(self) -> None:
        with contextlib.suppress(AssertionError):
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started :class:`PrivateCluster`, stopped and deleted afterwards."""
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
