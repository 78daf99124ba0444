"""A private Postfix instance in front of the listener, configured as docs/deploy/postfix/ says.

It runs with its own configuration, queue and log directories (``postfix -c DIR``), listens
on a free loopback port, relays the unsubscribe domain to the listener through a transport
map and delivers nowhere else; the machine's own Postfix (if any) is untouched. Postfix
starts as root and drops to its ``postfix`` user, so the directories are made outside
pytest's private temporary directory, which that user could not enter.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.prerequisites import require_tool, unavailable
from tests.support.servers import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "postfix"

# Postfix's own services, none chrooted (the queue directory is a temporary one).
MASTER_SERVICES = """\
pickup    unix  n  -  n  60     1  pickup
cleanup   unix  n  -  n  -      0  cleanup
qmgr      unix  n  -  n  300    1  qmgr
rewrite   unix  -  -  n  -      -  trivial-rewrite
bounce    unix  -  -  n  -      0  bounce
defer     unix  -  -  n  -      0  bounce
trace     unix  -  -  n  -      0  bounce
verify    unix  -  -  n  -      1  verify
flush     unix  n  -  n  1000?  0  flush
proxymap  unix  -  -  n  -      -  proxymap
smtp      unix  -  -  n  -      -  smtp
relay     unix  -  -  n  -      -  smtp
showq     unix  n  -  n  -      -  showq
error     unix  -  -  n  -      -  error
retry     unix  -  -  n  -      -  error
discard   unix  -  -  n  -      -  discard
anvil     unix  -  -  n  -      1  anvil
scache    unix  -  -  n  -      1  scache
postlog   unix-dgram n - n -    1  postlogd
"""


@dataclass(frozen=True)
class Postfix:
    port: int
    directory: Path

    @property
    def log(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


def _main_cf(directory: Path, domain: str, listener_port: int, message_size_limit: int) -> str:
    """The documented main.cf snippet, with this instance's paths and ports filled in."""
    snippet = (DEPLOY / "main.cf").read_text()
    snippet = snippet.replace("unsubscribe.example.com", domain).replace("10240000", str(message_size_limit))
    return (
        f"compatibility_level = 3.6\n"
        f"queue_directory = {directory / 'spool'}\n"
        f"data_directory = {directory / 'data'}\n"
        f"mail_owner = postfix\n"
        f"setgid_group = postdrop\n"
        f"inet_interfaces = 127.0.0.1\n"
        f"inet_protocols = ipv4\n"
        f"myhostname = mx.test.invalid\n"
        f"mydestination =\n"
        f"mynetworks = 192.0.2.0/32\n"  # the test client is the Internet, not a trusted host
        f"maillog_file_prefixes = {directory}\n"
        f"maillog_file = {directory / 'maillog'}\n"
        f"{snippet.replace('/etc/postfix/', f'{directory}/conf/')}\n"
    )


@contextlib.contextmanager
def running_postfix(domain: str, listener_port: int, message_size_limit: int) -> Iterator[Postfix]:
    """A Postfix on a free port relaying ``domain`` to ``127.0.0.1:listener_port``."""
    postfix = require_tool("postfix", "apt-get install postfix (.ci/run does)")
    if os.geteuid() != 0:
        unavailable("needs root to start a private Postfix instance")
    directory = Path(tempfile.mkdtemp(prefix="optouthub-postfix-"))
    try:
        directory.chmod(0o755)
        conf = directory / "conf"
        conf.mkdir()
        (directory / "spool").mkdir()
        (directory / "data").mkdir()
        shutil.chown(directory / "data", "postfix")
        port = free_port()
        transport = (DEPLOY / "transport").read_text().replace("unsubscribe.example.com", domain)
        (conf / "transport").write_text(transport.replace(":2525", f":{listener_port}"))
        (conf / "main.cf").write_text(_main_cf(directory, domain, listener_port, message_size_limit))
        (conf / "master.cf").write_text(f"127.0.0.1:{port} inet n - n - - smtpd\n{MASTER_SERVICES}")
        subprocess.run([postfix, "-c", str(conf), "check"], check=True, capture_output=True, timeout=60)
        subprocess.run([postfix, "-c", str(conf), "start"], check=True, capture_output=True, timeout=60)
        try:
            _wait_listening(port)
            yield Postfix(port, directory)
        finally:
            subprocess.run([postfix, "-c", str(conf), "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
