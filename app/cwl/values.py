"""CWL values as the run's records can hold them, and back.

A run's document, job object and step outputs are recorded as JSON (and, on Celery,
as MongoDB documents), which loses two things a CWL document can say:

- **how a float was written.** cwltool prints a float read from YAML in decimal
  notation from the text it was written as (``1.23e5`` → ``123000``), and a JSON float
  from its ``repr`` (``123000.0``). :func:`plain` turns a float whose printed form
  would change that way (a whole number written with an exponent or without its
  ``.0``) into the int it prints as; an int is a valid CWL float, so validation and
  expressions see the same number.
- **integers beyond 8 bytes** (``long``/``double`` defaults such as ``42e41`` written
  out), which a MongoDB document cannot hold. :func:`encode` writes each as
  ``{"cwl:bigint": "<digits>"}`` and :func:`decode` restores it: the cwl steps decode
  their params before using them and encode what they return.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

#: The key of an encoded integer beyond 8 bytes.
BIGINT = "cwl:bigint"
_INT64 = (-(2**63), 2**63 - 1)


def plain(value: Any) -> Any:
    """``value`` (as the YAML loaders give it: ruamel's maps, lists and floats) as plain
    JSON values, each float as cwltool would print it from the text it was written as."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return _float(value)
    return value


def _float(value: float) -> float | int:
    """An int where cwltool prints the float as written as a whole number but its JSON
    form would print otherwise (``1.23e5``: ``123000``, ``123000.0``: ``123000.0``)."""
    from ruamel.yaml.scalarfloat import ScalarFloat

    if not isinstance(value, ScalarFloat) or not value.is_integer():
        return float(value)
    written = printed(value)
    if written != printed(float(value)) and _is_int(written):
        return int(written)
    return float(value)


def printed(value: float) -> str:
    """A float as cwltool's command line prints it (cwltool.builder.Builder.tostr): a
    ruamel float from the text it was written as, any other from its JSON text."""
    import json

    from ruamel.yaml.representer import RoundTripRepresenter
    from ruamel.yaml.scalarfloat import ScalarFloat
    from schema_salad.utils import yaml_no_ts

    if not isinstance(value, ScalarFloat):
        value = yaml_no_ts().load(json.dumps(float(value)))
    try:
        number = Decimal(RoundTripRepresenter().represent_scalar_float(value).value)
    except (InvalidOperation, AttributeError):
        return str(value)
    return format(number, "f") if "E" in str(number) else str(number)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def encode(value: Any) -> Any:
    """``value`` with each integer beyond 8 bytes as ``{"cwl:bigint": "<digits>"}``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else {BIGINT: str(value)}
    if isinstance(value, Mapping):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """What :func:`encode` wrote, with its integers restored."""
    if isinstance(value, Mapping):
        if len(value) == 1 and isinstance(value.get(BIGINT), str) and _is_int(value[BIGINT]):
            return int(value[BIGINT])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
