"""Vonage slow or down, through the real SDK against the local HTTPS fake (tests/servers.py):
the wait is bounded by SMS_TIMEOUT (1 s in the tests), the threads that waited are free again,
the person reads that the SMS could not be sent (or, when Vonage took it without answering in
time, that it may come late), and no PIN is posted twice for one request (a retried POST could
deliver and bill it twice)."""

import logging
import threading
import time

import pytest

from tests.conftest import PASSWORD, POSTGRES_URI, csrf_token, path_of, post_form
from tests.test_senders import activation_link, newest_pin

# What the person reads when the PIN could not be sent (the page of idp.authn.login_views).
NOT_SENT = "The SMS could not be sent"
# What the PIN page says when Vonage took the SMS without confirming it in time.
MAY_COME_LATE = "it may arrive late"


def activated(app, smtp_server, vonage, username: str, phone: str) -> None:
    args = ["users", "invite", username, "--email", f"{username}@example.com", "--phone", phone]
    assert app.test_cli_runner().invoke(args=args).exit_code == 0
    client = app.test_client()
    link = path_of(activation_link(smtp_server))
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert post_form(client, "/pin", {"pin": newest_pin(vonage)}).status_code == 200


def password_step(app, username: str, client=None):
    client = client or app.test_client()
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


@pytest.mark.parametrize("mode", ["http500", "9"])
def test_vonage_failing_gets_a_clear_page_and_one_post(real_senders_app, smtp_server, vonage, mode):
    """A 500 from Vonage, or its refusal (status 9, quota exceeded): a 503 page that says the
    SMS could not be sent, and the SDK posted once: nothing retried it."""
    activated(real_senders_app, smtp_server, vonage, "anna", "+4915112345678")
    vonage.state.received.clear()
    vonage.state.mode = mode

    response = password_step(real_senders_app, "anna")

    assert response.status_code == 503
    assert NOT_SENT in response.text
    assert len(vonage.state.received) == 1


@pytest.mark.parametrize("mode", ["hang", "trickle"])
def test_vonage_slower_than_the_timeout_leads_to_a_pin_page_that_says_it_may_come_late(
    real_senders_app, smtp_server, vonage, mode
):
    """Vonage took the SMS but gave no answer (or one a byte at a time, each byte within the
    SDK's read timeout) within SMS_TIMEOUT: the SMS may still be delivered, so the person is at
    the PIN page in about SMS_TIMEOUT, which says it may come late; its PIN stays valid and
    asking for a new one at once sends nothing (a second, billed SMS while the first may
    arrive). The SDK posted once: nothing retried it."""
    app = real_senders_app
    activated(app, smtp_server, vonage, "anna", "+4915112345678")
    vonage.state.received.clear()
    vonage.state.mode = mode

    started = time.monotonic()
    client = app.test_client()
    response = password_step(app, "anna", client)
    took = time.monotonic() - started

    assert response.status_code == 303, response.text[:300]
    assert took < app.config["SMS_TIMEOUT"] + 1.5
    page = client.get(response.headers["Location"], headers={"Accept-Language": "en"})
    assert MAY_COME_LATE in page.text
    again = client.post(
        "/pin",
        data={"csrf_token": csrf_token(page.text), "resend": "1"},
        headers={"Accept-Language": "en"},
    )
    assert again.status_code == 429
    assert len(vonage.state.received) == 1


def test_a_pin_that_vonage_accepts_after_the_timeout_signs_her_in_and_counts_its_cost(
    make_app, smtp_server, vonage, certificates, caplog
):
    """Vonage answers "sent" after SMS_TIMEOUT: the SMS that arrives late carries a PIN that
    still confirms the login, and what Vonage charged for it counts: with the two activations'
    PINs it uses up the hourly budget (3 x EUR 0.0333), and the next SMS is refused."""
    app = make_app(
        **smtp_server.settings(certificates.ca_file),
        **vonage.settings(),
        SMS_BUDGET_EUR_PER_HOUR=0.0999,
    )
    activated(app, smtp_server, vonage, "anna", "+4915112345678")
    activated(app, smtp_server, vonage, "ben", "+4915112345679")
    vonage.state.received.clear()
    vonage.state.mode = "late"
    caplog.set_level(logging.INFO, logger="idp")

    client = app.test_client()
    response = password_step(app, "anna", client)
    assert response.status_code == 303
    page = client.get(response.headers["Location"], headers={"Accept-Language": "en"})
    assert MAY_COME_LATE in page.text
    deadline = time.monotonic() + 10
    while "accepted after the timeout" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.1)  # Vonage's answer, a byte at a time
    confirmed = client.post(
        "/pin", data={"csrf_token": csrf_token(page.text), "pin": newest_pin(vonage)}
    )

    assert confirmed.status_code in (200, 302, 303)
    assert "/pin" not in confirmed.headers.get("Location", "/")
    vonage.state.mode = "ok"
    assert password_step(app, "ben").status_code == 429
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
    is at the PIN page after about SMS_TIMEOUT, all at once rather than one after another, and
    the instance answers the next request straight away: no thread stays stuck on Vonage."""
    app = real_senders_app
    people = [(f"user{n}", f"+491511234567{n}") for n in range(4)]
    for username, phone in people:
        activated(app, smtp_server, vonage, username, phone)
    vonage.state.received.clear()
    vonage.state.mode = "hang"
    answers: list[int] = []

    def sign_in(username):
        answers.append(password_step(app, username).status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=sign_in, args=(name,)) for name, _ in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    took = time.monotonic() - started

    assert answers == [303] * 4
    # In parallel: the four waits overlap (one after another would take 4 x SMS_TIMEOUT).
    assert took < 2 * app.config["SMS_TIMEOUT"] + 2
    assert len(vonage.state.received) == 4
    assert app.test_client().get("/healthz").status_code == 200
