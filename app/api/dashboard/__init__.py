"""The dashboard: a browser UI served by the API at ``/``.

Plain HTML, CSS and JavaScript modules in ``static/`` (package data: no front-end
build, no CDN, nothing fetched from elsewhere at run time), plus the few routes a
browser needs and a script cannot provide: the page itself and the session cookie
(``routes``). Everything the page shows it reads from the public HTTP API and its
event stream, as any client could.
"""

from chordflow.api.dashboard.routes import STATIC, mount

__all__ = ["STATIC", "mount"]
