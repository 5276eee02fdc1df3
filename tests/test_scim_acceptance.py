"""Acceptance: the ordering system provisions a customer's administrator with a cloud.phone
contract; she activates her account and signs in to e:service and to cloud.phone; deactivation
by the ordering system ends her sessions at both. Without the contract, cloud.phone is closed
to her, and the identity provider tells her why."""

import requests
from scim2_models import PatchOp, PatchOperation

from tests.conftest import PASSWORD, path_of, post_form
from tests.oidc_fixtures import BackchannelReceiver, Browser
from tests.scim_fixtures import new_user
from tests.test_oidc_logout import logout_claims


def userinfo(idp, token: dict) -> requests.Response:
    return requests.get(
        idp.url("/userinfo"),
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=5,
    )


def test_order_activation_sign_in_everywhere_and_deactivation(idp, ordering, outbox, make_rp):
    created = ordering.scim.create(new_user(ordering))
    assert len(outbox.mails()) == 1
    activation = idp.app.test_client()
    response = post_form(
        activation,
        path_of(outbox.last_link()),
        {"password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert response.status_code == 303
    assert post_form(activation, "/pin", {"pin": outbox.last_pin()}).status_code == 200

    receivers = BackchannelReceiver(), BackchannelReceiver()
    try:
        eservice = make_rp("--backchannel-logout-uri", receivers[0].uri, name="e:service")
        cloudphone = make_rp(
            "--backchannel-logout-uri",
            receivers[1].uri,
            "--require-entitlement",
            "cloud.phone",
            name="cloud.phone",
        )
        browser = Browser(idp, outbox)
        portal_token = eservice.sign_in(browser)
        phone_token = cloudphone.sign_in(browser)
        assert browser.logins == 1
        claims = cloudphone.verify_id_token(phone_token["id_token"])
        assert claims["sub"] == created.id and claims["entitlements"] == ["cloud.phone"]
        assert userinfo(idp, portal_token).json()["entitlements"] == ["cloud.phone"]

        User = ordering.User
        deactivate = PatchOp[User](
            operations=[
                PatchOperation[User](op=PatchOperation.Op.replace_, path="active", value=False)
            ]
        )
        assert ordering.scim.modify(User, created.id, deactivate).active is False
        sids = {logout_claims(idp, receiver.wait())["sid"] for receiver in receivers}
        assert sids == {claims["sid"]}
    finally:
        for receiver in receivers:
            receiver.stop()
    for token in (portal_token, phone_token):
        assert userinfo(idp, token).status_code == 401
    again = eservice.callback_params(browser.visit(eservice.authorization_url(prompt="none")))
    assert again["error"] == "login_required"


def test_without_the_contract_cloudphone_is_closed_and_says_why(idp, browser, make_rp):
    cloudphone = make_rp("--require-entitlement", "cloud.phone", name="cloud.phone")
    page = browser.visit(cloudphone.authorization_url())
    assert page.status_code == 403
    assert "Kein Zugang zu cloud.phone" in page.text and "anna" in page.text
    browser.http.headers["Accept-Language"] = "en"
    page = browser.visit(cloudphone.authorization_url())
    assert page.status_code == 403 and "No access to cloud.phone" in page.text
    assert "does not include cloud.phone" in page.text
    # Without a page to show, the relying party is told.
    silent = cloudphone.callback_params(browser.visit(cloudphone.authorization_url(prompt="none")))
    assert silent["error"] == "access_denied"
    # The portal is open to her all the same, with no products in the claim.
    eservice = make_rp(name="e:service")
    claims = eservice.verify_id_token(eservice.sign_in(browser)["id_token"])
    assert claims["entitlements"] == []
    assert browser.logins == 1


def test_a_contract_ended_by_the_ordering_system_ends_access_to_its_product(
    idp, ordering, outbox, make_rp
):
    created = ordering.scim.create(new_user(ordering))
    activation = idp.app.test_client()
    post_form(
        activation,
        path_of(outbox.last_link()),
        {"password": PASSWORD, "password_confirm": PASSWORD},
    )
    post_form(activation, "/pin", {"pin": outbox.last_pin()})
    cloudphone = make_rp("--require-entitlement", "cloud.phone", name="cloud.phone")
    browser = Browser(idp, outbox)
    token = cloudphone.sign_in(browser)
    current = ordering.scim.query(ordering.User, created.id)
    current.entitlements = None
    ordering.scim.replace(current)
    assert userinfo(idp, token).status_code == 401
    refreshed = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(cloudphone.client_id, cloudphone.client_secret),
        timeout=5,
    )
    assert refreshed.status_code == 400
    assert browser.visit(cloudphone.authorization_url()).status_code == 403
