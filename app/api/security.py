"""Who is calling: API keys, roles, and the dependency every endpoint declares.

Roles are ordered: a viewer reads, an operator also submits and controls runs and
workflows, an admin also manages keys and reads the audit log. Every endpoint but
health names the least role it needs with ``Depends(require(Role.X))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


@dataclass(frozen=True)
class Principal:
    """The caller: a key's id and name, or "development" when auth is off."""

    key_id: str
    name: str
    role: Role


DEVELOPMENT = Principal("-", "development (auth off)", Role.ADMIN)


def authenticate(request: Request) -> Principal:
    """The caller of ``request``, from its API key; 401 without a valid key."""
    if not request.app.state.settings.api_auth:
        return DEVELOPMENT
    keys: Any = request.app.state.keys
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    token = token or request.headers.get("x-api-key", "").strip()
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "an API key is required: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    principal: Principal | None = keys.verify(token)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "the API key is unknown or revoked",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


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
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]

#: Documented on every router whose endpoints take a key (so the schema covers them).
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The request could not be read (malformed JSON, a bad cursor)."},
    401: {"description": "No API key, or an unknown or revoked one."},
    403: {"description": "The key's role is too low for this endpoint."},
    413: {"description": "The request body is over the configured limit."},
}
