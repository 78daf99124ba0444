"""Form tokens (CSRF) of the admin login and of the preference centre, over real HTTP: a number
too long to be one is a 400, as any other bad form token."""

from __future__ import annotations

import requests

from adapters.hub import Hub
from tests.support.environment import ADMIN_TOKEN
from tests.support.pages import issue_token, stored_counts
from webhooks.security import CSRF_FIELD

# More digits than Python's int() reads (4,300): once a 500 from the login and the preferences.
HUGE = "9" * 5000


def test_an_overlong_number_in_the_admin_login_form_token_is_400(app_url: str) -> None:
    browser = requests.Session()
    browser.get(f"{app_url}/admin/login", timeout=10)
    for token in (f"{HUGE}.00", HUGE, f"{'9' * 21}.x"):
        r = browser.post(f"{app_url}/admin/login", data={"token": ADMIN_TOKEN, CSRF_FIELD: token}, timeout=10)
        assert r.status_code == 400, r.text[:200]


def test_an_overlong_number_in_the_preferences_form_token_is_400(topic_hub: Hub, app_url: str) -> None:
    url = f"{app_url}/preferences/{issue_token(topic_hub, 'ann@example.com')}"
    for token in (f"{HUGE}.00", HUGE):
        r = requests.post(url, data={"action": "unsubscribe_all", CSRF_FIELD: token}, timeout=10)
        assert r.status_code == 400, r.text[:200]
    assert stored_counts(topic_hub) == (0, 0)
