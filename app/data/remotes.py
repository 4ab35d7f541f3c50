"""The deployment's remotes: named once, used by every step, never showing a credential.

Two sources, both optional:

- ``CHORDFLOW_RCLONE_CONFIG``: an rclone config file (what ``rclone config`` writes;
  passwords in it obscured, as rclone keeps them).
- ``CHORDFLOW_REMOTES``: a JSON object, name -> rclone options, exactly the entries the
  replaced data-staging service read from its settings file::

      {"archive": {"type": "s3", "provider": "Minio", "endpoint": "http://10.0.0.5:9000",
                   "access_key_id": "${secrets.ARCHIVE_KEY}",
                   "secret_access_key": "${secrets.ARCHIVE_SECRET}"}}

  A value that is exactly ``${secrets.NAME}`` is read from the deployment's secrets
  (``CHORDFLOW_SECRETS``, ``CHORDFLOW_SECRETS_DIR``) on the host that runs rclone; a
  literal value is accepted too (the replaced service's files had them). Values are
  plain: a password option (rclone's ``IsPassword``: sftp's and webdav's ``pass``) is
  obscured for rclone here. A remote of the same name as one in the config file wins,
  option by option.

rclone gets the remotes through its environment (``RCLONE_CONFIG_<NAME>_<OPTION>``,
readable only by the worker's own user), never through its command line (which ``ps``
shows to everyone); the config file through ``RCLONE_CONFIG``. Without a config file,
``RCLONE_CONFIG`` points nowhere, so a worker never picks up its OS user's own rclone
config by accident.

``Remote.public()`` is what the API and the CLI show: name, type, provider and where it
was defined. Every credential's value is known here (rclone's ``Sensitive`` and
``IsPassword`` options, and every value read from a secret), so that ``redact`` can take
it out of anything rclone prints before it is logged, recorded or returned.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chordflow.config import Settings, get_settings
from chordflow.data.binary import backend_options, find_binary, obscure, quick
from chordflow.errors import StepFailed

#: rclone's rule for a remote's name: letters, digits, ``_ - . + @`` and spaces, not
#: starting with ``-`` or a space, not ending with a space.
NAME = re.compile(r"^[\w.+@][\w.+@ -]*(?<! )$")
OPTION = re.compile(r"^[a-z][a-z0-9_]*$")
SECRET_REF = re.compile(r"^\$\{secrets\.([^{}\s]+)\}$")
#: Option names treated as credentials for a backend rclone does not describe.
CREDENTIAL_WORDS = re.compile(r"secret|pass|token|key|credential|sas_url", re.IGNORECASE)
#: Credentials shorter than this are not searched for in rclone's output (a
#: one-letter "password" would blank every such letter).
MIN_REDACTED = 4
MASK = "***"


class RemoteConfigError(StepFailed):
    """A remote that is badly defined (``CHORDFLOW_REMOTES``), unknown, or names a
    secret that does not exist; the message names the remote and the option. A step
    meeting one fails at once: retrying cannot fix the deployment's settings."""

    final = True


@dataclass(frozen=True)
class Remote:
    """One named remote. ``options`` (settings remotes only) hold the values as
    configured, references to secrets unresolved; never shown."""

    name: str
    type: str
    source: str  # "settings" or "config"
    provider: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def public(self) -> dict[str, Any]:
        """What anyone may see of the remote: no option but its type and provider."""
        return {"name": self.name, "type": self.type, "provider": self.provider,
                "source": self.source}


def parse_remotes(entries: Mapping[str, Any]) -> dict[str, Remote]:
    """The remotes of ``CHORDFLOW_REMOTES``, checked: RemoteConfigError naming the
    remote and the option that is wrong."""
    remotes: dict[str, Remote] = {}
    seen: dict[str, str] = {}
    for name, options in entries.items():
        where = f"CHORDFLOW_REMOTES: remote '{name}'"
        if not isinstance(name, str) or not NAME.match(name):
            raise RemoteConfigError(f"{where}: a name has letters, digits, '_', '-', '.', "
                                    "'+', '@' and spaces (not first or last)")
        if name.upper() in seen:  # rclone's environment names are upper case
            raise RemoteConfigError(f"{where}: the same name as '{seen[name.upper()]}' "
                                    "but for case")
        seen[name.upper()] = name
        if not isinstance(options, Mapping):
            raise RemoteConfigError(f"{where}: must be an object of rclone options")
        kind = options.get("type")
        if not isinstance(kind, str) or not kind:
            raise RemoteConfigError(f"{where}: option 'type' is required (s3, sftp, "
                                    "webdav, ...)")
        for key, value in options.items():
            if not isinstance(key, str) or not OPTION.match(key):
                raise RemoteConfigError(f"{where}: option '{key}' is not an rclone option "
                                        "name (lower case, digits and '_')")
            if not isinstance(value, str | int | float | bool) or value is None:
                raise RemoteConfigError(f"{where}: option '{key}' must be a string, a "
                                        "number or a boolean")
        provider = options.get("provider")
        remotes[name] = Remote(name, kind, "settings",
                               str(provider) if provider is not None else None,
                               dict(options))
    return remotes


class Remotes:
    """The remotes of one deployment and what rclone needs to reach them."""

    def __init__(self, remotes: Mapping[str, Remote] | None = None, *,
                 config_file: Path | None = None, secrets: Mapping[str, str] | None = None,
                 binary: str | None = None):
        self.remotes = dict(remotes or {})
        self.config_file = config_file
        self.secrets = dict(secrets or {})
        self._binary = binary
        self._resolved: dict[str, dict[str, str]] | None = None
        self._secret_values: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Remotes:
        """The remotes ``settings`` define (by default the process's own)."""
        settings = settings or get_settings()
        return cls(parse_remotes(settings.remotes), config_file=settings.rclone_config,
                   secrets=settings.load_secrets(), binary=settings.rclone_binary)

    @property
    def binary(self) -> str:
        if self._binary is None or not os.path.isabs(self._binary):
            self._binary = find_binary(self._binary)
        return self._binary

    def listing(self) -> list[Remote]:
        """Every remote, the config file's and the settings', by name."""
        found = dict(self.remotes)
        if self.config_file is not None:
            for entry in json.loads(quick(["listremotes", "--json"], binary=self.binary,
                                          env=self._config_env())):
                name = str(entry.get("name"))
                if name not in found:
                    found[name] = Remote(name, str(entry.get("type") or ""), "config")
        return [found[name] for name in sorted(found)]

    def get(self, name: str) -> Remote:
        """The remote called ``name``; RemoteConfigError listing the known ones."""
        for remote in self.listing():
            if remote.name == name:
                return remote
        known = ", ".join(r.name for r in self.listing()) or "none is configured"
        raise RemoteConfigError(f"no remote '{name}' (known: {known})")

    def environment(self) -> dict[str, str]:
        """What rclone's environment needs to reach every remote (with credentials:
        hand it to rclone's process only, never log it)."""
        env = self._config_env()
        for name, options in self._resolve().items():
            for key, value in options.items():
                env[f"RCLONE_CONFIG_{name.upper()}_{key.upper()}"] = value
        return env

    def sensitive_values(self) -> list[str]:
        """Every credential's value, longest first (for ``redact``): plain and as
        obscured for rclone."""
        self._resolve()
        return sorted((v for v in self._secret_values if len(v) >= MIN_REDACTED),
                      key=len, reverse=True)

    def redact(self, text: str, values: list[str] | None = None) -> str:
        """``text`` with every credential's value (or each of ``values``, a list
        ``sensitive_values`` made) replaced by ``***``."""
        for value in self.sensitive_values() if values is None else values:
            text = text.replace(value, MASK)
        return text

    def _config_env(self) -> dict[str, str]:
        return {"RCLONE_CONFIG": str(self.config_file) if self.config_file else os.devnull}

    def _resolve(self) -> dict[str, dict[str, str]]:
        """Each settings remote's options as rclone reads them: secrets read, booleans
        and numbers as text, passwords obscured. Notes every credential's value."""
        if self._resolved is not None:
            return self._resolved
        resolved: dict[str, dict[str, str]] = {}
        for name, remote in self.remotes.items():
            described = backend_options(self.binary).get(remote.type)
            options: dict[str, str] = {}
            for key, raw in remote.options.items():
                value = self._value(name, key, raw)
                spec = (described or {}).get(key)
                from_secret = isinstance(raw, str) and SECRET_REF.match(raw) is not None
                if from_secret or (spec["Sensitive"] or spec["IsPassword"] if spec
                                   else bool(CREDENTIAL_WORDS.search(key))):
                    self._secret_values.add(value)
                if spec is not None and spec["IsPassword"] and value:
                    value = obscure(self.binary, value)
                    self._secret_values.add(value)
                options[key] = value
            resolved[name] = options
        self._resolved = resolved
        return resolved

    def _value(self, name: str, key: str, raw: Any) -> str:
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if not isinstance(raw, str):
            return str(raw)
        ref = SECRET_REF.match(raw)
        if ref is None:
            return raw
        secret = ref.group(1)
        if secret not in self.secrets:
            raise RemoteConfigError(f"remote '{name}': option '{key}' reads secret "
                                    f"'{secret}', which is not defined on this host "
                                    "(CHORDFLOW_SECRETS or CHORDFLOW_SECRETS_DIR)")
        return self.secrets[secret]
