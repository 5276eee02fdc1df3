"""All SCIM 2.0 glue (scim2-models): the User resource exactly as we serve it, the discovery
documents published from the same models, filters translated to SQL, and the translation
between resources and accounts. Decisions live in idp.accounts.provisioning."""

import hashlib
import json
from typing import Annotated, Any

from pydantic import EmailStr, Field
from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ComplexAttribute,
    ETag,
    Extension,
    Filter,
    InvalidFilterException,
    Meta,
    Patch,
    Required,
    Resource,
    ResourceType,
    ScimFilter,
    ServiceProviderConfig,
    Sort,
    Uniqueness,
)
from scim2_models.path import FilterVisitor
from scim2_models.path.expressions import (
    CompareOperator,
    Comparison,
    LogicalExpr,
    LogicalOperator,
    ValuePath,
)
from sqlalchemy import and_, func, or_

from idp.accounts import entitlements
from idp.accounts.models import User as Account
from idp.accounts.models import UserState
from idp.accounts.provisioning import AccountData
from idp.accounts.users import username_key
from idp.errors import UserError

CORE_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
CUSTOMER_SCHEMA = "urn:ecotel:params:scim:schemas:extension:customer:2.0:User"
LANGUAGES = ["de", "en"]
ONLY_ONE = "Always true in what we return: an account has one, and it is the primary one."


class Email(ComplexAttribute):
    value: Annotated[EmailStr | None, Required.true] = None
    type: Annotated[str | None, Field(examples=["work"])] = None
    primary: Annotated[bool | None, Field(description=ONLY_ONE)] = None


class PhoneNumber(ComplexAttribute):
    value: Annotated[
        str | None,
        Required.true,
        Field(description="A mobile number in international form (+49...): it gets the SMS PINs."),
    ] = None
    type: Annotated[str | None, Field(examples=["mobile"])] = None
    primary: Annotated[bool | None, Field(description=ONLY_ONE)] = None


class Name(ComplexAttribute):
    """The parts of the person's name, as Microsoft Entra ID and Okta send them; the
    activation mail greets by the displayName, or else by these."""

    formatted: Annotated[
        str | None, Field(description="The full name as shown, e.g. 'Ms. Anna Admin'.")
    ] = None
    family_name: str | None = None
    given_name: str | None = None


class Entitlement(ComplexAttribute):
    # The canonical values are the configured products; see `user_schema`.
    value: Annotated[str | None, Required.true] = None


class Customer(Extension):
    """The customer the account belongs to."""

    __schema__ = URN(CUSTOMER_SCHEMA)

    customer_number: Annotated[
        str | None, Field(description="The customer number in the ordering system.")
    ] = None


class User(Resource[Any]):
    """A customer's portal administrator. Signs in with password and SMS PIN; never with a
    password set here: the activation mail lets the person choose one."""

    __schema__ = URN(CORE_USER_SCHEMA)

    user_name: Annotated[
        str | None,
        Uniqueness.server,
        Required.true,
        Field(description="The login name: 1 to 64 of a-z 0-9 . _ - @, case-insensitive."),
    ] = None
    name: Annotated[Name | None, Field(description="The parts of the person's name.")] = None
    display_name: Annotated[str | None, Field(description="The full name.")] = None
    preferred_language: Annotated[
        str | None,
        Field(
            description="Language of mails and SMS; without it, the first of these.",
            examples=LANGUAGES,
        ),
    ] = None
    active: Annotated[
        bool | None,
        Required.true,
        Field(
            description="false disables the account and ends its sessions. true does not "
            "enable an account that an operator disabled: that is refused (mutability)."
        ),
    ] = None
    emails: Annotated[
        list[Email] | None,
        Required.true,
        Field(description="Exactly one address: the activation mail goes there."),
    ] = None
    phone_numbers: Annotated[
        list[PhoneNumber] | None, Required.true, Field(description="Exactly one mobile number.")
    ] = None
    entitlements: Annotated[
        list[Entitlement] | None, Field(description="Products under contract.")
    ] = None


UserResource = User[Customer]


def user_schema():
    schema = User.to_schema()
    schema["entitlements"]["value"].canonical_values = entitlements.known()
    return schema


def schemas() -> list:
    return [user_schema(), Customer.to_schema()]


def resource_types() -> list[ResourceType]:
    return [ResourceType.from_resource(UserResource)]


def service_provider_config(max_results: int, documentation_uri: str) -> ServiceProviderConfig:
    return ServiceProviderConfig(
        documentation_uri=documentation_uri,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=max_results),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type="oauthbearertoken",
                name="OAuth 2.0 client credentials",
                description="A bearer token of our token endpoint for the scope scim.",
                primary=True,
            )
        ],
    )


# --- Accounts and resources -----------------------------------------------------------------


def _only_one(values: list | None, what: str):
    if not values or len(values) != 1:
        raise UserError(f"give exactly one {what}")
    return values[0].value


def account_data(resource: UserResource) -> AccountData:
    """What a creation, replacement or patched resource asks for."""
    customer = resource[Customer]
    language = resource.preferred_language
    if language is not None and language not in LANGUAGES:
        raise UserError(f"preferredLanguage must be one of {', '.join(LANGUAGES)}")
    name = resource.name or Name()
    return AccountData(
        username=resource.user_name or "",
        name=resource.display_name,
        formatted_name=name.formatted,
        given_name=name.given_name,
        family_name=name.family_name,
        email=str(_only_one(resource.emails, "e-mail address in emails")),
        phone=_only_one(resource.phone_numbers, "mobile number in phoneNumbers"),
        locale=language,
        entitlements=[entry.value for entry in resource.entitlements or []],
        customer_number=customer.customer_number if customer else None,
        external_id=resource.external_id,
        active=resource.active,
    )


def to_resource(account: Account, location: str) -> UserResource:
    resource = UserResource(
        id=account.subject,
        external_id=account.external_id,
        user_name=account.username,
        name=_name(account),
        display_name=account.name,
        preferred_language=account.locale,
        active=account.state != UserState.DISABLED,
        emails=[Email(value=account.email, type="work", primary=True)],
        phone_numbers=[PhoneNumber(value=account.phone, type="mobile", primary=True)],
        entitlements=[Entitlement(value=value) for value in entitlements.of(account)] or None,
    )
    if account.customer_number:
        resource[Customer] = Customer(customer_number=account.customer_number)
    resource.meta = Meta(
        resource_type="User",
        created=account.created_at,
        last_modified=account.updated_at,
        location=location,
        version=version(resource),
    )
    return resource


def _name(account: Account) -> Name | None:
    parts = Name(
        formatted=account.formatted_name,
        family_name=account.family_name,
        given_name=account.given_name,
    )
    return parts if parts.model_dump(exclude_none=True) else None


def version(resource: UserResource) -> str:
    """A strong ETag over everything a client sees but `meta`: it changes exactly when the
    representation does (a login, which touches the row, leaves it alone)."""
    content = resource.model_dump(mode="json", exclude={"meta"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


# --- Filters ----------------------------------------------------------------------------------


class _SqlFilter(FilterVisitor):
    """`eq` on userName, externalId, id and emails.value (also as emails[value eq ...]),
    joined by and/or: what an ordering system looks accounts up by."""

    def visit_comparison(self, node: Comparison):
        if node.op != CompareOperator.eq or not isinstance(node.value, str):
            raise InvalidFilterException(detail="only 'eq' with a string value is supported")
        return self._equals(node.attr_path.attr.lower(), node.attr_path.sub_attr, node.value)

    def _equals(self, attr: str, sub_attr: str | None, value: str):
        sub = (sub_attr or "value").lower()
        if attr == "username" and sub_attr is None:
            return Account.username_key == username_key(value)
        if attr == "externalid" and sub_attr is None:
            return Account.external_id == value
        if attr == "id" and sub_attr is None:
            return Account.subject == value
        if attr == "emails" and sub == "value":
            return func.lower(Account.email) == value.strip().lower()
        raise InvalidFilterException(
            detail="filter on userName, externalId, id or emails.value with 'eq'"
        )

    def visit_value_path(self, node: ValuePath):
        inner = node.val_filter
        if not isinstance(inner, Comparison) or inner.op != CompareOperator.eq:
            raise InvalidFilterException(detail='only emails[value eq "..."] is supported')
        return self._equals(node.attr_path.attr.lower(), inner.attr_path.attr, str(inner.value))

    def visit_logical_expr(self, node: LogicalExpr):
        joined = and_ if node.op == LogicalOperator.and_ else or_
        return joined(*(self.visit(term) for term in node.terms))

    def visit_not(self, _node):
        raise InvalidFilterException(detail="'not' is not supported")

    def visit_present(self, _node):
        raise InvalidFilterException(detail="'pr' is not supported")


def filter_condition(parsed: ScimFilter):
    """A SQL condition for a parsed SCIM filter; InvalidFilterException for what we cannot
    answer."""
    return _SqlFilter().visit(parsed.ast)
