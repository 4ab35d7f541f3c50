"""Who a caller is: a key's id, name and role.

Its own module, below both the key store (app/api/keys.py) and the dependency every
endpoint declares (app/api/security.py), which both need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    AUTHOR = "author"
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
