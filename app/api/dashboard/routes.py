"""The dashboard's routes: its page at ``/``, its files at ``/ui/static``, and the
session (sign in, who am I, sign out) at ``/ui/session``.

Signing in checks the key as every request does (``check_token``: the same cache,
failure limits and 401s), then keeps it in an httpOnly, SameSite=Strict cookie
(``chordflow.api.session``). The answer carries the session's CSRF token, which the
page keeps in memory and sends with every change; ``GET /ui/session`` gives it again
after a reload. The page is sent with a Content-Security-Policy that allows only this
server's own scripts, styles and connections.
"""

from __future__ import annotations

from pathlib import Path

from chordflow.api.principal import Principal
from chordflow.api.security import DEVELOPMENT, check_token
from chordflow.api.session import SESSION_COOKIE, SESSION_SECONDS, csrf_token
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

STATIC = Path(__file__).with_name("static")

#: Only this server's own files and API: an injected script or a hostile page can load
#: nothing from elsewhere and send nothing elsewhere.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


class SignIn(BaseModel):
    key: str = Field(min_length=1, max_length=400, description="An API key.")


class SessionOut(BaseModel):
    """Who the browser is signed in as, and what the page needs to act for it."""

    signed_in: bool
    auth: bool = Field(description="False when the API runs without keys (development).")
    name: str | None = None
    role: str | None = None
    key_id: str | None = None
    csrf: str | None = Field(default=None, description="Send as X-CSRF-Token on changes.")
    flower_url: str | None = None


def _session(request: Request, principal: Principal | None, key: str | None) -> SessionOut:
    settings = request.app.state.settings
    return SessionOut(
        signed_in=principal is not None, auth=settings.api_auth,
        name=principal.name if principal else None,
        role=str(principal.role) if principal else None,
        key_id=principal.key_id if principal else None,
        csrf=csrf_token(key) if key else None,
        flower_url=(settings.flower_url.rstrip("/") or None) if settings.flower_url else None,
    )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    """The dashboard's one page; its script draws every view (``#/runs``, ...)."""
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers={
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        "Cache-Control": "no-cache"})


@router.get("/ui/session", response_model=SessionOut)
def who(request: Request) -> SessionOut:
    """The signed-in key (from the cookie), or ``signed_in`` false; never a 401, so a
    page that is not signed in shows its sign-in form without an error."""
    if not request.app.state.settings.api_auth:
        return _session(request, DEVELOPMENT, None)
    key = request.cookies.get(SESSION_COOKIE, "").strip()
    if not key:
        return _session(request, None, None)
    try:
        principal = check_token(key, _address(request), request.app.state.keys,
                                request.app.state.auth_limits)
    except HTTPException as exc:
        if exc.status_code != 401:
            raise
        return _session(request, None, None)  # revoked since: sign in again
    return _session(request, principal, key)


@router.post("/ui/session", response_model=SessionOut)
def sign_in(request: Request, response: Response, body: SignIn) -> SessionOut:
    """Check ``key`` and keep it in the session cookie: 401 for a wrong key, 429 past
    the failure limits, as for any request."""
    if not request.app.state.settings.api_auth:
        return _session(request, DEVELOPMENT, None)
    key = body.key.strip()
    principal = check_token(key, _address(request), request.app.state.keys,
                            request.app.state.auth_limits)
    response.set_cookie(SESSION_COOKIE, key, max_age=SESSION_SECONDS, path="/",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return _session(request, principal, key)


@router.delete("/ui/session", status_code=204)
def sign_out(request: Request) -> Response:
    """Forget the session cookie (the key itself stays valid: revoke it to end it
    everywhere)."""
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


def mount(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: its routes and its files."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="dashboard")
