"""Bad provisioning requests are answered in SCIM's error format, and change nothing: no
account, no mail, no audit event."""

import json

import pytest

from idp.accounts.models import User
from idp.audit.models import AuditEvent
from tests.scim_fixtures import count_rows

CASES = {
    "unknown attribute": ({"password": "hunter2hunter2"}, 400, "invalidSyntax"),
    "unknown extension": (
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:example:other"]},
        400,
        "invalidSyntax",
    ),
    "wrong type": ({"active": "yes please"}, 400, "invalidValue"),
    "emails not a list": ({"emails": "anna@example.com"}, 400, "invalidValue"),
    "invalid e-mail": ({"emails": [{"value": "anna(at)example"}]}, 400, "invalidValue"),
    "two e-mails": (
        {"emails": [{"value": "a@example.com"}, {"value": "b@example.com"}]},
        400,
        "invalidValue",
    ),
    "invalid phone": ({"phoneNumbers": [{"value": "0151 1234"}]}, 400, "invalidValue"),
    "no phone": ({"phoneNumbers": []}, 400, "invalidValue"),
    "unknown entitlement": ({"entitlements": [{"value": "cloud.fax"}]}, 400, "invalidValue"),
    "bad username": ({"userName": "anna admin"}, 400, "invalidValue"),
    "unknown language": ({"preferredLanguage": "fr"}, 400, "invalidValue"),
    # Names go verbatim into the activation mail's text: one line of text, nothing else.
    "line break in displayName": (
        {"displayName": "Anna\nBcc: mallory@example.com"},
        400,
        "invalidValue",
    ),
    "control character in givenName": ({"name": {"givenName": "Anna\x1b[2J"}}, 400, "invalidValue"),
    "line separator in familyName": ({"name": {"familyName": "Ad\u2028min"}}, 400, "invalidValue"),
    "override in formatted": ({"name": {"formatted": "\u202eAnna"}}, 400, "invalidValue"),
    "name part too long": ({"name": {"givenName": "A" * 201}}, 400, "invalidValue"),
    "unknown name part": ({"name": {"nickName": "Annie"}}, 400, "invalidSyntax"),
    "no active": ({"active": None}, 400, "invalidValue"),
}


def assert_nothing_written(idp, outbox, events_before):
    assert count_rows(idp, User) == 0
    assert outbox.mails() == []
    assert count_rows(idp, AuditEvent) == events_before


@pytest.mark.parametrize("case", CASES)
def test_bad_payload_is_refused_and_writes_nothing(idp, ordering, outbox, case):
    changes, status, scim_type = CASES[case]
    before = count_rows(idp, AuditEvent)
    response = ordering.post(ordering.user_payload(**changes))
    assert response.status_code == status, response.text
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == str(status) and body["scimType"] == scim_type
    assert response.headers["Content-Type"].startswith("application/scim+json")
    assert_nothing_written(idp, outbox, before)


@pytest.mark.parametrize(
    "body", ["{", "", "[]", "null", '{"userName": "anna",}', b"\xff\xfe"], ids=repr
)
def test_broken_json_is_invalid_syntax(idp, ordering, outbox, body):
    before = count_rows(idp, AuditEvent)
    response = ordering.post(body)
    assert response.status_code == 400, response.text
    assert response.json()["scimType"] == "invalidSyntax"
    assert_nothing_written(idp, outbox, before)


def test_oversized_body_is_413(idp, ordering, outbox):
    before = count_rows(idp, AuditEvent)
    padding = "x" * (idp.app.config["SCIM_MAX_BODY_BYTES"] + 1)
    response = ordering.post(ordering.user_payload(displayName=padding))
    assert response.status_code == 413
    assert response.json()["status"] == "413"
    assert_nothing_written(idp, outbox, before)


def test_wrong_media_type_and_unknown_user(ordering):
    response = ordering.http.post(
        "/Users",
        content=json.dumps(ordering.user_payload()),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 415 and response.json()["status"] == "415"
    missing = ordering.http.get("/Users/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["status"] == "404"
    for method in ("put", "patch", "delete"):
        gone = ordering.http.request(method.upper(), "/Users/nope", json={})
        assert gone.status_code in (400, 404), method


def test_conflicts_are_409_uniqueness(idp, ordering, outbox):
    assert ordering.post(ordering.user_payload()).status_code == 201
    other = ordering.user_payload(external_id="order-9")
    other["userName"] = "Anna"
    taken = ordering.post(other)
    assert taken.status_code == 409 and taken.json()["scimType"] == "uniqueness"
    changed = ordering.post(ordering.user_payload(displayName="Another Person"))
    assert changed.status_code == 409 and changed.json()["scimType"] == "uniqueness"
    assert count_rows(idp, User) == 1 and len(outbox.mails()) == 1


def test_bad_patch_changes_nothing(idp, ordering, outbox):
    created = ordering.post(ordering.user_payload()).json()
    path = f"/Users/{created['id']}"
    patches = [
        {"op": "replace", "path": "phoneNumbers", "value": [{"value": "12345"}]},
        {"op": "remove", "path": "emails"},
        {"op": "replace", "path": "password", "value": "secret-secret"},
        {"op": "frobnicate", "path": "active", "value": False},
        {"op": "replace", "path": "active", "value": "maybe"},
    ]
    for operation in patches:
        response = ordering.http.patch(
            path,
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [operation],
            },
            headers={"Content-Type": "application/scim+json"},
        )
        assert response.status_code == 400, (operation, response.text)
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert ordering.http.get(path).json()["meta"]["version"] == created["meta"]["version"]
