"""The ordering system: a client_credentials client of the live identity provider that speaks
SCIM through the generic scim2-client library, configured by discovery alone."""

import json

import httpx2
import pytest
import requests
from scim2_client.engines.httpx2 import SyncSCIMClient

CUSTOMER = "urn:ecotel:params:scim:schemas:extension:customer:2.0:User"


def service_client(idp, *extra: str) -> dict:
    args = ["clients", "create", "Ordering system", "--grant", "client_credentials", "--json"]
    result = idp.app.test_cli_runner().invoke(args=[*args, "--scope", "scim", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def service_token(idp, credentials: dict, **data) -> requests.Response:
    return requests.post(
        idp.url("/token"),
        data={"grant_type": "client_credentials", "scope": "scim", **data},
        auth=(credentials["client_id"], credentials["client_secret"]),
        timeout=5,
    )


class Ordering:
    """The ordering system: raw HTTP for what a generic client would refuse to send."""

    def __init__(self, idp, token: str):
        self.idp = idp
        self.base = idp.url("/scim/v2")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx2.Client(base_url=self.base, headers=self.headers, timeout=10)
        self.scim = SyncSCIMClient(self.http)
        self.scim.discover()
        self.User = self.scim.get_resource_model("User")

    def post(self, body, **kwargs) -> requests.Response:
        headers = {**self.headers, "Content-Type": "application/scim+json"}
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return requests.post(f"{self.base}/Users", data=data, headers=headers, timeout=10, **kwargs)

    def user_payload(self, username="anna", external_id="order-4711", **changes) -> dict:
        payload = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", CUSTOMER],
            "externalId": external_id,
            "userName": username,
            "displayName": "Anna Admin",
            "active": True,
            "emails": [{"value": f"{username}@example.com", "type": "work", "primary": True}],
            "phoneNumbers": [{"value": "+4915112345678", "type": "mobile"}],
            "entitlements": [{"value": "cloud.phone"}],
            CUSTOMER: {"customerNumber": "K-100200"},
        }
        payload.update(changes)
        return payload


def new_user(ordering, username="anna", external_id="order-4711", entitlements=("cloud.phone",)):
    User = ordering.User
    Customer = User.get_extension_model("Customer")
    user = User(
        user_name=username,
        external_id=external_id,
        display_name="Anna Admin",
        active=True,
        emails=[User.Emails(value=f"{username}@example.com", type="work", primary=True)],
        phone_numbers=[User.PhoneNumbers(value="+4915112345678", type="mobile")],
        entitlements=[User.Entitlements(value=value) for value in entitlements] or None,
    )
    user[Customer] = Customer(customer_number="K-100200")
    return user


@pytest.fixture
def service(idp):
    return service_client(idp)


@pytest.fixture
def ordering(idp, service):
    token = service_token(idp, service)
    assert token.status_code == 200, token.text
    return Ordering(idp, token.json()["access_token"])


def count_rows(idp, model) -> int:
    from sqlalchemy import func, select

    from idp.platform.extensions import db

    with idp.app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def stored_user(idp, **criteria):
    """A detached copy of the account's row, as the database holds it now."""
    from sqlalchemy import select

    from idp.accounts.models import User
    from idp.platform.extensions import db

    with idp.app.app_context():
        user = db.session.scalar(select(User).filter_by(**criteria))
        if user is not None:
            db.session.expunge(user)
        return user


def audit_events(idp, event: str) -> list:
    from sqlalchemy import select

    from idp.audit.models import AuditEvent
    from idp.platform.extensions import db

    with idp.app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        return [(row.actor, row.user_id, row.details) for row in rows]
