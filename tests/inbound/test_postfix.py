"""Mail through a real Postfix, configured with docs/deploy/postfix/, into the listener: the
path docs/operations.md tells an operator to build, proven end to end."""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable

from adapters.events import utcnow
from adapters.hub import Hub
from adapters.store.queries import address_state
from adapters.store.recipients import RecipientRequest, issue_tokens
from inbound.listener import SMTPComponent
from tests.support.mail import DOMAIN, message
from tests.support.postfix import running_postfix

SIZE_LIMIT = 10_240_000


def _wait_suppressed(hub: Hub, emails: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with hub.sessions() as session:
            missing = [email for email in emails if not address_state(session, email)["suppressed"]]
        if not missing:
            return
        assert time.monotonic() < deadline, f"not honoured after {timeout} s: {missing}"
        time.sleep(0.2)


def test_postfix_relays_the_unsubscribe_domain_only_and_the_opt_outs_are_honoured(
    start_smtp: Callable[..., SMTPComponent],
) -> None:
    component = start_smtp(smtp={"domains": [DOMAIN], "max_message_bytes": SIZE_LIMIT})
    hub = component.hub
    with hub.sessions.begin() as session:
        (issued,) = issue_tokens(session, hub.signer, hub.config, [RecipientRequest("ann@example.com")], now=utcnow())
    mailto = re.search(r"mailto:([^>]+)", issued.list_unsubscribe).group(1)  # type: ignore[union-attr]

    with running_postfix(DOMAIN, component.port, SIZE_LIMIT) as postfix:
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
            assert f"SIZE {SIZE_LIMIT}" in smtp.ehlo()[1].decode()
            smtp.sendmail("forwardee@example.net", [mailto], message("Unsubscribe", subject="Unsubscribe", to=mailto))
            smtp.sendmail(
                "bob@example.org",
                [f"replies@{DOMAIN}"],
                message("STOP", subject="Re: our news", sender="bob@example.org", to=f"replies@{DOMAIN}"),
            )
            try:
                smtp.sendmail("x@example.org", ["someone@elsewhere.example"], b"Subject: x\r\n\r\nx\r\n")
            except smtplib.SMTPRecipientsRefused as refused:
                ((code, _),) = refused.recipients.values()
                assert code == 554  # Postfix: Relay access denied
            else:  # pragma: no cover
                raise AssertionError("Postfix relayed a domain that is not the unsubscribe domain")
        _wait_suppressed(hub, ["ann@example.com", "bob@example.org"])
        log = postfix.log
    assert re.search(rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{component.port},.*status=sent \(250", log), log
    with hub.sessions() as session:
        assert not address_state(session, "forwardee@example.net")["suppressed"]  # the token's recipient only
