"""Who is calling: API keys, roles, and the dependency every endpoint declares.

Roles are ordered, each allowed what the one before it is:

- ``viewer`` reads: runs, logs, stored workflows, schedules, modules; validates.
- ``operator`` runs what authors wrote: stored, enabled workflows (with variables),
  schedules of them; cancels and re-runs runs; and submits inline workflows made only of
  the modules in ``CHORDFLOW_OPERATOR_MODULES`` (``chordflow.api.inline_policy``).
- ``author`` writes what runs: creates, changes, renames, deletes, enables and disables
  stored workflows, and submits inline workflows with any module (code included).
- ``admin`` manages keys and reads the audit log.

Every endpoint but the probes names the least role it needs with ``Viewer``,
``Operator``, ``Author`` or ``Admin``. The stored role strings are the values below, so
keys made before ``author`` existed keep their role.

Failed authentications are limited per client address and per key id
(``chordflow.api.auth_limits``); the order of the checks in ``check_token`` is what makes a
refusal cheap: the valid-key cache first, then the token's shape, then the limits, and
only then the store and the scrypt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from chordflow.api.auth_limits import AuthLimits, Refusal
from chordflow.api.keys import ApiKeys, digest, parse
from chordflow.api.principal import Principal, Role
from chordflow.api.schemas import ErrorBody
from chordflow.api.session import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, csrf_matches
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["AUTH_RESPONSES", "Admin", "Author", "DEVELOPMENT", "Operator", "Principal",
           "Role", "Viewer", "authenticate", "check_token", "require"]


DEVELOPMENT = Principal("-", "development (auth off)", Role.ADMIN)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={"WWW-Authenticate": "Bearer"})


#: The two ways of sending a key, declared so that the OpenAPI document has security
#: schemes (Swagger UI's Authorize button) and every endpoint that takes a key says
#: so. Neither refuses anything itself (``auto_error=False``): ``authenticate`` reads
#: the headers and decides, as it always has, with the API's own 401s.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="An API key: 'Authorization: Bearer cf_<id>_<secret>'.")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                              description="The same key in an X-API-Key header.")


def authenticate(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
    _header: Annotated[str | None, Depends(API_KEY_HEADER)] = None,
) -> Principal:
    """The caller of ``request``, from its API key; 401 without a valid key, 429 when
    its address or key id has failed too often.

    The key comes from the ``Authorization`` or ``X-API-Key`` header, else from the
    dashboard's session cookie (``chordflow.api.session``), in which case a request
    that changes something must carry the session's CSRF token too (403 otherwise)."""
    if not request.app.state.settings.api_auth:
        return DEVELOPMENT
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    token = token or request.headers.get("x-api-key", "").strip()
    from_cookie = not token
    token = token or request.cookies.get(SESSION_COOKIE, "").strip()
    if not token:
        raise _unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    address = request.client.host if request.client else "unknown"
    principal = check_token(token, address, request.app.state.keys,
                            request.app.state.auth_limits)
    if from_cookie and request.method not in SAFE_METHODS and \
            not csrf_matches(token, request.headers.get(CSRF_HEADER)):
        # A browser session's change must come from the dashboard's own page.
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this request is authenticated by the session cookie and "
                            f"needs the session's {CSRF_HEADER} header (CSRF protection)")
    return principal


def check_token(token: str, address: str, keys: ApiKeys, limits: AuthLimits) -> Principal:
    """The principal of ``token`` sent from ``address``, cheapest check first: a cached
    key is never limited; a malformed token is refused for nothing; a client over its
    failure budget gets 429 before the store is read or a scrypt computed."""
    principal = keys.cached(token)
    if principal is not None:
        return principal
    parsed = parse(token)
    if parsed is None:
        raise _unauthorized("the API key is unknown or revoked: it does not read "
                            "'cf_<id>_<secret>'")
    ticket = limits.admit(address, parsed[0], digest(token))
    if isinstance(ticket, Refusal):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, ticket.detail,
                            headers={"Retry-After": ticket.retry_after_header})
    try:
        verdict = keys.check(token)
    except BaseException:
        limits.release(ticket)  # e.g. the store is down: a 503, not a failure
        raise
    limits.settle(ticket, valid=verdict.principal is not None, known_id=verdict.known_id)
    if verdict.principal is None:
        raise _unauthorized("the API key is unknown or revoked")
    return verdict.principal


def require(role: Role) -> Callable[..., Principal]:
    """A dependency admitting callers whose role is ``role`` or higher; 403 otherwise."""

    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role.rank < role.rank:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this needs the {role} role; key '{principal.name}' is {principal.role}",
            )
        return principal

    return check


#: What endpoints declare: the caller, admitted with at least this role.
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Author = Annotated[Principal, Depends(require(Role.AUTHOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]

#: Documented on every router whose endpoints take a key (so the schema covers them).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody,
          "description": "The request could not be read (malformed JSON, a bad cursor)."},
    401: {"model": ErrorBody, "description": "No API key, or an unknown or revoked one."},
    403: {"model": ErrorBody,
          "description": "The key's role is too low for this endpoint (or, for an "
                         "operator, a module of the workflow)."},
    413: {"model": ErrorBody, "description": "The request body is over the configured "
                                             "limit."},
    429: {"model": ErrorBody,
          "description": "Too many failed authentications from this address or for "
                         "this key id; see Retry-After."},
}
