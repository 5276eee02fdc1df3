"""The operator's commands, `idp users ...`: what each does, and that bad input exits non-zero
with exactly one line on stderr and leaves the database as it was."""

import json

import pytest

from idp.accounts import provisioning
from idp.accounts.models import Invitation, User
from idp.audit.models import AuditEvent
from idp.authn.models import Session
from idp.platform import clock
from idp.platform.extensions import db
from tests.conftest import PASSWORD, activate, csrf_token, invite, login, path_of, post_form

NEW_PASSWORD = "a completely new passphrase"


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def ok(app, *args):
    result = run(app, *args)
    assert result.exit_code == 0, result.output
    return result


def database_rows(app) -> dict:
    with app.app_context():
        return {
            table.name: sorted(
                (tuple(map(repr, row)) for row in db.session.execute(table.select())), key=str
            )
            for table in db.metadata.sorted_tables
        }


def the_user(app, username="anna") -> User:
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username_key == username))
        db.session.expunge_all()
        return user


# --- Each command -----------------------------------------------------------------------------


def test_invite_creates_an_invited_user_and_sends_the_mail(app, outbox):
    result = ok(
        app,
        "users",
        "invite",
        "Anna",
        "--email",
        "anna@example.com",
        "--phone",
        "+49 151 12345678",
        "--name",
        "Anna Admin",
    )
    assert "anna@example.com" in result.stdout and "/activate/" not in result.output
    user = the_user(app)
    assert (user.username, user.state, user.phone, user.name) == (
        "Anna",
        "invited",
        "+4915112345678",
        "Anna Admin",
    )
    assert user.password_hash is None
    [mail] = outbox.mails()
    assert mail["to"] == "anna@example.com"
    with app.app_context():
        event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.event == "user.invited"))
        assert event.actor.startswith("cli:")


def test_invite_in_english(app, outbox):
    ok(
        app,
        "users",
        "invite",
        "anna",
        "--email",
        "anna@example.com",
        "--phone",
        "+4915112345678",
        "--locale",
        "en",
    )
    assert outbox.mails()[0]["subject"] == "Your access to e:service"
    assert "Your username: anna" in outbox.mails()[0]["text"]


def test_resend_invite_sends_a_new_link(app, outbox):
    invite(app)
    first = outbox.last_link()
    result = ok(app, "users", "resend-invite", "anna")
    assert "/activate/" not in result.output
    assert len(outbox.mails()) == 2 and outbox.last_link() != first
    with app.app_context():
        states = db.session.scalars(db.select(Invitation.state).order_by(Invitation.id)).all()
        assert states == ["revoked", "sent"]


def test_resend_invite_refuses_an_active_user(app, client, outbox):
    activate(app, client, outbox)
    before = database_rows(app)
    result = run(app, "users", "resend-invite", "anna")
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert database_rows(app) == before


def test_list_and_list_json(app, client, outbox):
    activate(app, client, outbox, username="anna")
    invite(app, username="bert")
    table = ok(app, "users", "list").stdout.splitlines()
    assert len(table) == 2
    assert table[0].split()[:2] == ["anna", "active"]
    assert table[1].split()[:2] == ["bert", "invited"]
    listed = json.loads(ok(app, "users", "list", "--json").stdout)
    states = [(u["username"], u["state"]) for u in listed]
    assert states == [("anna", "active"), ("bert", "invited")]
    expected_keys = {"sub", "email", "phone", "locked", "created_at", "last_login_at"}
    assert expected_keys <= set(listed[0])
    assert "password_hash" not in json.dumps(listed)
    invited = json.loads(ok(app, "users", "list", "--json", "--state", "invited").stdout)
    assert [u["username"] for u in invited] == ["bert"]


def test_show(app, outbox):
    invite(app)
    shown = json.loads(ok(app, "users", "show", "ANNA").stdout)
    assert shown["username"] == "anna" and shown["state"] == "invited"
    assert shown["invitation"]["purpose"] == "activation"
    assert shown["invitation"]["state"] == "sent"
    assert "/activate/" not in json.dumps(shown)


def test_disable_revokes_sessions_and_links_and_enable_undoes_it(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    assert client.get("/").status_code == 200
    ok(app, "users", "reset-password", "anna")
    link = path_of(outbox.last_link())

    ok(app, "users", "disable", "anna")
    assert the_user(app).state == "disabled"
    assert client.get("/").status_code == 302
    with app.app_context():
        assert all(s.revoked_at for s in db.session.scalars(db.select(Session)))
    assert client.get(link).status_code in (400, 410)
    sms_before = len(outbox.sms())
    response = post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 200 and len(outbox.sms()) == sms_before

    ok(app, "users", "enable", "anna")
    assert the_user(app).state == "active"
    login(client, outbox)
    assert client.get("/").status_code == 200


def test_disable_records_who_and_why_and_enable_clears_it(app, outbox):
    invite(app)
    ok(app, "users", "disable", "anna", "--reason", "customer reported a stolen phone")
    shown = json.loads(ok(app, "users", "show", "anna").stdout)
    assert shown["state"] == "disabled"
    assert shown["disabled"]["by"].startswith("cli:") and shown["disabled"]["at"]
    assert shown["disabled"]["reason"] == "customer reported a stolen phone"
    with app.app_context():
        event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.event == "user.disabled"))
        assert event.actor == shown["disabled"]["by"]
        assert event.details == {"reason": "customer reported a stolen phone"}
    ok(app, "users", "enable", "anna")
    shown = json.loads(ok(app, "users", "show", "anna").stdout)
    assert shown["disabled"] is None
    user = the_user(app)
    assert (user.disabled_at, user.disabled_by, user.disabled_reason) == (None, None, None)


def test_enable_brings_an_invited_user_back_to_invited(app, outbox):
    invite(app)
    ok(app, "users", "disable", "anna")
    ok(app, "users", "enable", "anna")
    assert the_user(app).state == "invited"


@pytest.mark.parametrize(
    "command",
    [
        ("enable",),
        ("resend-invite",),
        ("reset-password",),
        ("set-phone", "+4915198765432"),
        ("unlock",),
    ],
)
def test_a_deprovisioned_account_cannot_be_revived(app, client, outbox, command):
    # The ordering system ended it (SCIM DELETE): no operator command brings it back.
    activate(app, client, outbox)
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username_key == "anna"))
        provisioning.deprovision(user, actor="client:ordering", now=clock.now())
        db.session.commit()
        username = user.username
    before = database_rows(app)
    mails = len(outbox.mails())

    result = run(app, "users", command[0], username, *command[1:])

    assert result.exit_code != 0
    assert "deprovisioned" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert database_rows(app) == before and len(outbox.mails()) == mails


def test_set_phone_normalises_and_new_pins_go_there(app, client, outbox):
    activate(app, client, outbox)
    result = ok(app, "users", "set-phone", "anna", "+49 (151) 98765432")
    assert "+4915198765432" in result.stdout
    assert the_user(app).phone == "+4915198765432"
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert outbox.sms()[0]["to"] == "+4915198765432"
    with app.app_context():
        event = db.session.scalar(
            db.select(AuditEvent).where(AuditEvent.event == "user.phone_changed")
        )
        assert "98765432" not in json.dumps(event.details)  # masked in the audit trail


def test_reset_password_is_the_activation_flow_with_pin_and_ends_old_sessions(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    other_browser = app.test_client()
    login(other_browser, outbox)
    old_hash = the_user(app).password_hash

    result = ok(app, "users", "reset-password", "anna")
    assert "/activate/" not in result.output
    mail = outbox.mails()[0]
    assert mail["subject"] != outbox.mails()[1]["subject"]
    link = path_of(outbox.last_link())
    # Until the PIN is confirmed, the old password and the sessions stay.
    response = post_form(client, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert response.status_code == 303
    assert the_user(app).password_hash == old_hash
    assert other_browser.get("/").status_code == 200

    pin_page = client.get("/pin")
    done = client.post(
        "/pin", data={"csrf_token": csrf_token(pin_page.text), "pin": outbox.last_pin()}
    )
    assert done.status_code == 200
    user = the_user(app)
    assert user.state == "active" and user.password_hash != old_hash
    assert other_browser.get("/").status_code == 302
    assert client.get(link).status_code == 410
    # The old password is dead, the new one works (with a PIN).
    fresh = app.test_client()
    assert post_form(fresh, "/login", {"username": "anna", "password": PASSWORD}).status_code == 200
    login(fresh, outbox, password=NEW_PASSWORD)
    assert fresh.get("/").status_code == 200


def test_reset_password_of_an_invited_user_sends_an_activation_link(app, outbox):
    invite(app)
    ok(app, "users", "reset-password", "anna")
    assert outbox.mails()[0]["subject"] == outbox.mails()[1]["subject"]
    with app.app_context():
        purposes = db.session.scalars(db.select(Invitation.purpose)).all()
        assert purposes == ["activation", "activation"]


def test_unlock(app, client, outbox):
    activate(app, client, outbox)
    for _ in range(app.config["LOCKOUT_THRESHOLD"]):
        post_form(client, "/login", {"username": "anna", "password": "wrong"})
    assert json.loads(ok(app, "users", "show", "anna").stdout)["locked"] is True
    ok(app, "users", "unlock", "anna")
    shown = json.loads(ok(app, "users", "show", "anna").stdout)
    assert shown["locked"] is False
    user = the_user(app)
    assert user.failed_passwords == 0 and user.locked_until is None


def test_unlock_lifts_every_lock_and_cap_and_says_what_it_lifted(make_app, outbox):
    # Two SMS a day: the activation's and one login's use up both caps.
    # Seven password attempts per network: the login, five wrong ones, one more; the eighth is
    # refused before any check.
    app = make_app(
        SMS_LIMIT_PER_ACCOUNT="2 per day",
        SMS_LIMIT_PER_NUMBER="2 per day",
        LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK="7 per 15 minutes",
    )
    client = app.test_client()
    activate(app, client, outbox)
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    wrong_pin = "000000" if outbox.last_pin() != "000000" else "111111"
    for _ in range(app.config["LOCKOUT_THRESHOLD"]):
        post_form(client, "/pin", {"pin": wrong_pin})
    for _ in range(app.config["LOCKOUT_THRESHOLD"] + 1):
        post_form(client, "/login", {"username": "anna", "password": "wrong"})
    assert post_form(client, "/login", {"username": "anna", "password": "wrong"}).status_code == 429

    limits = json.loads(ok(app, "users", "show", "anna").stdout)["limits"]
    active = {name for name, limit in limits.items() if limit["active"]}
    assert active == {
        "password_lock",
        "login_attempts",
        "pin_lock",
        "pin_wait",
        "sms_per_account",
        "sms_per_number",
    }
    assert limits["password_lock"]["failures"] == app.config["LOCKOUT_THRESHOLD"]
    assert limits["login_attempts"]["refused"] == 1
    assert limits["sms_per_account"]["sent"] == 2
    assert limits["sms_per_number"]["cap"] == "2 per day"
    assert all(limit["until"] for limit in limits.values())

    lifted = ok(app, "users", "unlock", "anna").stdout
    for said in (
        "password lock until",
        "block of password attempts from a network until",
        "PIN lock until",
        "wait for the next PIN until",
        "SMS cap of the account until",
        "SMS cap of the number until",
    ):
        assert said in lifted
    limits = json.loads(ok(app, "users", "show", "anna").stdout)["limits"]
    assert not any(limit["active"] for limit in limits.values())
    assert limits["sms_per_account"]["sent"] == 0
    # She signs in at once, with a new SMS.
    login(app.test_client(), outbox)
    assert "nothing to lift" in ok(app, "users", "unlock", "anna").stdout
    with app.app_context():
        events = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "user.unlocked").order_by(AuditEvent.id)
        ).all()
        assert [set(event.details["lifted"]) for event in events] == [active, set()]


REDIS_DOWN = "Redis (IDP_REDIS_URL) is not usable: "
SHARED = ("login_attempts", "sms_per_account", "sms_per_number")


@pytest.fixture
def redis_down(make_app):
    """An app of the same database whose Redis does not answer (an incident)."""
    from idp.demo.servers import free_port

    def build():
        return make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    return build


def test_show_during_a_redis_incident_shows_the_account_and_the_unknown_limits(
    app, client, outbox, redis_down
):
    activate(app, client, outbox)
    for _ in range(app.config["LOCKOUT_THRESHOLD"]):
        post_form(client, "/login", {"username": "anna", "password": "wrong"})
    result = run(redis_down(), "users", "show", "anna")
    assert result.exit_code == 0, result.output
    [warning] = result.stderr.splitlines()
    assert warning.startswith(
        "Warning: the limits held in Redis (login_attempts, sms_per_account, sms_per_number) "
        f"could not be read: {REDIS_DOWN}"
    ), warning
    shown = json.loads(result.stdout)
    assert (shown["username"], shown["state"], shown["locked"]) == ("anna", "active", True)
    limits = shown["limits"]
    assert limits["password_lock"]["active"] is True
    assert limits["pin_wait"]["active"] is False
    for name in SHARED:
        assert limits[name]["active"] is None and limits[name]["until"] is None
        assert limits[name]["unknown"].startswith(REDIS_DOWN)


def test_unlock_during_a_redis_incident_lifts_the_database_locks_and_says_what_it_could_not(
    app, client, outbox, redis_down
):
    activate(app, client, outbox)
    for _ in range(app.config["LOCKOUT_THRESHOLD"]):
        post_form(client, "/login", {"username": "anna", "password": "wrong"})
    result = run(redis_down(), "users", "unlock", "anna")
    assert result.exit_code == 1
    assert result.stdout.startswith("unlocked anna: lifted the password lock until")
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "Error: could not lift the block of password attempts from a network, the SMS cap of "
        f"the account, the SMS cap of the number of anna (held in Redis): {REDIS_DOWN}"
    ), line
    assert line.endswith("run `idp users unlock` again when Redis answers")
    user = the_user(app)
    assert user.failed_passwords == 0 and user.locked_until is None
    with app.app_context():
        event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.event == "user.unlocked"))
        assert event.details["lifted"] == ["password_lock"]
        assert event.details["not_lifted"] == list(SHARED)
    # She signs in at once.
    login(app.test_client(), outbox)


# --- Bad input --------------------------------------------------------------------------------

BAD_INVITES = {
    "phone not a number": ["bob", "--email", "bob@example.com", "--phone", "call me"],
    "phone without country": ["bob", "--email", "bob@example.com", "--phone", "015112345678"],
    "phone too short": ["bob", "--email", "bob@example.com", "--phone", "+49151"],
    "e-mail without at": ["bob", "--email", "bob.example.com", "--phone", "+4915112345679"],
    "e-mail without domain": ["bob", "--email", "bob@", "--phone", "+4915112345679"],
    "e-mail with header": [
        "bob",
        "--email",
        "bob@example.com\nBcc: all@example.com",
        "--phone",
        "+4915112345679",
    ],
    "e-mail with space": ["bob", "--email", "b ob@example.com", "--phone", "+4915112345679"],
    # The mail's parser reads another address (the comment dropped), or none at all.
    **{
        f"e-mail {what}": ["bob", "--email", email, "--phone", "+4915112345679"]
        for what, email in [
            ("with comment", "x@evil.example(@victim.de)"),
            ("with two dots", "a..b@example.de"),
            ("ending in a dot", "bob.@example.de"),
            ("with non-ASCII local part", "jörg@example.de"),
        ]
    },
    "username empty": ["", "--email", "bob@example.com", "--phone", "+4915112345679"],
    "username with space": ["bo b", "--email", "bob@example.com", "--phone", "+4915112345679"],
    "username with slash": ["bo/b", "--email", "bob@example.com", "--phone", "+4915112345679"],
    "username with newline": ["bo\nb", "--email", "bob@example.com", "--phone", "+4915112345679"],
    "username too long": ["b" * 65, "--email", "bob@example.com", "--phone", "+4915112345679"],
    "duplicate": ["anna", "--email", "other@example.com", "--phone", "+4915112345679"],
    "duplicate other case": ["ANNA", "--email", "other@example.com", "--phone", "+4915112345679"],
    "duplicate full width": ["ａｎｎａ", "--email", "o@example.com", "--phone", "+4915112345679"],
    # The name goes verbatim into the activation mail's text: one line of text, nothing else.
    **{
        f"name with {what}": [
            "bob",
            "--email",
            "bob@example.com",
            "--phone",
            "+4915112345679",
            "--name",
            f"Bob{character}Bcc: mallory@example.com",
        ]
        for what, character in [
            ("newline", "\n"),
            ("carriage return", "\r"),
            ("tab", "\t"),
            ("escape", "\x1b"),
            ("line separator", "\u2028"),
            ("right-to-left override", "\u202e"),
            ("Arabic letter mark", "\u061c"),
        ]
    },
    "name too long": [
        "bob",
        "--email",
        "bob@example.com",
        "--phone",
        "+4915112345679",
        "--name",
        "B" * 201,
    ],
}

UNKNOWN_USER = [
    ["resend-invite", "nobody"],
    ["show", "nobody"],
    ["disable", "nobody"],
    ["enable", "nobody"],
    ["set-phone", "nobody", "+4915112345679"],
    ["reset-password", "nobody"],
    ["unlock", "nobody"],
]

OTHER_BAD = [
    ["disable", "anna", "--reason", "line one\nline two"],
    ["set-phone", "anna", "12345"],
    ["set-phone", "anna", "+49 not a phone"],
    ["enable", "anna"],  # not disabled
]


@pytest.fixture
def populated(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    invite(app, username="ivan")
    return app


def assert_refused(app, args) -> None:
    before = database_rows(app)
    result = run(app, "users", *args)
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    assert database_rows(app) == before


@pytest.mark.parametrize("case", list(BAD_INVITES))
def test_bad_invite_changes_nothing(populated, outbox, case):
    mails = len(outbox.mails())
    assert_refused(populated, ["invite", *BAD_INVITES[case]])
    assert len(outbox.mails()) == mails


@pytest.mark.parametrize("args", UNKNOWN_USER, ids=lambda a: a[0])
def test_unknown_user_changes_nothing(populated, args):
    assert_refused(populated, args)


@pytest.mark.parametrize("args", OTHER_BAD, ids=lambda a: " ".join(a))
def test_other_bad_input_changes_nothing(populated, args):
    assert_refused(populated, args)


def test_reset_password_of_a_disabled_user_changes_nothing(populated):
    ok(populated, "users", "disable", "anna")
    assert_refused(populated, ["reset-password", "anna"])


def test_purge_erases_accounts_deprovisioned_past_the_retention(make_app, outbox, frozen_clock):
    app = make_app(DEPROVISIONED_RETENTION_DAYS=30)
    for username in ("anna", "bert", "carl"):
        invite(app, username=username)
    with app.app_context():
        for username in ("anna", "bert"):
            user = db.session.scalar(db.select(User).where(User.username_key == username))
            provisioning.deprovision(user, actor="client:ordering", now=clock.now())
        db.session.commit()

    assert "erased 0 " in ok(app, "users", "purge").stdout  # still within the retention
    frozen_clock.advance(days=31)
    assert "erased 2 " in ok(app, "users", "purge").stdout
    assert "erased 0 " in ok(app, "users", "purge").stdout  # nothing left: safe to repeat

    with app.app_context():
        rows = db.session.scalars(db.select(User).order_by(User.id)).all()
        assert [(row.email, row.phone, row.erased_at is not None) for row in rows[:2]] == [
            ("", "", True),
            ("", "", True),
        ]
        assert rows[2].email and rows[2].erased_at is None  # never deprovisioned: untouched
        actors = db.session.scalars(
            db.select(AuditEvent.actor).where(AuditEvent.event == "user.erased")
        ).all()
        assert len(actors) == 2 and all(actor.startswith("cli:") for actor in actors)
