"""What the classifier decides about a message: :class:`Classification` and its categories."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any

from adapters.events import GLOBAL_SCOPE, Verification


class Category(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"
    BOUNCE = "bounce"
    AUTO_REPLY = "auto_reply"
    OTHER = "other"
    REVIEW = "review"


@dataclasses.dataclass(frozen=True)
class Classification:
    """What a message is, whom it concerns, and the evidence that decided it.

    ``address`` is the address to opt out (unsubscribe, complaint), the hard-bounced address
    (bounce), or for ``review`` the candidate requester; ``addresses`` lists every address
    the decision covers (an ARF report may name several recipients, a DSN several failures).
    ``named`` lists the other people's addresses a request names ("take my colleague erin@…
    off"): the admin reviewing it chooses between them and the requester.
    ``automatic`` marks a request that a program wrote for the person (a mail client's
    List-Unsubscribe message): honoured, but never answered with a confirmation mail.
    """

    category: Category
    address: str | None = None
    scope: str = GLOBAL_SCOPE
    verification: Verification = Verification.NONE
    campaign: str | None = None
    reason: str = ""
    detail: str = ""
    addresses: tuple[str, ...] = ()
    automatic: bool = False
    named: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.address is not None and not self.addresses:
            object.__setattr__(self, "addresses", (self.address,))

    @property
    def opts_out_someone(self) -> bool:
        """Whether this decision itself opts a named person out: an unsubscribe or a complaint
        naming an address. A hard bounce is not counted: it suppresses only by the store's
        policy (``[inbound] suppress_hard_bounces``, applied by
        :func:`adapters.store.record.record_events`)."""
        return self.category in (Category.UNSUBSCRIBE, Category.COMPLAINT) and bool(self.addresses)

    def as_result(self) -> dict[str, Any]:
        """The JSON kept in ``evidence.result`` (read by the admin dashboard)."""
        return {
            "classification": self.category.value,
            "address": self.address,
            "addresses": list(self.addresses),
            "scope": self.scope,
            "verification": self.verification.value,
            "campaign": self.campaign,
            "reason": self.reason,
            "detail": self.detail[:2000],
            "automatic": self.automatic,
            "named": list(self.named),
        }
