"""The canonical workflow format, as pydantic models.

These models check shape and option values only. Whether a module exists, where a
reference points and whether the graph has a cycle need the whole workflow and the
module registry; ``chordflow.engine.plan.compile_plan`` checks those.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from chordflow.workflow import limits
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

#: Step names appear inside references (``${steps.NAME.outputs.x}``), so no dots or
#: brackets. Dashes are allowed: the replaced systems used them.
STEP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


def _scratch_relative(value: str) -> str:
    """A path inside the step's scratch directory: relative, never climbing out of it.
    Checked again once rendered, where it holds a reference (app/data/staging.py)."""
    if "${" in value:
        return value
    path = PurePosixPath(value)
    if path.is_absolute() or value.startswith("~"):
        raise ValueError("must be relative to the step's scratch directory")
    if ".." in path.parts:
        raise ValueError("must stay inside the step's scratch directory (no '..')")
    if not path.parts:
        raise ValueError("must name a file or folder inside the step's scratch directory")
    return value


#: A path a staging entry names in the step's scratch directory.
ScratchPath = Annotated[str, AfterValidator(_scratch_relative)]


class StageIn(BaseModel):
    """An input fetched into the step's scratch directory before its module starts,
    through the worker host's stage cache (app/data/staging.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, max_length=4096,
                        description="What to fetch, as rclone names it: "
                        "'REMOTE:bucket/path' (a file or a folder); templated.")
    path: ScratchPath = Field(min_length=1, max_length=4096,
                              description="Where in the step's scratch directory; templated.")
    tier: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="Read through this just-in-time tier (CHORDFLOW_JIT_TIERS).")
    link: Literal["hardlink", "copy", "symlink"] = Field(
        default="hardlink",
        description="How the cached object appears in the scratch directory: a hard "
        "link (a copy across file systems), a copy (the step may change it), or a "
        "symbolic link into the cache.")


class StageOut(BaseModel):
    """An output pushed from the step's scratch directory after its module succeeded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: ScratchPath = Field(min_length=1, max_length=4096,
                              description="A file or folder in the step's scratch "
                              "directory (a trailing '/' for a folder); templated.")
    dest: str = Field(min_length=1, max_length=4096,
                      description="Where to, as rclone names it: 'REMOTE:bucket/path' "
                      "(a trailing '/' puts a file inside that folder); templated.")


class Step(BaseModel):
    """One node of the DAG: a module method called with templated params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=STEP_NAME_PATTERN, max_length=200)
    module: str = Field(min_length=1)
    method: str | None = Field(
        default=None, description="Defaults to the module's default method."
    )
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Declared outputs: templates over ${params.K}, ${outputs.K} and "
        "earlier steps' outputs, merged into the step's outputs after it runs.",
    )
    retries: int = Field(default=0, ge=0, le=100)
    retry_delay: float = Field(default=0.0, ge=0, le=86400)
    retry_backoff: float = Field(
        default=1.0, ge=1, le=10,
        description="Multiply the delay by this after each retry (1: constant delay).",
    )
    timeout: float | None = Field(default=None, gt=0, le=7 * 86400)
    queue: str | None = Field(default=None, min_length=1)
    priority: int | None = Field(default=None, ge=0, le=9)
    when: str | None = None
    foreach: str | list[Any] | None = None
    continue_on_failure: bool = False
    fail_on_false_status: bool = Field(
        default=False,
        description='Treat outputs {"status": false, ...} as a failure (the procedures '
        "dialect's convention).",
    )
    connection: str | dict[str, Any] | None = Field(
        default=None,
        description="The named connection the step's module talks to (docs/connections.md), "
        "or an inline definition {type, hosts, ...} with credentials by secret name; "
        "resolved on the worker that runs the step.")
    stage_in: list[StageIn] = Field(
        default_factory=list, max_length=1000,
        description="Inputs fetched into the step's scratch directory before it runs.")
    stage_out: list[StageOut] = Field(
        default_factory=list, max_length=1000,
        description="Outputs pushed from its scratch directory after it succeeded.")

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("when")
    @classmethod
    def _when_not_blank(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.strip():
            raise ValueError("must not be empty")
        most = limits.current().when_length
        if len(value) > most:
            raise ValueError(f"is {len(value):,} characters long, over the limit of "
                             f"{most:,} (CHORDFLOW_MAX_WHEN_LENGTH)")
        return value

    @field_validator("params", "outputs")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        return limits.check_value(value)  # type: ignore[no-any-return]

    @field_validator("foreach")
    @classmethod
    def _foreach_within_limits(cls, value: Any) -> Any:
        if isinstance(value, list):
            most = limits.current().foreach_items
            if len(value) > most:
                raise ValueError(f"lists {len(value):,} elements, over the limit of "
                                 f"{most:,} (CHORDFLOW_MAX_FOREACH_ITEMS)")
            limits.check_value(value)
        return value


class Workflow(BaseModel):
    """A whole workflow: steps plus variables and the run's declared outputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
    version: str = "1"
    description: str = ""
    variables: dict[str, Any] = Field(default_factory=dict)
    max_parallel: int | None = Field(default=None, ge=1)
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("variables", "outputs")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        return limits.check_value(value)  # type: ignore[no-any-return]

    @field_validator("steps", mode="before")
    @classmethod
    def _not_too_many(cls, value: Any) -> Any:
        most = limits.current().steps
        if isinstance(value, list) and len(value) > most:
            raise ValueError(f"{len(value):,} steps, over the limit of {most:,} "
                             "(CHORDFLOW_MAX_STEPS)")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


def workflow_json_schema(ref_prefix: str = "#/$defs/") -> dict[str, Any]:
    """The canonical format as JSON Schema (draft 2020-12), for editors and the API's
    documents; ``ref_prefix`` is where its ``Step`` lives (``#/components/schemas/``
    in OpenAPI). Shape only: what the registry and the graph decide (modules, params,
    references) is ``chordflow validate``'s."""
    schema = Workflow.model_json_schema(ref_template=ref_prefix + "{model}")
    if ref_prefix == "#/$defs/":
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return schema
