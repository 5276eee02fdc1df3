"""The operator's commands for OpenID Connect: `idp clients ...` and `idp keys ...`."""

import json
import time

import click
from flask.cli import with_appcontext

from idp import audit, policy
from idp.cli.common import fail_on_user_error, operator
from idp.oidc import clients, keys
from idp.platform import clock
from idp.platform.extensions import db


@click.group("clients", help="Relying parties (OpenID Connect clients) and service clients.")
def clients_group():
    pass


def _client_summary(client) -> dict:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "public": clients.is_public(client),
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "access_token_format": client.access_token_format,
        "grant_type": client.grant_type,
        "scope": client.scope,
        "required_entitlement": client.required_entitlement,
        "created_at": client.created_at.isoformat(),
    }


def _print_credentials(client_id: str, secret: str | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))
        return
    click.echo(f"client_id: {client_id}")
    if secret is not None:
        click.echo(f"client_secret: {secret}")
        click.echo("The secret is shown only now; it is stored hashed.", err=True)


@clients_group.command("create")
@click.argument("name")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact, repeatable.")
@click.option("--post-logout-redirect-uri", "post_logout_uris", multiple=True)
@click.option("--backchannel-logout-uri", default=None)
@click.option("--public", is_flag=True, help="No secret (browser or native app; PKCE only).")
@click.option(
    "--id-token-alg",
    type=click.Choice(policy.ALGORITHMS),
    default=policy.DEFAULT_ALG,
    show_default=True,
    help="RS256 only for relying parties that cannot verify ES256.",
)
@click.option(
    "--access-token-format",
    type=click.Choice(clients.ACCESS_TOKEN_FORMATS),
    default=clients.JWT,
    show_default=True,
    help="opaque: a random value that reveals nothing, checked at userinfo and introspection, "
    "for relying parties that never read their access tokens; jwt: RFC 9068, checkable by "
    "signature alone.",
)
@click.option(
    "--grant",
    "grant_type",
    type=click.Choice(clients.GRANT_TYPES),
    default=clients.CODE_FLOW,
    show_default=True,
    help="client_credentials for a service acting for itself (the ordering system).",
)
@click.option("--scope", default=None, help="With client_credentials: what it may call (scim).")
@click.option(
    "--require-entitlement",
    "required_entitlement",
    default=None,
    help="Admit only people with this product under contract (cloud.phone).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@with_appcontext
@fail_on_user_error
def create(name, as_json, **options):
    """Register a client; prints its client_id and, once, its secret."""
    moment = clock.now()
    spec = clients.ClientSpec(
        name,
        redirect_uris=list(options["redirect_uris"]),
        post_logout_redirect_uris=list(options["post_logout_uris"]),
        backchannel_logout_uri=options["backchannel_logout_uri"],
        public=options["public"],
        alg=options["id_token_alg"],
        grant_type=options["grant_type"],
        scope=options["scope"],
        required_entitlement=options["required_entitlement"],
        access_token_format=options["access_token_format"],
    )
    client, secret = clients.create(spec, moment)
    audit.record("client.created", now=moment, actor=operator(), client_id=client.client_id)
    db.session.commit()
    _print_credentials(client.client_id, secret, as_json)


@clients_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@with_appcontext
def list_clients(as_json):
    """List relying parties."""
    found = [_client_summary(client) for client in clients.all_clients()]
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    for entry in found:
        kind = "public" if entry["public"] else "confidential"
        click.echo(f"{entry['client_id']:<26} {kind:<12} {entry['name']}")


@clients_group.command("delete")
@click.argument("client_id")
@with_appcontext
@fail_on_user_error
def delete(client_id):
    """Delete a relying party and every grant and token it holds."""
    moment = clock.now()
    client = clients.get(client_id)
    clients.delete(client)
    audit.record("client.deleted", now=moment, actor=operator(), client_id=client_id)
    db.session.commit()
    click.echo(f"deleted client {client_id}")


@clients_group.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@with_appcontext
@fail_on_user_error
def rotate_secret(client_id, as_json):
    """Give a confidential client a new secret; the old one stops working at once."""
    moment = clock.now()
    client = clients.get(client_id)
    secret = clients.rotate_secret(client, moment)
    audit.record("client.secret_rotated", now=moment, actor=operator(), client_id=client_id)
    db.session.commit()
    _print_credentials(client.client_id, secret, as_json)


@click.group("keys", help="Keys that sign ID and access tokens.")
def keys_group():
    pass


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@with_appcontext
def list_keys(as_json):
    """List published keys: when each signs, when it retires, and whether this server's
    secret decrypts it."""
    moment = clock.now()
    found = [
        {
            "kid": row.kid,
            "alg": row.alg,
            "created_at": row.created_at.isoformat(),
            "active_at": row.active_at.isoformat(),
            "retired_at": row.retired_at.isoformat() if row.retired_at else None,
            "signing": row.active_at <= moment
            and (row.retired_at is None or row.retired_at > moment),
            "decrypts": keys.decrypts(row),
        }
        for row in keys.published(moment)
    ]
    # A retired key that does not decrypt signs nothing any more; one that signs or will does.
    if any(not entry["decrypts"] and not entry["retired_at"] for entry in found):
        click.echo(f"Warning: {keys.undecryptable_message()}", err=True)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo(
            "no signing key yet: the first is made when the server first signs, "
            "or now with `idp keys rotate`"
        )
    for entry in found:
        state = "signing" if entry["signing"] else "published"
        broken = "" if entry["decrypts"] else "  cannot be decrypted"
        click.echo(
            f"{entry['kid']:<45} {entry['alg']:<6} {state:<9} from {entry['active_at']}{broken}"
        )


@keys_group.command("rotate")
@click.option(
    "--alg", type=click.Choice(policy.ALGORITHMS), default=policy.DEFAULT_ALG, show_default=True
)
@with_appcontext
@fail_on_user_error
def rotate(alg):
    """Add a key; it is published now and signs after KEY_PUBLISH_LEAD_TIME, or at once when
    no stored key of the algorithm can sign (none yet, or none decrypts with this secret)."""
    moment = clock.now()
    row, at_once = keys.rotate(alg, moment)
    audit.record("key.rotated", now=moment, actor=operator(), kid=row.kid, alg=alg)
    db.session.commit()
    if at_once:
        click.echo(f"new {alg} key {row.kid}: published and signing now ({at_once})")
        return
    click.echo(f"new {alg} key {row.kid}: published now, signs from {row.active_at.isoformat()}")


# A key id is a JWK thumbprint (base64url), which may begin with "-": taken as the key id, not
# refused as an unknown option.
@keys_group.command("revoke", context_settings={"ignore_unknown_options": True})
@click.argument("kid")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
@fail_on_user_error
def revoke(kid, yes):
    """Withdraw a key (a leaked one) at once: it stops signing and leaves JWKS, and what it
    signed is refused. The key that signs now needs its successor first (`idp keys rotate`),
    which then signs at once."""
    if not yes:
        click.confirm(
            f"Revoke key {kid}? Tokens it signed stop working and cannot be restored", abort=True
        )
    moment = clock.now()
    row, successor = keys.revoke(kid, moment)
    audit.record(
        "key.revoked",
        now=moment,
        actor=operator(),
        kid=row.kid,
        alg=row.alg,
        successor=successor.kid if successor else None,
    )
    db.session.commit()
    # Every server process reads its keys again once its copy is that old: after the wait, none
    # signs with this key, publishes it or accepts what it signed.
    time.sleep(keys.KEY_RECHECK_INTERVAL.total_seconds())
    click.echo(
        f"revoked {row.alg} key {row.kid}: no longer published or accepted by any server process;"
        f" relying parties drop it from their copy of JWKS when they fetch it again (they may"
        f" keep one for {policy.JWKS_MAX_AGE_SECONDS} s)"
    )
    if successor:
        click.echo(f"{row.alg} key {successor.kid} signs from now on")
