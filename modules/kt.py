"""``kt``: the replaced platform's demo module ``common.Kt``, natively.

Its workflows use it as "hello world" and in tests: ``prt1`` and ``prt2`` log their
``msg`` and answer ``{"status": true, "msg": "ret from <msg>"}``; ``prt`` (its first
README) answers the message itself. Other params are accepted and ignored, as the
platform's class did (its README's examples pass some). The procedures
dialect maps ``common.Kt`` here.
"""

from __future__ import annotations

from typing import Any

from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: it logs and returns text.
module = StepModule("kt", "The procedures platform's demo module (common.Kt).",
                    default_method="prt1", runs_code=False)


def _reply(ctx: StepContext, msg: Any) -> dict[str, Any]:
    ctx.logger.info("msg=%s", msg)
    return {"status": True, "msg": f"ret from {msg}"}


@module.method
def prt1(ctx: StepContext, msg: Any, **ignored: Any) -> dict[str, Any]:
    """Log ``msg``; outputs status and msg ("ret from <msg>").

    msg: the message to log (any value; formatted as text).
    """
    return _reply(ctx, msg)


@module.method
def prt2(ctx: StepContext, msg: Any, **ignored: Any) -> dict[str, Any]:
    """Log ``msg``; outputs status and msg ("ret from <msg>").

    msg: the message to log (any value; formatted as text).
    """
    return _reply(ctx, msg)


@module.method
def prt(ctx: StepContext, msg: Any, **ignored: Any) -> dict[str, Any]:
    """Log ``msg``; outputs status and msg (the message itself), as the platform's
    first ``Kt.prt`` did.

    msg: the message to log (any value; formatted as text).
    """
    ctx.logger.info("msg=%s", msg)
    return {"status": True, "msg": msg}
