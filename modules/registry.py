"""The module interface and the registry of modules.

A step module is a named set of methods. A method is a plain function
``fn(ctx: StepContext, **params) -> dict`` whose signature *is* its parameter list: the
registry turns it into a pydantic model, so parameters are validated with clear
messages, listed by ``chordflow modules`` and the API, and checked at compile time
(unknown or missing parameters are reported before anything runs).

Modules come from three places, in this order (a later one may not shadow an earlier):
the built-ins in this package, the ``chordflow.modules`` entry-point group, and the
``.py`` files of the directories in ``CHORDFLOW_MODULES_PATH`` (and of their
subfolders). Each exposes a ``module`` attribute holding a :class:`StepModule`, or
is a module class of the replaced platform (``class X: __init__(self, logger);
method(self, context, params)``, see chordflow.modules.platform_class). A file of the
path that is neither, or that fails to load, is reported with one line (a warning,
and ``Registry.problems``) and skipped: the other modules still load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import re
import socket
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chordflow.errors import ChordflowError, ModuleUnavailable
from chordflow.modules import platform_class
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

MethodFn = Callable[..., Any]

log = logging.getLogger("chordflow.modules")


class ModuleError(ChordflowError):
    """An unknown module or method, or a module that fails to load."""


class ParamsInvalid(ChordflowError):
    """Params that do not fit a method's signature; ``errors`` are (field, message)."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"params.{f}: {m}" if f else m for f, m in errors))


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    required: bool
    default: Any
    description: str = ""


@dataclass
class MethodSpec:
    """One callable method of a module, with its validated parameter model."""

    name: str
    fn: MethodFn
    description: str
    params: list[ParamSpec]
    model: type[BaseModel]
    is_async: bool = False
    #: Params that are shell code (bash's ``cmd``): the plan compiles them so that a
    #: reference is inserted shell-quoted unless marked ``${raw:...}``
    #: (app/workflow/templating.py). A module that builds a command line or a query
    #: from a string param declares it here, so values never become code.
    shell_params: frozenset[str] = frozenset()
    #: Params that are SQL text (mysql's ``sql``): no reference may enter them, so a
    #: value can never become SQL; values are passed as bound parameters instead
    #: (the plan refuses a reference there, naming the field).
    sql_params: frozenset[str] = frozenset()
    #: The param the plan fills with the outputs of the steps listed before this one
    #: (the replaced platform's ``context``, chordflow.modules.platform_class); None
    #: for chordflow's own methods, which read earlier steps through references.
    context_param: str | None = None
    #: The method may raise ``StepWaiting`` (its work goes on elsewhere: a job on a
    #: scheduler): the engine then reads the state it left before each later call
    #: (``StepContext.resume``). See app/engine/waiting.py.
    waits: bool = False
    #: Called as ``cancel(ctx, **params)``, with ``ctx.resume`` the state left by the
    #: last ``StepWaiting``, when the run is cancelled while that work goes on: it stops
    #: the job (a waiting method's ``kill``). Best effort; it must not raise for a job
    #: already gone.
    cancel: MethodFn | None = None

    def check_names(self, given: Iterable[str]) -> list[tuple[str, str]]:
        """Unknown and missing parameter names: the part checkable before templating."""
        given = set(given)
        known = {p.name for p in self.params}
        errors = [
            (p.name, "required parameter is missing")
            for p in self.params
            if p.required and p.name not in given
        ]
        if "kwargs" not in known:
            errors += [
                (name, f"unknown parameter (known: {', '.join(sorted(known)) or 'none'})")
                for name in sorted(given - known)
            ]
        return errors

    def check_literals(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Type errors in ``params`` whose values are literal (no reference): known before
        the run, so reported at validation rather than when the step fails. Missing and
        unknown names are ``check_names``'s; params left out here are not checked."""
        try:
            self.model.model_validate(dict(params))
        except ValidationError as exc:
            # A missing or unknown param itself is check_names's; an unknown key
            # inside a param's object (``flags.bogus``) is this check's.
            return param_errors([e for e in exc.errors()
                                 if not (e["type"] in ("missing", "extra_forbidden")
                                         and len(e["loc"]) == 1)
                                 and e["loc"] and e["loc"][0] in params])
        return []

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate rendered params; raise ParamsInvalid naming each bad field."""
        try:
            model = self.model.model_validate(dict(params))
        except ValidationError as exc:
            raise ParamsInvalid(param_errors(exc.errors())) from None
        values = {
            info.alias or name: getattr(model, name)
            for name, info in type(model).model_fields.items()
        }
        if model.model_extra:
            values.update(model.model_extra)
        return values


#: Type names pydantic puts in an error's location for the branch of a union it tried
#: (``cmd.str``, ``cmd.list[str]``): not fields, so left out of the path a user reads.
_BRANCH = re.compile(r"^(str|int|float|bool|bytes|none|dict|list|tuple|set|any)$|[\[(]")


def param_errors(errors: Iterable[Any]) -> list[tuple[str, str]]:
    """Pydantic's errors as (field, message), one per field: the branches of a union
    (``str | list[str]``) become one message, "X, or Y", at the field itself."""
    merged: dict[str, list[str]] = {}
    for e in errors:
        parts = [str(x) for x in e["loc"]]
        where = ".".join(parts[:1] + [p for p in parts[1:] if not _BRANCH.search(p)])
        if e["msg"] not in merged.setdefault(where, []):
            merged[where].append(e["msg"])
    return [(where, ", or ".join(messages)) for where, messages in merged.items()]


@dataclass
class StepModule:
    """A named set of methods; create one per module file and decorate its functions.

    ``runs_code`` says whether a step of this module can make the worker run code the
    caller chose (a shell command, a Python function, a remote command). Who may submit
    such steps inline is the admin's decision (``CHORDFLOW_OPERATOR_MODULES``), so a
    module that does not declare itself is assumed to run code: the safe default.
    """

    name: str
    description: str = ""
    default_method: str | None = None
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    runs_code: bool = True
    #: The connection types (chordflow.connections) its steps may name in
    #: ``connection:``; empty: the module takes no connection.
    connection_types: tuple[str, ...] = ()

    def method(
        self, fn: MethodFn | None = None, *, name: str | None = None,
        shell_params: Iterable[str] = (), sql_params: Iterable[str] = (),
        waits: bool = False, cancel: MethodFn | None = None,
    ) -> Any:
        """Register ``fn`` as a method (usable bare or as ``@module.method(name=...)``).

        ``shell_params``: the params that are shell code (see ``MethodSpec``).
        """

        def register(f: MethodFn) -> MethodFn:
            spec = _method_spec(name or f.__name__.rstrip("_"), f)
            spec.shell_params = frozenset(shell_params)
            spec.sql_params = frozenset(sql_params)
            spec.waits, spec.cancel = waits, cancel
            unknown = (spec.shell_params | spec.sql_params) - {p.name for p in spec.params}
            if unknown:
                raise ModuleError(f"method '{spec.name}' of module '{self.name}' has no "
                                  f"param {', '.join(sorted(unknown))} to treat as shell "
                                  "code or SQL")
            self.methods[spec.name] = spec
            return f

        return register(fn) if fn is not None else register

    def get(self, method: str | None) -> MethodSpec:
        chosen = method or self.default_method
        if chosen is None and len(self.methods) == 1:
            chosen = next(iter(self.methods))
        if chosen is None:
            raise ModuleError(
                f"module '{self.name}' has several methods "
                f"({', '.join(sorted(self.methods))}); name one with 'method'"
            )
        if chosen not in self.methods:
            raise ModuleError(
                f"module '{self.name}' has no method '{chosen}' "
                f"(methods: {', '.join(sorted(self.methods))})"
            )
        return self.methods[chosen]


def _method_spec(name: str, fn: MethodFn) -> MethodSpec:
    sig = inspect.signature(fn)
    # With their constraints (``Annotated[str, StringConstraints(...)]``) for the model;
    # without them for the type name a listing shows.
    hints = typing.get_type_hints(fn, include_extras=True)
    plain = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    params: list[ParamSpec] = []
    accepts_extra = False
    for i, (pname, p) in enumerate(sig.parameters.items()):
        if i == 0:
            continue  # the StepContext
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_extra = True
            continue
        annotation = hints.get(pname, Any)
        required = p.default is inspect.Parameter.empty
        # Prefixed names with aliases: a param may be called ``json`` or ``copy``.
        fields[f"p_{pname}"] = (
            annotation, Field(... if required else p.default, alias=pname)
        )
        params.append(
            ParamSpec(
                name=pname,
                type=_type_name(plain.get(pname, Any)),
                required=required,
                default=None if required else p.default,
                description=_param_doc(fn, pname),
            )
        )
    model = create_model(  # type: ignore[call-overload]
        f"{name}_params",
        __config__=ConfigDict(extra="allow" if accepts_extra else "forbid",
                              arbitrary_types_allowed=True),
        **fields,
    )
    if accepts_extra:
        params.append(ParamSpec("kwargs", "any", False, None, "any other parameter"))
    doc = inspect.getdoc(fn) or ""
    return MethodSpec(
        name=name,
        fn=fn,
        description=doc.split("\n\n")[0].replace("\n", " "),
        params=params,
        model=model,
        is_async=inspect.iscoroutinefunction(fn),
    )


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return text or str(annotation).replace("typing.", "")


def _param_doc(fn: MethodFn, pname: str) -> str:
    """Pick ``name: text`` (and its indented continuation lines) out of the docstring."""
    lines = (inspect.getdoc(fn) or "").splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{pname}:"):
            indent = len(line) - len(line.lstrip())
            text = [line.strip()[len(pname) + 1 :].strip()]
            for more in lines[i + 1 :]:
                if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                    break
                text.append(more.strip())
            return " ".join(text)
    return ""


BUILTINS = ("echo", "bash", "http", "file", "filter", "python", "jit", "rclone",
            # the modules of named connections (docs/connections.md), and table
            "mysql", "mongodb", "ssh", "notify", "kafka", "elasticsearch", "prometheus",
            "table",
            # the procedures dialect's (docs/dialects.md): common.Kt, its connect steps
            "kt", "procedures",
            # jobs on other systems (docs/jobs.md), CWL documents' steps (docs/cwl.md)
            "job", "cwl")


class Registry:
    """Every module chordflow can run, by name."""

    def __init__(self, modules: Iterable[StepModule] = ()):
        self._modules: dict[str, StepModule] = {}
        #: One line per module file that could not be loaded (and was skipped).
        self.problems: list[str] = []
        for module in modules:
            self.add(module)

    def add(self, module: StepModule) -> None:
        if module.name in self._modules and self._modules[module.name] is not module:
            raise ModuleError(f"two modules are named '{module.name}'")
        self._modules[module.name] = module

    def names(self) -> list[str]:
        return sorted(self._modules)

    def modules(self) -> list[StepModule]:
        return [self._modules[n] for n in self.names()]

    def safe_modules(self) -> list[str]:
        """The names of the modules that declare they run no code of the caller's
        (``runs_code=False``): what operators may submit inline unless the admin says
        otherwise."""
        return [m.name for m in self.modules() if not m.runs_code]

    def module(self, name: str) -> StepModule:
        try:
            return self._modules[name]
        except KeyError:
            raise ModuleError(
                f"unknown module '{name}' (modules: {', '.join(self.names())})"
            ) from None

    def method(self, module: str, method: str | None) -> MethodSpec:
        return self.module(module).get(method)

    def tolerant(self) -> Registry:
        """This registry, where an unknown module or method compiles to a stand-in
        that fails its step at once, naming the module and the worker.

        For runs that were validated where they were submitted: a worker that lacks a
        module fails the steps that need it, and runs everything else.
        """
        return _TolerantRegistry(self)

    def describe(self) -> list[dict[str, Any]]:
        """The JSON listing used by ``chordflow modules --json`` and the API."""
        return [
            {
                "name": m.name,
                "description": m.description,
                "default_method": m.default_method,
                "runs_code": m.runs_code,
                "connection_types": list(m.connection_types),
                "methods": [
                    {
                        "name": spec.name,
                        "description": spec.description,
                        "params": [
                            {
                                "name": p.name,
                                "type": p.type,
                                "required": p.required,
                                "default": p.default,
                                "description": p.description,
                            }
                            for p in spec.params
                        ],
                    }
                    for spec in m.methods.values()
                ],
            }
            for m in self.modules()
        ]


class _TolerantRegistry(Registry):
    def __init__(self, strict: Registry):
        super().__init__()
        self._modules = strict._modules  # the same modules, seen through this view
        self._missing: dict[str, StepModule] = {}

    def module(self, name: str) -> StepModule:
        found = self._modules.get(name)
        if found is not None:
            return _TolerantModule(found)
        if name not in self._missing:
            self._missing[name] = _TolerantModule(StepModule(name))
        return self._missing[name]

    def tolerant(self) -> Registry:
        return self


class _TolerantModule(StepModule):
    """A module whose unknown methods are stand-ins (see ``Registry.tolerant``)."""

    def __init__(self, real: StepModule):
        super().__init__(real.name, real.description, real.default_method, real.methods,
                         real.runs_code, real.connection_types)
        self._installed = bool(real.methods)

    def get(self, method: str | None) -> MethodSpec:
        try:
            return super().get(method)
        except ModuleError:
            what = (f"method '{method}' of module '{self.name}'" if self._installed
                    else f"module '{self.name}'")
            return _unavailable(what)


def _unavailable(what: str) -> MethodSpec:
    def unavailable(ctx: Any, **params: Any) -> Any:
        raise ModuleUnavailable(f"{what} is not installed on worker {ctx.worker} "
                                f"(host {socket.gethostname()}); install it there, or "
                                "route the step to a queue whose workers have it")

    spec = _method_spec("unavailable", unavailable)
    spec.description = f"{what}: not installed here"
    return spec


def load_registry(module_paths: Iterable[Path] = ()) -> Registry:
    """Built-ins, then entry points, then module directories."""
    registry = Registry()
    for name in BUILTINS:
        registry.add(importlib.import_module(f"chordflow.modules.{name}").module)
    for ep in importlib.metadata.entry_points(group="chordflow.modules"):
        registry.add(_module_attr(ep.load(), f"entry point '{ep.name}'"))
    for directory in module_paths:
        for category, path in module_files(Path(directory)):
            problem = _load_file(registry, category, path)
            if problem is not None:
                log.warning("%s", problem)
                registry.problems.append(problem)
    return registry


def module_files(directory: Path) -> list[tuple[str, Path]]:
    """(category, file) of the ``.py`` files of ``directory`` and of its subfolders (the
    platform's ``mod/<category>/<Class>.py``); names starting with ``_`` or ``.``
    (``__init__.py``, ``__pycache__``) are not modules."""
    if not directory.is_dir():
        return []
    found = [(directory.name, p) for p in sorted(directory.glob("*.py"))]
    for sub in sorted(d for d in directory.iterdir() if d.is_dir()):
        if not sub.name.startswith(("_", ".")):
            found += [(sub.name, p) for p in sorted(sub.glob("*.py"))]
    return [(c, p) for c, p in found if not p.name.startswith(("_", "."))]


def _load_file(registry: Registry, category: str, path: Path) -> str | None:
    """Load one module file into ``registry``; the one line saying why not, or None."""
    name = f"chordflow_ext_{category}_{path.stem}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            return f"module file {path}: cannot be loaded; skipped"
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except Exception as exc:  # any error of someone else's file: reported, skipped
        where = f"{path}:{exc.lineno}" if isinstance(exc, SyntaxError) else str(path)
        return f"module file {where}: {type(exc).__name__}: {exc}; skipped"
    modules = [mod.module] if isinstance(getattr(mod, "module", None), StepModule) else \
        [_class_module(found) for found in platform_class.find_classes(mod, category,
                                                                        path.stem)]
    if not modules:
        return (f"module file {path}: neither a chordflow module (a StepModule named "
                "'module') nor a platform module class (__init__(self, logger) and "
                "methods (self, context, params)); skipped")
    for module in modules:
        try:
            registry.add(module)
        except ModuleError as exc:
            return f"module file {path}: {exc}; skipped"
    return None


def _caller(found: platform_class.PlatformClass, method: str) -> MethodFn:
    def run(ctx: Any, **params: Any) -> dict[str, Any]:
        """Any params: the platform's methods read what they need."""
        return platform_class.call(found, method, ctx, params)

    return run


def _class_module(found: platform_class.PlatformClass) -> StepModule:
    """A StepModule calling the platform class ``found``."""
    module = StepModule(found.name, found.description, runs_code=True)
    for method in found.methods:
        spec = _method_spec(method, _caller(found, method))
        spec.description = f"{found.name}.{method} (a platform module class)"
        spec.context_param = platform_class.CONTEXT_PARAM
        module.methods[method] = spec
    return module


def _module_attr(obj: Any, where: str) -> StepModule:
    module = obj if isinstance(obj, StepModule) else getattr(obj, "module", None)
    if not isinstance(module, StepModule):
        raise ModuleError(f"{where} does not provide a StepModule named 'module'")
    return module


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, loaded on first use from the settings' module path."""
    global _default
    if _default is None:
        from chordflow.config import get_settings

        settings = get_settings()
        registry = load_registry(settings.modules_path)
        if settings.job_apps:  # the replaced engine's apps, as jobs (docs/jobs.md)
            from chordflow.modules.job import app_modules

            for module in app_modules(settings.job_apps, settings.job_services):
                if module.name in registry.names():
                    raise ModuleError(f"job_apps.{module.name}: a module of that name is "
                                      "installed already; map the app under another name "
                                      "or remove the module")
                registry.add(module)
        _default = registry
    return _default
