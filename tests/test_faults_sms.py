"""Vonage slow or down, through the real SDK against the local HTTPS fake (tests/servers.py):
the wait is bounded by SMS_TIMEOUT (1 s in the tests), the threads that waited are free again,
the person reads that the SMS could not be sent, and no PIN is posted twice for one request (a
retried POST could deliver and bill it twice)."""

import threading
import time

import pytest

from tests.conftest import PASSWORD, POSTGRES_URI, csrf_token, path_of, post_form
from tests.test_senders import activation_link, newest_pin

# What the person reads when the PIN could not be sent (the page of idp.authn.login_views).
NOT_SENT = "The SMS could not be sent"


def activated(app, smtp_server, vonage, username: str, phone: str) -> None:
    args = ["users", "invite", username, "--email", f"{username}@example.com", "--phone", phone]
    assert app.test_cli_runner().invoke(args=args).exit_code == 0
    client = app.test_client()
    link = path_of(activation_link(smtp_server))
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert post_form(client, "/pin", {"pin": newest_pin(vonage)}).status_code == 200


def password_step(app, username: str):
    client = app.test_client()
    page = client.get("/login", headers={"Accept-Language": "en"})
    return client.post(
        "/login",
        data={"csrf_token": csrf_token(page.text), "username": username, "password": PASSWORD},
        headers={"Accept-Language": "en"},
    )


def test_a_slow_vonage_within_the_timeout_delivers_the_pin_once(
    real_senders_app, smtp_server, vonage
):
    """Slow but in time: the login goes on to the PIN step, one SMS posted."""
    activated(real_senders_app, smtp_server, vonage, "anna", "+4915112345678")
    vonage.state.received.clear()
    vonage.state.delay = 0.4

    response = password_step(real_senders_app, "anna")

    assert response.status_code == 303, response.text[:300]
    assert len(vonage.state.received) == 1


@pytest.mark.parametrize("mode", ["hang", "http500", "trickle"])
def test_vonage_slower_than_the_timeout_or_failing_gets_a_clear_page_and_one_post(
    real_senders_app, smtp_server, vonage, mode
):
    """Past SMS_TIMEOUT (or a 500 from Vonage, or an answer that comes a byte at a time, each
    within the SDK's read timeout): a 503 page that says the SMS could not be sent, in about
    SMS_TIMEOUT, and the SDK posted once: nothing retried it."""
    activated(real_senders_app, smtp_server, vonage, "anna", "+4915112345678")
    vonage.state.received.clear()
    vonage.state.mode = mode

    started = time.monotonic()
    response = password_step(real_senders_app, "anna")
    took = time.monotonic() - started

    assert response.status_code == 503
    assert NOT_SENT in response.text
    assert took < real_senders_app.config["SMS_TIMEOUT"] + 1.5
    assert len(vonage.state.received) == 1


@pytest.mark.skipif(
    not POSTGRES_URI,
    reason="SQLite has one writer: the logins' transactions, open while each PIN is sent, "
    "wait for each other there",
)
def test_a_hanging_vonage_frees_every_thread_after_the_timeout(
    real_senders_app, smtp_server, vonage
):
    """Four people at the password step while Vonage hangs (a worker's four threads): each
    gets the page after about SMS_TIMEOUT, all at once rather than one after another, and the
    instance answers the next request straight away: no thread stays stuck on Vonage."""
    app = real_senders_app
    people = [(f"user{n}", f"+491511234567{n}") for n in range(4)]
    for username, phone in people:
        activated(app, smtp_server, vonage, username, phone)
    vonage.state.received.clear()
    vonage.state.mode = "hang"
    answers: list[tuple[int, bool]] = []

    def sign_in(username):
        response = password_step(app, username)
        answers.append((response.status_code, NOT_SENT in response.text))

    started = time.monotonic()
    threads = [threading.Thread(target=sign_in, args=(name,)) for name, _ in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    took = time.monotonic() - started

    assert answers == [(503, True)] * 4
    # In parallel: the four waits overlap (one after another would take 4 x SMS_TIMEOUT).
    assert took < 2 * app.config["SMS_TIMEOUT"] + 2
    assert len(vonage.state.received) == 4
    assert app.test_client().get("/healthz").status_code == 200
