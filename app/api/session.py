"""The dashboard's session: an API key in an httpOnly cookie, and its CSRF token.

A browser signs in once with an API key (``POST /ui/session``); the key is kept in a
cookie that scripts cannot read (``HttpOnly``) and that the browser never sends with a
request started by another site (``SameSite=Strict``). The API accepts that cookie as a
credential like the ``Authorization`` header (``chordflow.api.security``), so the
dashboard uses the public API and nothing else.

A request that changes something (any method but GET, HEAD and OPTIONS) and carries
its key only in the cookie must also carry the session's CSRF token in an
``X-CSRF-Token`` header. The token is derived from the key (an HMAC of it), so there is
nothing to store and nothing to expire: another site's page can neither read the cookie
nor compute the token, and a request with a header needs the page's own script. A
client sending its key in a header is not a browser session and needs no token.

Its own module, below ``chordflow.api.security`` (which checks cookies) and the
dashboard's routes (which set them).
"""

from __future__ import annotations

import hashlib
import hmac

#: The cookie holding the session's API key.
SESSION_COOKIE = "chordflow_session"
#: The header an unsafe request authenticated by the cookie must carry.
CSRF_HEADER = "X-CSRF-Token"
#: Methods that change nothing: no CSRF token needed (RFC 9110's safe methods).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Seconds a signed-in browser stays signed in (a working day, as Airflow's default
#: session lifetime is of the same order); signing out or revoking the key ends it sooner.
SESSION_SECONDS = 12 * 3600

_CSRF_CONTEXT = b"chordflow dashboard csrf v1"


def csrf_token(key: str) -> str:
    """The CSRF token of the session holding ``key``: an HMAC of the key, which only
    the server and the page the server gave it to know."""
    return hmac.new(key.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_matches(key: str, sent: str | None) -> bool:
    """Whether ``sent`` is the CSRF token of ``key`` (compared in constant time)."""
    return bool(sent) and hmac.compare_digest(csrf_token(key), str(sent))
