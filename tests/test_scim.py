"""SCIM 2.0 provisioning by the ordering system, through the generic scim2-client library
against the live identity provider: discovery, the User lifecycle, filters and pagination,
versions, idempotent creation under concurrency, and who may call it at all."""

import threading

import pytest
import requests
from scim2_models import PatchOp, PatchOperation, SCIMException, SearchRequest

from idp.models import AuditEvent, User
from tests.scim_fixtures import *  # noqa: F403 (fixtures)
from tests.scim_fixtures import (
    CUSTOMER,
    audit_events,
    count_rows,
    new_user,
    service_client,
    service_token,
    stored_user,
)


def test_discovery_describes_what_is_enforced(ordering):
    config = ordering.scim.provider.config
    assert config.patch.supported and config.etag.supported and config.filter.supported
    assert not config.bulk.supported and not config.change_password.supported
    schema = ordering.http.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").json()
    attributes = {attribute["name"]: attribute for attribute in schema["attributes"]}
    assert "password" not in attributes
    assert attributes["emails"]["required"] and attributes["phoneNumbers"]["required"]
    assert attributes["userName"]["uniqueness"] == "server"
    entitlement = attributes["entitlements"]["subAttributes"][0]
    assert entitlement["name"] == "value" and entitlement["canonicalValues"] == ["cloud.phone"]
    types = ordering.http.get("/ResourceTypes").json()["Resources"]
    assert types[0]["schemaExtensions"] == [{"schema": CUSTOMER, "required": False}]
    # The generic client builds its model from the published schema, and so refuses what we
    # would refuse: an account without a mobile number for the PIN.
    incomplete = ordering.User(user_name="x", emails=[ordering.User.Emails(value="x@example.com")])
    with pytest.raises(Exception, match="phoneNumbers"):
        ordering.scim.create(incomplete)


def test_create_invites_once_and_reads_back(idp, ordering, outbox, service):
    created = ordering.scim.create(new_user(ordering))
    assert created.id and created.user_name == "anna" and created.active is True
    assert created.meta.version and created.meta.location.endswith(f"/Users/{created.id}")
    Customer = ordering.User.get_extension_model("Customer")
    assert created[Customer].customer_number == "K-100200"
    assert [entry.value for entry in created.entitlements] == ["cloud.phone"]
    mails = outbox.mails()
    assert len(mails) == 1 and mails[0]["to"] == "anna@example.com"
    assert "/activate/" in mails[0]["text"]
    assert stored_user(idp, subject=created.id).state == "invited"
    events = audit_events(idp, "user.provisioned")
    assert [actor for actor, _, _ in events] == [f"client:{service['client_id']}"]

    again = ordering.scim.query(ordering.User, created.id)
    assert again.user_name == "anna" and again.meta.version == created.meta.version
    # The ordering system sends the same order again: the same account, no second mail.
    retried = ordering.post(ordering.user_payload())
    assert retried.status_code == 200 and retried.json()["id"] == created.id
    assert len(outbox.mails()) == 1 and count_rows(idp, User) == 1


def test_duplicate_posts_in_parallel_make_one_user_and_one_mail(idp, ordering, outbox):
    payload = ordering.user_payload()
    barrier = threading.Barrier(8)
    statuses = []

    def post():
        barrier.wait()
        statuses.append(ordering.post(payload).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] * 7 + [201]
    assert count_rows(idp, User) == 1
    assert len(outbox.mails()) == 1
    assert len(audit_events(idp, "user.provisioned")) == 1


def test_filters_and_pagination(ordering):
    for number in range(5):
        ordering.scim.create(new_user(ordering, f"admin{number}", f"order-{number}"))
    User = ordering.User
    found = ordering.scim.query(User, query_parameters=SearchRequest(filter='userName eq "ADMIN3"'))
    assert found.total_results == 1 and found.resources[0].user_name == "admin3"
    by_external = ordering.scim.query(
        User, query_parameters=SearchRequest(filter='externalId eq "order-2"')
    )
    assert [user.user_name for user in by_external.resources] == ["admin2"]
    by_mail = ordering.scim.query(
        User, query_parameters=SearchRequest(filter='emails.value eq "Admin4@Example.com"')
    )
    assert [user.user_name for user in by_mail.resources] == ["admin4"]
    by_mail_path = ordering.http.get(
        "/Users", params={"filter": 'emails[value eq "admin1@example.com"]'}
    ).json()
    assert by_mail_path["totalResults"] == 1
    page = ordering.scim.query(User, query_parameters=SearchRequest(start_index=2, count=2))
    assert page.total_results == 5 and page.start_index == 2
    assert [user.user_name for user in page.resources] == ["admin1", "admin2"]
    nothing = ordering.scim.query(
        User, query_parameters=SearchRequest(filter='userName eq "nobody"')
    )
    assert nothing.total_results == 0 and not nothing.resources
    for bad in ('title eq "x"', 'userName co "adm"', "userName eq", 'not (userName eq "a")'):
        response = ordering.http.get("/Users", params={"filter": bad})
        assert response.status_code == 400, bad
        assert response.json()["scimType"] == "invalidFilter", bad


def test_put_and_patch_with_versions(idp, ordering, outbox):
    created = ordering.scim.create(new_user(ordering))
    stale_version = created.meta.version
    User = ordering.User
    patch = PatchOp[User](
        operations=[
            PatchOperation[User](
                op=PatchOperation.Op.replace_,
                path="phoneNumbers",
                value=[{"value": "+4915199887766"}],
            )
        ]
    )
    patched = ordering.scim.modify(User, created.id, patch)
    assert patched.phone_numbers[0].value == "+4915199887766"
    assert patched.meta.version != stale_version
    assert stored_user(idp, subject=created.id).phone == "+4915199887766"
    assert audit_events(idp, "user.provisioning_updated")[0][2] == {"changed": ["phone"]}

    # A change against the version read before the patch is refused, and changes nothing.
    stale = ordering.http.put(
        f"/Users/{created.id}",
        json=ordering.user_payload(displayName="Someone Else"),
        headers={"If-Match": stale_version, "Content-Type": "application/scim+json"},
    )
    assert stale.status_code == 412
    assert stored_user(idp, subject=created.id).name == "Anna Admin"

    current = ordering.scim.query(User, created.id)
    current.display_name = "Anna Schmidt"
    current.entitlements = None
    replaced = ordering.scim.replace(current)
    assert replaced.display_name == "Anna Schmidt" and not replaced.entitlements
    assert stored_user(idp, subject=created.id).entitlements == []
    unchanged = ordering.http.get(
        f"/Users/{created.id}", headers={"If-None-Match": replaced.meta.version}
    )
    assert unchanged.status_code == 304
    assert len(outbox.mails()) == 1


def test_delete_deprovisions_and_erases_after_retention(idp, ordering, frozen_clock, service):
    created = ordering.scim.create(new_user(ordering))
    ordering.scim.delete(ordering.User, created.id)
    with pytest.raises(SCIMException):
        ordering.scim.query(ordering.User, created.id)
    listed = ordering.http.get("/Users").json()
    assert listed["totalResults"] == 0
    row = stored_user(idp, subject=created.id)
    assert row.state == "disabled" and row.deprovisioned_at is not None
    assert row.external_id is None and row.username != "anna"
    assert row.email == "anna@example.com"  # kept for enquiries during the retention period

    # The same order may come again: a new account, with a new subject.
    again = ordering.scim.create(new_user(ordering))
    assert again.id != created.id

    frozen_clock.advance(days=31)
    token = service_token(idp, service).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    requests.delete(f"{ordering.base}/Users/{again.id}", headers=headers, timeout=5)
    erased = stored_user(idp, subject=created.id)
    assert erased.erased_at is not None
    assert (erased.email, erased.phone, erased.name, erased.entitlements) == ("", "", None, [])
    assert count_rows(idp, User) == 2  # never deleted: the audit trail refers to them
    assert len(audit_events(idp, "user.erased")) == 1
    actors = {actor for actor, _, _ in audit_events(idp, "user.deprovisioned")}
    assert actors == {f"client:{service['client_id']}"}


def test_erasure_on_the_way_stays_when_the_write_then_fails(idp, ordering, frozen_clock, service):
    """Due accounts are erased before a SCIM write, committed on their own: the audit chain's
    lock is not held through the write, and a write refused afterwards undoes nothing."""
    created = ordering.scim.create(new_user(ordering))
    ordering.scim.delete(ordering.User, created.id)
    frozen_clock.advance(days=31)
    token = service_token(idp, service).json()["access_token"]
    refused = requests.post(
        f"{ordering.base}/Users", json={"schemas": [], "userName": ""},
        headers={"Authorization": f"Bearer {token}"}, timeout=5,
    )
    assert refused.status_code == 400
    assert stored_user(idp, subject=created.id).erased_at is not None
    assert len(audit_events(idp, "user.erased")) == 1


def test_only_a_scim_token_of_a_service_client_gets_in(idp, ordering, service, browser, rp):
    login = rp.sign_in(browser)
    for headers in (
        {},
        {"Authorization": f"Bearer {login['access_token']}"},
        {"Authorization": "Bearer not-a-token"},
    ):
        response = requests.get(f"{ordering.base}/Users", headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # A relying party cannot use client credentials ...
    refused = requests.post(
        idp.url("/token"),
        data={"grant_type": "client_credentials", "scope": "scim"},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    # ... and a service client neither signs anyone in nor gets more than it was given.
    page = browser.http.get(
        idp.url("/authorize"),
        params={"client_id": service["client_id"], "response_type": "code"},
        timeout=5,
    )
    assert page.status_code == 400
    wider = service_token(idp, service, scope="scim openid")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    granted = service_token(idp, service)
    assert granted.json()["scope"] == "scim" and "refresh_token" not in granted.json()
    wrong_secret = service_token(idp, {**service, "client_secret": "nope"})
    assert wrong_secret.status_code == 401


def test_service_client_cli_refuses_what_it_cannot_use(idp):
    runner = idp.app.test_cli_runner()
    base = ["clients", "create", "Ordering", "--grant", "client_credentials"]
    for extra in (
        [],
        ["--scope", "openid"],
        ["--scope", "scim", "--redirect-uri", "https://rp.example/cb"],
        ["--scope", "scim", "--public"],
        ["--scope", "scim", "--require-entitlement", "cloud.phone"],
        ["--scope", "scim", "--access-token-format", "opaque"],
    ):
        result = runner.invoke(args=[*base, *extra])
        assert result.exit_code != 0, extra
    unknown = runner.invoke(
        args=[
            "clients",
            "create",
            "X",
            "--redirect-uri",
            "https://x.example/cb",
            "--require-entitlement",
            "cloud.fax",
        ]
    )
    assert unknown.exit_code != 0 and "cloud.fax" in unknown.output
    created = service_client(idp)
    listed = runner.invoke(args=["clients", "list", "--json"])
    assert '"grant_type": "client_credentials"' in listed.output
    assert created["client_secret"] and count_rows(idp, AuditEvent) >= 1
