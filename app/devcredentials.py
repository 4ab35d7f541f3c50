"""The secrets of a ``chordflow dev`` cluster, kept in its data directory between starts.

``credentials.json`` (mode 0600: the user's alone) holds the admin API key made on the
first start and Flower's login. Both are reused on later starts, so the export lines a
user pasted into other terminals, and the login a browser remembers, keep working
after a restart. The key is checked against MongoDB on every start: one that is gone
(another MongoDB, a wiped database) or revoked is replaced by a new one.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "credentials.json"
KEY_NAME = "chordflow dev"
FLOWER_USER = "admin"


@dataclass(frozen=True)
class Credentials:
    api_key_id: str
    api_key: str
    #: ``user:password``, as FLOWER_BASIC_AUTH reads it.
    flower_login: str


def read(path: Path) -> Credentials | None:
    """The stored credentials, or None if there are none (or they are unreadable)."""
    try:
        data = json.loads(path.read_text())
        return Credentials(str(data["api_key_id"]), str(data["api_key"]),
                           str(data["flower_login"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(path: Path, creds: Credentials) -> None:
    """Write ``creds`` readable by this user only, replacing the file in one step (a
    crash never leaves half a file, nor a moment where it is readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(creds), out, indent=2)
        out.write("\n")
    os.replace(tmp, path)


def _key_is_live(db: Any, key_id: str) -> bool:
    from chordflow.api.keys import ApiKeys
    from chordflow.api.principal import Role

    key = ApiKeys(db).get(key_id)
    return key is not None and key["revoked_at"] is None and key["role"] == str(Role.ADMIN)


def ensure(data_dir: Path, mongo_url: str, mongo_db: str) -> Credentials:
    """The cluster's credentials: those stored under ``data_dir`` if their key is still
    an active admin key in MongoDB, else a new key (and the stored Flower login, or a
    new one)."""
    from chordflow.api.keys import ApiKeys
    from chordflow.api.principal import Role
    from pymongo import MongoClient

    path = data_dir / FILE_NAME
    stored = read(path)
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[mongo_db]
        if stored is not None and _key_is_live(db, stored.api_key_id):
            creds = stored
        else:
            key_id, token = ApiKeys(db).create(KEY_NAME, Role.ADMIN)
            login = (stored.flower_login if stored is not None
                     else f"{FLOWER_USER}:{secrets.token_urlsafe(12)}")
            creds = Credentials(key_id, token, login)
    finally:
        client.close()
    if creds != stored:
        write(path, creds)
    os.chmod(path, 0o600)  # also a file someone made readable by others since
    return creds
