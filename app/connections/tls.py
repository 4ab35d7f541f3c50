"""A certificate given as a path, a URL or base64 text, as a file the drivers can read.

The replaced platform took TLS certificates (a CA, a client certificate) in any of
three forms; drivers (pymongo, PyMySQL, kafka-python, httpx) want a file path. The
option ``<prefix>_file`` is a path used as it is; ``<prefix>_url`` is fetched (with a
timeout) and ``<prefix>_base64`` decoded, each written once per content into a private
temporary directory of this process (mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chordflow.errors import StepFailed

#: Seconds a certificate URL gets to answer.
FETCH_TIMEOUT = 10.0
_dir: Path | None = None


def _private_dir() -> Path:
    global _dir
    if _dir is None or not _dir.is_dir():
        _dir = Path(tempfile.mkdtemp(prefix="chordflow-tls-"))
    return _dir


def cert_file(options: Mapping[str, Any], prefix: str) -> str | None:
    """The path of the certificate ``prefix`` names in ``options`` (None without one)."""
    if options.get(f"{prefix}_file"):
        return str(options[f"{prefix}_file"])
    data: bytes
    if options.get(f"{prefix}_url"):
        import httpx

        url = str(options[f"{prefix}_url"])
        try:
            response = httpx.get(url, timeout=FETCH_TIMEOUT, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise StepFailed(f"options.{prefix}_url: cannot fetch {url}: {exc}") from None
        data = response.content
    elif options.get(f"{prefix}_base64"):
        try:
            data = base64.b64decode(str(options[f"{prefix}_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise StepFailed(f"options.{prefix}_base64: not valid base64") from None
    else:
        return None
    path = _private_dir() / f"{hashlib.sha256(data).hexdigest()[:24]}.pem"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    return str(path)
