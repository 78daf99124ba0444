"""Human labels for the codes the store keeps (sources, kinds, reasons, admin actions).

Each label is a msgid of the shared gettext catalogue (``adapters/translations``): the admin
dashboard shows it in the admin's language, the CLI prints it in English. A code with no
label is shown as it is stored.
"""

from __future__ import annotations

from collections.abc import Callable


def N_(text: str) -> str:
    """Mark ``text`` for extraction into the catalogue (translated where it is shown)."""
    return text


LABELS: dict[str, dict[str, str]] = {
    "source": {
        "smtp": N_("Mail reply"),
        "oneclick": N_("One-click link"),
        "preferences": N_("Preference centre"),
        "mailchimp": N_("Mailchimp"),
        "sendgrid": N_("SendGrid"),
        "hubspot": N_("HubSpot"),
        "api": N_("Admin (API)"),
        "import": N_("Import"),
    },
    "kind": {
        "unsubscribe": N_("Unsubscribe"),
        "complaint": N_("Spam complaint"),
        "bounce": N_("Bounce"),
        "resubscribe": N_("Resubscribe"),
    },
    "action": {
        "approved": N_("Approved a review item"),
        "rejected": N_("Rejected a review item"),
        "retried": N_("Retried a dead push"),
        "unsubscribe": N_("Recorded an unsubscribe"),
        "complaint": N_("Recorded a complaint"),
        "bounce": N_("Recorded a bounce"),
        "resubscribe": N_("Resubscribed"),
    },
    "reason": {
        "too_many": N_("Too many emails"),
        "not_relevant": N_("The content is not relevant to me"),
        "never_signed_up": N_("I never signed up"),
        "other": N_("Another reason"),
        "abuse": N_("Marked as spam"),
        "manual": N_("Unsubscribed at Mailchimp"),
        "hard": N_("Hard bounce"),
        "hs_email_optout": N_("Opted out in HubSpot"),
        "approved by admin": N_("Request approved by an admin"),
        "unsubscribe: request in the sender's own text": N_("Reply asking to stop"),
        "unsubscribe: mail client's List-Unsubscribe message": N_("Mail client's unsubscribe button"),
        "unsubscribe: sent to a valid tokenized unsubscribe address": N_("Unsubscribe address of the mail"),
    },
    "group": {
        "person": N_("People's reasons"),
        "admin": N_("Admins' notes"),
        "import": N_("Imports"),
        "machine": N_("Machine reasons"),
    },
}
# A machine reason made of a fixed head and varying details (the classifier's report summaries).
REASON_PREFIXES = {
    "complaint: ": N_("Spam complaint report"),
    "bounce: ": N_("Bounce report"),
    "unsubscribe: ": N_("Unsubscribe by mail"),
}


def label(dimension: str, code: str, translate: Callable[[str], str] = N_) -> str:
    """The label of ``code``; a person's reason ``"<code>: <their words>"`` keeps their words."""
    known = LABELS.get(dimension, {})
    if code in known:
        return translate(known[code])
    if dimension == "reason":
        head, sep, words = code.partition(": ")
        if sep and head in known:
            return f"{translate(known[head])}: {words}"
        prefix = next((p for p in REASON_PREFIXES if code.startswith(p)), None)
        if prefix is not None:
            return translate(REASON_PREFIXES[prefix])
    return code
