"""SCIM 2.0 provisioning by the ordering system, through the generic scim2-client library
against the live identity provider: discovery, the User lifecycle, filters and pagination,
versions, idempotent creation under concurrency, and who may call it at all."""

import json
import threading

import pytest
import requests
from scim2_models import PatchOp, PatchOperation, SCIMException, SearchRequest
from scim2_tester import Status, check_server

from idp.accounts import users
from idp.accounts.models import User
from idp.audit.models import AuditEvent
from tests.conftest import PASSWORD, path_of, post_form
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
    incomplete = ordering.User(
        user_name="x", active=True, emails=[ordering.User.Emails(value="x@example.com")]
    )
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


def test_a_post_that_loses_the_race_for_the_username_answers_with_the_account(
    idp, ordering, outbox, monkeypatch
):
    """The race behind a 400 seen in parallel duplicates: the same order, sent again, commits
    its account after this request found no account with the externalId, and before this
    request creates its own. That is the one account, not a refusal."""
    payload = ordering.user_payload()
    create_user = users.create_user
    parallel = []

    def create_after_a_parallel_duplicate(*args, **kwargs):
        if not parallel:
            parallel.append(None)
            parallel[0] = ordering.post(payload)  # served by another thread; it commits
        return create_user(*args, **kwargs)

    monkeypatch.setattr(users, "create_user", create_after_a_parallel_duplicate)
    response = ordering.post(payload)
    assert parallel[0].status_code == 201
    assert response.status_code == 200, response.text
    assert response.json()["id"] == parallel[0].json()["id"]
    assert count_rows(idp, User) == 1 and len(outbox.mails()) == 1


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
        f"{ordering.base}/Users",
        json={"schemas": [], "userName": ""},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
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


# --- The core `name`, attribute selection, removal ----------------------------------------------


def patch(ordering, subject, *operations):
    return ordering.http.patch(
        f"/Users/{subject}",
        content=json.dumps(
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
        ),
        headers={"Content-Type": "application/scim+json"},
    )


def test_core_name_as_entra_and_okta_send_it(idp, ordering, outbox):
    schema = ordering.http.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").json()
    [name] = [attribute for attribute in schema["attributes"] if attribute["name"] == "name"]
    parts = {sub["name"] for sub in name["subAttributes"]}
    assert parts == {"formatted", "givenName", "familyName"}

    # Okta (and Entra ID) send the name on every create; a displayName need not come with it.
    payload = ordering.user_payload(name={"givenName": "Anna", "familyName": "Admin"})
    del payload["displayName"]
    created = ordering.post(payload)
    assert created.status_code == 201, created.text
    subject = created.json()["id"]
    assert created.json()["name"] == {"givenName": "Anna", "familyName": "Admin"}
    assert "displayName" not in created.json()
    [mail] = outbox.mails()
    assert mail["text"].startswith("Guten Tag Anna Admin,")
    row = stored_user(idp, subject=subject)
    assert (row.given_name, row.family_name, row.formatted_name) == ("Anna", "Admin", None)

    # Entra ID: "Replace" capitalised, a path into the name.
    response = patch(
        ordering,
        subject,
        {"op": "Replace", "path": "name.givenName", "value": "Anne"},
        {"op": "Add", "path": "name.formatted", "value": "Dr. Anne Admin"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == {
        "givenName": "Anne",
        "familyName": "Admin",
        "formatted": "Dr. Anne Admin",
    }
    # Okta: the whole resource by PUT.
    current = ordering.http.get(f"/Users/{subject}").json()
    current["name"] = {"givenName": "Anna", "familyName": "Schmidt"}
    replaced = ordering.http.put(f"/Users/{subject}", json=current)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == {"givenName": "Anna", "familyName": "Schmidt"}
    assert stored_user(idp, subject=subject).formatted_name is None
    changed = audit_events(idp, "user.provisioning_updated")[-1][2]["changed"]
    assert changed == ["family_name", "formatted_name", "given_name"]
    removed = patch(ordering, subject, {"op": "remove", "path": "name"})
    assert removed.status_code == 200 and "name" not in removed.json()


def test_changing_the_email_revokes_the_open_set_password_link(idp, ordering, outbox):
    created = ordering.scim.create(new_user(ordering))
    link = path_of(outbox.last_link())
    person = idp.app.test_client()

    # Other changes leave the link alone.
    replaced = {"op": "replace", "path": "displayName", "value": "Anna Schmidt"}
    assert patch(ordering, created.id, replaced).status_code == 200
    assert person.get(link).status_code == 200

    emails = [{"value": "anna.new@example.com", "primary": True}]
    replaced = {"op": "replace", "path": "emails", "value": emails}
    assert patch(ordering, created.id, replaced).status_code == 200
    assert stored_user(idp, subject=created.id).email == "anna.new@example.com"
    assert person.get(link).status_code == 410
    form = {"password": PASSWORD, "password_confirm": PASSWORD}
    response = post_form(person, link, form, page_url="/login")
    assert response.status_code == 410


def test_attributes_and_excluded_attributes_select_what_is_returned(ordering):
    created = ordering.post(ordering.user_payload()).json()
    path = f"/Users/{created['id']}"
    only = ordering.http.get(path, params={"attributes": "userName,emails.value"}).json()
    assert set(only) == {"schemas", "id", "userName", "emails"}
    assert only["emails"] == [{"value": "anna@example.com"}]
    without = ordering.http.get(path, params={"excludedAttributes": "displayName,phoneNumbers"})
    assert "displayName" not in without.json() and "phoneNumbers" not in without.json()
    assert without.json()["userName"] == "anna" and without.headers["ETag"]
    listed = ordering.http.get("/Users", params={"attributes": "userName"}).json()
    assert [set(user) for user in listed["Resources"]] == [{"schemas", "id", "userName"}]
    searched = ordering.http.post(
        "/Users/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "anna"',
            "excludedAttributes": ["emails", "meta"],
        },
        headers={"Content-Type": "application/scim+json"},
    ).json()
    assert searched["totalResults"] == 1
    assert "emails" not in searched["Resources"][0] and "meta" not in searched["Resources"][0]
    both = ordering.http.get(path, params={"attributes": "userName", "excludedAttributes": "id"})
    assert both.status_code == 400 and both.json()["scimType"] == "invalidValue"


@pytest.mark.parametrize("parameter", ["startIndex", "count"])
@pytest.mark.parametrize("value", ["1" * 20, "2147483648", "x", "1.5"])
def test_a_start_index_or_count_out_of_range_is_a_400(ordering, parameter, value):
    response = ordering.http.get("/Users", params={parameter: value})
    assert response.status_code == 400, response.text
    assert response.json()["scimType"] == "invalidValue"


def test_patch_remove_of_an_optional_attribute_removes_it(idp, ordering, outbox):
    created = ordering.post(ordering.user_payload(preferredLanguage="en")).json()
    assert outbox.mails()[0]["text"].startswith("Hello Anna Admin,")
    for attribute in ("preferredLanguage", "displayName", "entitlements", "externalId"):
        response = patch(ordering, created["id"], {"op": "remove", "path": attribute})
        assert response.status_code == 200, response.text
        assert attribute not in response.json()
        assert attribute not in ordering.http.get(f"/Users/{created['id']}").json()
    assert stored_user(idp, subject=created["id"]).locale is None
    # Without a language of their own, mails go out in the default one.
    resent = idp.app.test_cli_runner().invoke(args=["users", "resend-invite", "anna"])
    assert resent.exit_code == 0, resent.output
    assert outbox.mails()[0]["text"].startswith("Guten Tag,")


def test_required_attributes_refuse_removal(ordering):
    created = ordering.post(ordering.user_payload()).json()
    schema = ordering.http.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").json()
    required = {attribute["name"] for attribute in schema["attributes"] if attribute["required"]}
    assert required == {"userName", "active", "emails", "phoneNumbers"}
    for attribute in sorted(required):
        response = patch(ordering, created["id"], {"op": "remove", "path": attribute})
        assert response.status_code == 400, response.text
        assert response.json()["scimType"] == "mutability", attribute
    assert ordering.http.get(f"/Users/{created['id']}").json()["meta"] == created["meta"]


def test_scim2_tester_finds_nothing_against_the_rfcs(ordering):
    # What a generic tester cannot guess: the one number must be a mobile number of an allowed
    # country, and the one address and number are always the primary ones.
    User = ordering.User
    User.PhoneNumbers.model_fields["value"].examples = ["+4915112345678"]
    for multi_valued in (User.PhoneNumbers, User.Emails):
        multi_valued.model_fields["primary"].examples = [True]
    results = check_server(ordering.scim)
    failed = [
        (result.title, result.reason)
        for result in results
        if result.status in (Status.ERROR, Status.CRITICAL)
    ]
    assert results and not failed


# --- Who disabled an account ---------------------------------------------------------------------


def set_active(ordering, subject, value: bool):
    return patch(ordering, subject, {"op": "Replace", "path": "active", "value": value})


def test_provisioning_never_enables_an_account_an_operator_disabled(idp, ordering, service):
    subject = ordering.post(ordering.user_payload()).json()["id"]
    operator = idp.app.test_cli_runner()

    def cli(*args):
        result = operator.invoke(args=["users", *args])
        assert result.exit_code == 0, result.output
        return result.output

    # Provisioning lifts its own deactivation.
    assert set_active(ordering, subject, False).json()["active"] is False
    row = stored_user(idp, subject=subject)
    assert row.disabled_by == f"client:{service['client_id']}" and row.disabled_reason
    assert set_active(ordering, subject, True).json()["active"] is True

    # An operator's stays, by PATCH (Entra ID) and by PUT (Okta), and says why.
    cli("disable", "anna", "--reason", "fraud suspected")
    current = ordering.http.get(f"/Users/{subject}").json()
    version = current["meta"]["version"]
    refusals = [
        set_active(ordering, subject, True),
        ordering.http.put(f"/Users/{subject}", json={**current, "active": True}),
    ]
    for refused in refusals:
        assert refused.status_code == 400, refused.text
        assert refused.json()["scimType"] == "mutability"
        assert "disabled by an operator" in refused.json()["detail"]
    assert ordering.http.get(f"/Users/{subject}").json()["meta"]["version"] == version
    # Changes that leave it disabled still go through.
    renamed = patch(ordering, subject, {"op": "replace", "path": "displayName", "value": "A. A."})
    assert renamed.status_code == 200 and renamed.json()["active"] is False

    # Provisioning's deactivation, then an operator's, then provisioning's activation: disabled.
    cli("enable", "anna")
    set_active(ordering, subject, False)
    cli("disable", "anna")
    assert set_active(ordering, subject, True).status_code == 400
    shown = json.loads(cli("show", "anna"))
    assert shown["state"] == "disabled" and shown["disabled"]["by"].startswith("cli:")

    # The operator's `enable` lifts it; the audit trail tells who did what.
    cli("enable", "anna")
    assert ordering.http.get(f"/Users/{subject}").json()["active"] is True
    events = [
        (event, actor.split(":")[0])
        for event in ("user.disabled", "user.enabled")
        for actor, _, _ in audit_events(idp, event)
    ]
    assert events == [
        ("user.disabled", "client"),
        ("user.disabled", "cli"),
        ("user.disabled", "client"),
        ("user.disabled", "cli"),
        ("user.enabled", "client"),
        ("user.enabled", "cli"),
        ("user.enabled", "cli"),
    ]


def test_a_delete_cannot_undo_an_operators_disable(idp, ordering, outbox):
    """DELETE and the same POST again would give the person an active account and a new
    activation mail: the DELETE is refused while the operator's disable holds, and the account
    stays as it is (with its username and externalId), visible as inactive."""
    subject = ordering.post(ordering.user_payload()).json()["id"]
    operator = idp.app.test_cli_runner()
    result = operator.invoke(args=["users", "disable", "anna", "--reason", "fraud suspected"])
    assert result.exit_code == 0, result.output
    mails = len(outbox.mails())

    refused = ordering.http.delete(f"/Users/{subject}")
    assert refused.status_code == 400, refused.text
    assert refused.json()["scimType"] == "mutability"
    assert "disabled by an operator" in refused.json()["detail"]
    assert "only an operator can release it" in refused.json()["detail"]
    shown = ordering.http.get(f"/Users/{subject}").json()
    assert (shown["userName"], shown["active"]) == ("anna", False)
    again = ordering.post(ordering.user_payload())
    assert again.status_code == 409, again.text
    assert ordering.http.get(f"/Users/{subject}").json()["active"] is False
    assert len(outbox.mails()) == mails

    # Once the operator lifts the hold, the ordering system's DELETE goes through.
    assert operator.invoke(args=["users", "enable", "anna"]).exit_code == 0
    assert ordering.http.delete(f"/Users/{subject}").status_code == 204
    assert ordering.http.get(f"/Users/{subject}").status_code == 404
