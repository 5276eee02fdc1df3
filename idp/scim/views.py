"""SCIM 2.0 (RFC 7643, RFC 7644) at {ISSUER}/scim/v2 for the ordering system: discovery and
Users. Only a bearer token of the client credentials grant for the scope `scim` gets in.

Every answer, errors included, is SCIM JSON; a failed request changes nothing."""

import json

from flask import Blueprint, Response, current_app, g, request
from pydantic import ValidationError
from scim2_models import (
    Context,
    Error,
    InvalidValueException,
    ListResponse,
    Meta,
    MutabilityException,
    NotFoundException,
    PatchOp,
    PayloadTooLargeException,
    PreconditionFailedException,
    ResponseParameters,
    SCIMException,
    SearchRequest,
    UniquenessException,
)
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, UnsupportedMediaType

from idp.accounts import provisioning
from idp.accounts.provisioning import Conflict, DisabledByOperator
from idp.errors import SendError, UserError
from idp.oidc import server as oauth
from idp.oidc import token_claims
from idp.platform import clock, outages
from idp.platform.extensions import csrf, db
from idp.platform.logging_setup import loggable_path
from idp.scim import schema as scim

bp = Blueprint("scim_api", __name__, url_prefix="/scim/v2")
csrf.exempt(bp)

MEDIA_TYPE = "application/scim+json"
SCOPE = "scim"
# The largest startIndex or count taken: what the database's integers hold. A larger one is
# a client's mistake, answered as such.
MAX_INDEX = 2**31 - 1
# What a list or search request may say; we do not sort (ServiceProviderConfig).
SEARCH_PARAMETERS = ("filter", "startIndex", "count", "attributes", "excludedAttributes")


def base_url() -> str:
    return oauth.service_audience(SCOPE)


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, detail: str, scim_type: str | None = None, headers=None) -> Response:
    body = Error(status=status, scim_type=scim_type, detail=detail)
    return _json(
        body.model_dump(mode="json", scim_ctx=None, by_alias=True, exclude_none=True),
        status,
        headers,
    )


def _scim_error(error: SCIMException) -> Response:
    found = error.to_error()
    return _error(found.status or 400, found.detail or "", found.scim_type)


@bp.errorhandler(SCIMException)
def scim_exception(error: SCIMException):
    db.session.rollback()
    return _scim_error(error)


@bp.errorhandler(ValidationError)
def invalid_payload(error: ValidationError):
    db.session.rollback()
    first = Error.from_validation_errors(error)[0]
    return _error(400, first.detail or "invalid request", first.scim_type or "invalidValue")


@bp.errorhandler(UserError)
def invalid_value(error: UserError):
    db.session.rollback()
    if isinstance(error, Conflict):
        return _scim_error(UniquenessException(detail=str(error)))
    if isinstance(error, DisabledByOperator):
        return _scim_error(MutabilityException(detail=str(error)))
    return _error(400, str(error), "invalidValue")


@bp.errorhandler(SendError)
def mail_failed(_error: SendError):
    db.session.rollback()
    return _error(503, "the activation mail could not be sent; nothing was changed")


def unavailable(_unavailable: Exception):
    # Before the catch-all below, which would make it a 500: the database or Redis is away.
    outages.roll_back()
    detail = "temporarily unavailable; nothing was changed, try again"
    return _error(503, detail, headers=outages.retry_after())


for _unavailable in outages.UNAVAILABLE_ERRORS:
    bp.register_error_handler(_unavailable, unavailable)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    db.session.rollback()
    if isinstance(error, RequestEntityTooLarge):
        return _scim_error(PayloadTooLargeException(detail="the request body is too large"))
    return _error(error.code or 500, error.description or error.name)


@bp.errorhandler(Exception)
def unexpected(_error: Exception):
    db.session.rollback()
    current_app.logger.exception(
        "unhandled error on %s %s", request.method, loggable_path(request.path)
    )
    return _error(500, "internal error; nothing was changed")


@bp.before_request
def authenticate():
    header = request.headers.get("Authorization", "")
    value = header[7:].strip() if header[:7].lower() == "bearer " else None
    client = token_claims.authenticate_service_token(
        value, audience=base_url(), scope=SCOPE, now=clock.now()
    )
    if client is None:
        challenge = 'Bearer error="invalid_token", scope="scim"' if value else "Bearer"
        return _error(
            401,
            "a bearer token for the scope scim is required",
            None,
            {"WWW-Authenticate": challenge},
        )
    g.scim_actor = f"{provisioning.ACTOR_PREFIX}{client.client_id}"
    # Refused while it is read, before any of it is parsed (RequestEntityTooLarge above).
    request.max_content_length = current_app.config["SCIM_MAX_BODY_BYTES"]
    # Accounts past their retention are erased on the way, in a transaction of their own: its
    # audit events lock the audit chain head until the commit, which must not wait for this
    # request's work (an activation mail to send), nor be undone if that fails.
    writes = request.method in ("POST", "PUT", "PATCH", "DELETE")
    if writes and provisioning.erase_expired(clock.now()):
        db.session.commit()
    return None


# --- Discovery ----------------------------------------------------------------------------------


def _listed(resources: list, context=Context.SEARCH_RESPONSE) -> Response:
    body = ListResponse[type(resources[0])](
        total_results=len(resources),
        start_index=1,
        items_per_page=len(resources),
        resources=resources,
    )
    return _json(body.model_dump(mode="json", scim_ctx=context))


def _with_location(resource, path: str):
    resource.meta = Meta(resource_type=type(resource).__name__, location=base_url() + path)
    return resource


@bp.get("/ServiceProviderConfig")
def service_provider_config():
    config = scim.service_provider_config(
        current_app.config["SCIM_MAX_RESULTS"], current_app.config["ISSUER"]
    )
    return _json(config.model_dump(mode="json", scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


def _schemas() -> list:
    return [_with_location(schema, f"/Schemas/{schema.id}") for schema in scim.schemas()]


def _resource_types() -> list:
    return [_with_location(found, f"/ResourceTypes/{found.id}") for found in scim.resource_types()]


@bp.get("/Schemas")
def schemas():
    return _listed(_schemas())


@bp.get("/Schemas/<path:schema_id>")
def schema(schema_id):
    found = next((item for item in _schemas() if item.id == schema_id), None)
    if found is None:
        raise NotFoundException(detail=f"no schema {schema_id}")
    return _json(found.model_dump(mode="json", scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


@bp.get("/ResourceTypes")
def resource_types():
    return _listed(_resource_types())


@bp.get("/ResourceTypes/<name>")
def resource_type(name):
    found = next((item for item in _resource_types() if item.id == name), None)
    if found is None:
        raise NotFoundException(detail=f"no resource type {name}")
    return _json(found.model_dump(mode="json", scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


# --- Users -----------------------------------------------------------------------------------


def _location(user) -> str:
    return f"{base_url()}/Users/{user.subject}"


def _response_parameters() -> ResponseParameters:
    """RFC 7644 3.9: `attributes` or `excludedAttributes` of the query, for every answer that
    returns a user."""
    return ResponseParameters[scim.UserResource].model_validate(
        {
            "attributes": request.args.get("attributes"),
            "excludedAttributes": request.args.get("excludedAttributes"),
        }
    )


def _user_response(user, status: int = 200, context=Context.RESOURCE_QUERY_RESPONSE) -> Response:
    resource = scim.to_resource(user, _location(user))
    headers = {"ETag": resource.meta.version, "Location": resource.meta.location}
    body = resource.model_dump(
        mode="json", scim_ctx=context, response_parameters=_response_parameters()
    )
    return _json(body, status, headers)


def _payload(model, context):
    if not request.is_json and request.mimetype != MEDIA_TYPE:
        raise UnsupportedMediaType(f"send {MEDIA_TYPE}")
    return model.model_validate_json(request.get_data(), scim_ctx=context)


def _user(subject: str):
    user = provisioning.find(subject)
    if user is None:
        raise NotFoundException(detail=f"no user {subject}")
    return user


def _check_precondition(user) -> None:
    """RFC 7644 3.14: a change made against an older version is refused."""
    expected = request.headers.get("If-Match")
    if expected is None:
        return
    current = scim.to_resource(user, _location(user)).meta.version
    tags = [tag.strip() for tag in expected.split(",")]
    if "*" not in tags and current not in tags:
        raise PreconditionFailedException(detail="the user was changed since it was read")


def _index(value: int | None, default: int) -> int:
    if value is None:
        return default
    if value > MAX_INDEX:
        raise InvalidValueException(detail=f"startIndex and count must be at most {MAX_INDEX}")
    return value


def _search(search: SearchRequest) -> Response:
    """The page of the accounts the search asks for (RFC 7644 3.4.2), with only the attributes
    it asks for."""
    start = _index(search.start_index, 1)
    count = min(_index(search.count, 100), current_app.config["SCIM_MAX_RESULTS"])
    query = provisioning.visible()
    if search.filter:
        query = query.where(scim.filter_condition(search.filter))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    found = db.session.scalars(
        query.order_by(provisioning.User.id).offset(start - 1).limit(count)
    ).all()
    body = ListResponse[scim.UserResource](
        total_results=total,
        start_index=start,
        items_per_page=len(found),
        resources=[scim.to_resource(user, _location(user)) for user in found] or None,
    )
    return _json(
        body.model_dump(mode="json", scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search)
    )


@bp.get("/Users")
def list_users():
    asked = {name: request.args[name] for name in SEARCH_PARAMETERS if name in request.args}
    return _search(
        SearchRequest[scim.UserResource].model_validate(asked, scim_ctx=Context.SEARCH_REQUEST)
    )


@bp.post("/.search")  # the root's search: Users are all the resources there are
@bp.post("/Users/.search")
def search_users():
    return _search(_payload(SearchRequest[scim.UserResource], Context.SEARCH_REQUEST))


@bp.post("/Users")
def create_user():
    resource = _payload(scim.UserResource, Context.RESOURCE_CREATION_REQUEST)
    now = clock.now()
    user, created = provisioning.create(scim.account_data(resource), actor=g.scim_actor, now=now)
    db.session.commit()
    return _user_response(user, 201 if created else 200, Context.RESOURCE_CREATION_RESPONSE)


@bp.get("/Users/<subject>")
def get_user(subject):
    user = _user(subject)
    db.session.rollback()  # releases the row lock taken for writers
    response = _user_response(user)
    if request.headers.get("If-None-Match") == response.headers["ETag"]:
        return Response(status=304, headers={"ETag": response.headers["ETag"]})
    return response


def _change(user, data) -> Response:
    after_commit = provisioning.replace(user, data, actor=g.scim_actor, now=clock.now())
    db.session.commit()
    after_commit.run()
    return _user_response(user)


@bp.put("/Users/<subject>")
def replace_user(subject):
    resource = _payload(scim.UserResource, Context.RESOURCE_REPLACEMENT_REQUEST)
    user = _user(subject)
    _check_precondition(user)
    return _change(user, scim.account_data(resource))


@bp.patch("/Users/<subject>")
def patch_user(subject):
    operations = _payload(PatchOp[scim.UserResource], Context.RESOURCE_PATCH_REQUEST)
    user = _user(subject)
    _check_precondition(user)
    resource = scim.to_resource(user, _location(user))
    operations.patch(resource)
    return _change(user, scim.account_data(resource))


@bp.delete("/Users/<subject>")
def delete_user(subject):
    user = _user(subject)
    _check_precondition(user)
    after_commit = provisioning.deprovision(user, actor=g.scim_actor, now=clock.now())
    db.session.commit()
    after_commit.run()
    return Response(status=204)
