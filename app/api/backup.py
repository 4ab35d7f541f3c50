"""Backups of a deployment's catalog as one ZIP file, and restoring one.

What a backup holds, by section (each may be chosen alone)::

    backup.json              what, when, by whom, which sections, how many of each
    workflows/<name>.json    a stored workflow: flow_name, enabled, procedures (its
                             latest document, as the replaced platform's backups had
                             it) and versions (every version: number, document, YAML
                             text where it was sent as YAML, digest, time, author)
    schedules.json           the schedules (their triggers, variables, state)
    connections.json         the connections defined through the API (those of the
                             settings belong to the deployment's configuration)
    modules/<category>/<f>   the module files of CHORDFLOW_MODULES_PATH

No credential is in it: a connection holds only the *names* of the secrets its
credentials are in (their values stay in the workers' secrets), so the definitions are
backed up as they are, and work again wherever the same secrets are configured. API
keys and the audit log are not part of it (keys are made again, by an admin).

Restoring never deletes: a workflow that is not there is created with every version,
numbers and authors kept; one that is there gets the backup's latest document as a new
version unless it already has it (``unchanged``); a schedule or connection that is there
is left as it is. So restoring into an empty deployment reproduces the catalog, and
restoring twice changes nothing the second time. Module files are written into the
first directory of CHORDFLOW_MODULES_PATH (workers load them when they start). The
replaced platform's backup ZIPs restore too (their workflows and modules).

Stored documents are restored as they were stored, without compiling them again: a
workflow that needs a module this deployment lacks is kept (its runs fail, naming it).
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chordflow.api.library import WorkflowLibrary, WorkflowMissing, document_digest
from chordflow.engine.report import iso
from chordflow.errors import ChordflowError
from chordflow.schedules import Schedules, first_run_at

SECTIONS = ("workflows", "schedules", "connections", "modules")
FORMAT = "chordflow-backup"
FORMAT_VERSION = 1
#: Most bytes a restored archive may expand to (a ZIP bomb is refused).
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
#: Schedule fields that are state, not definition: recomputed when restored.
_SCHEDULE_STATE = ("next_run_at", "last_run_at", "last_run_id", "last_error")


class BadBackup(ChordflowError, ValueError):
    """The file is not a backup this version can read: 400."""


def sections_of(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """The sections asked for (``"workflows,schedules"`` or a list); all by default.
    BadBackup naming an unknown one."""
    if text is None or text == "":
        return SECTIONS
    given = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)
             if s.strip()]
    unknown = sorted(set(given) - set(SECTIONS))
    if unknown:
        raise BadBackup(f"unknown section {', '.join(unknown)} (sections: "
                        f"{', '.join(SECTIONS)})")
    return tuple(s for s in SECTIONS if s in given)


@dataclass
class Stores:
    """What a backup reads and a restore writes: the deployment's stores."""

    library: WorkflowLibrary
    schedules: Schedules
    #: chordflow.connections.Catalog, or None where connections are not stored.
    connections: Any
    #: CHORDFLOW_MODULES_PATH's directories.
    module_dirs: list[Path] = field(default_factory=list)


# -- backup ------------------------------------------------------------------------------

def make_backup(catalog: Stores, sections: Iterable[str] = SECTIONS,
                by: str | None = None) -> bytes:
    """The ZIP file of ``sections``."""
    chosen = sections_of(list(sections))
    counts: dict[str, int] = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if "workflows" in chosen:
            counts["workflows"] = _backup_workflows(catalog.library, archive)
        if "schedules" in chosen:
            rows = [_schedule_row(doc) for doc in catalog.schedules.collection.find({})]
            archive.writestr("schedules.json", _json(rows))
            counts["schedules"] = len(rows)
        if "connections" in chosen:
            rows = connection_rows(catalog.connections)
            archive.writestr("connections.json", _json(rows))
            counts["connections"] = len(rows)
        if "modules" in chosen:
            counts["modules"] = _backup_modules(catalog.module_dirs, archive)
        from chordflow import __version__

        archive.writestr("backup.json", _json({
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "chordflow_version": __version__, "created_at": iso(time.time()),
            "created_by": by, "sections": list(chosen), "counts": counts}))
    return buffer.getvalue()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _backup_workflows(library: WorkflowLibrary, archive: zipfile.ZipFile) -> int:
    entries = library.workflows()
    for entry in entries:
        versions = library.versions(entry.name)
        archive.writestr(f"workflows/{entry.name}.json", _json({
            "flow_name": entry.name, "enabled": entry.enabled,
            "procedures": versions[-1].document if versions else {},
            "created_at": entry.created_at, "created_by": entry.created_by,
            "versions": [{"version": v.version, "document": v.document, "source": v.source,
                          "digest": v.digest, "created_at": v.created_at,
                          "created_by": v.created_by} for v in versions]}))
    return len(entries)


def _schedule_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {("id" if k == "_id" else k): v for k, v in doc.items()
            if k not in _SCHEDULE_STATE}


def connection_rows(connections: Any) -> list[dict[str, Any]]:
    """The stored (API-defined) connections' definitions: no credential in them, only
    the names of the secrets that hold them. The hook where connections are stored
    elsewhere: ``connections`` is chordflow.connections.Catalog (or None: none)."""
    if connections is None:
        return []
    return [{k: v for k, v in entry.items() if k not in ("source", "updated_at",
                                                          "updated_by")}
            for entry in connections.entries() if entry.get("source") == "api"]


def module_files(dirs: Iterable[Path]) -> list[tuple[str, Path]]:
    """(name in the archive, file) of the module files of ``dirs``."""
    from chordflow.modules.registry import module_files as files_of

    out = []
    for directory in dirs:
        out += [(f"modules/{category}/{path.name}", path)
                for category, path in files_of(Path(directory))]
    return out


def _backup_modules(dirs: list[Path], archive: zipfile.ZipFile) -> int:
    files = module_files(dirs)
    for name, path in files:
        archive.writestr(name, path.read_bytes())
    return len(files)


# -- restore -----------------------------------------------------------------------------

@dataclass
class RestoreReport:
    """What a restore did, by section: names created, updated, left unchanged."""

    restored: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def note(self, section: str, outcome: str, name: str) -> None:
        self.restored.setdefault(section, {}).setdefault(outcome, []).append(name)

    def to_dict(self) -> dict[str, Any]:
        return {"status": not self.errors, "restored": self.restored, "errors": self.errors}


def restore_backup(catalog: Stores, data: bytes, sections: Iterable[str] = SECTIONS,
                   by: str | None = None) -> RestoreReport:
    """Restore the chosen ``sections`` of the ZIP ``data`` (see the module's docstring);
    BadBackup if it is not a backup."""
    chosen = sections_of(list(sections))
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BadBackup("the file is not a ZIP archive (a backup from GET "
                        "/api/v1/backup or chordflow backup)") from None
    with archive:
        if sum(i.file_size for i in archive.infolist()) > MAX_UNPACKED_BYTES:
            raise BadBackup(f"the archive unpacks to more than {MAX_UNPACKED_BYTES:,} bytes")
        try:
            meta = json.loads(archive.read("backup.json"))
        except (KeyError, ValueError):
            raise BadBackup("the archive has no readable backup.json: not a backup") from None
        present = set(meta.get("sections") or [])
        if meta.get("format", FORMAT) != FORMAT or \
                int(meta.get("format_version", 1)) > FORMAT_VERSION:
            raise BadBackup(f"backup format {meta.get('format')} version "
                            f"{meta.get('format_version')} is not one this chordflow reads")
        report = RestoreReport()
        for section in chosen:
            if section not in present:
                continue
            try:
                if section == "workflows":
                    _restore_workflows(catalog.library, archive, report, by)
                elif section == "schedules":
                    _restore_schedules(catalog.schedules, archive, report)
                elif section == "connections":
                    _restore_connections(catalog.connections, archive, report, by)
                else:
                    _restore_modules(catalog.module_dirs, archive, report)
            except (KeyError, ValueError, TypeError) as exc:
                report.errors.append(f"{section}: the archive's entries are malformed "
                                     f"({type(exc).__name__}: {exc})")
    return report


def _restore_workflows(library: WorkflowLibrary, archive: zipfile.ZipFile,
                       report: RestoreReport, by: str | None) -> None:
    for item in sorted(n for n in archive.namelist()
                       if n.startswith("workflows/") and n.endswith(".json")):
        row = json.loads(archive.read(item))
        name = str(row.get("flow_name") or "")
        if not _FILE_NAME.match(name):
            report.errors.append(f"workflows: {item}: no valid flow_name")
            continue
        versions = row.get("versions") or [{"version": 1, "document": row.get("procedures")}]
        latest = max(versions, key=lambda v: int(v["version"]))["document"]
        try:
            current = library.version(name)
        except WorkflowMissing:
            library.restore(name, versions, enabled=bool(row.get("enabled", True)),
                            created_at=row.get("created_at"),
                            created_by=row.get("created_by") or by)
            report.note("workflows", "created", name)
            continue
        if current.digest == document_digest(latest):
            report.note("workflows", "unchanged", name)
        else:
            library.update(name, latest, by=by)
            report.note("workflows", "updated", name)


def _restore_schedules(schedules: Schedules, archive: zipfile.ZipFile,
                       report: RestoreReport) -> None:
    rows = json.loads(archive.read("schedules.json"))
    now = time.time()
    for row in rows:
        doc = {("_id" if k == "id" else k): v for k, v in row.items()}
        if schedules.collection.find_one({"_id": doc["_id"]}) is not None:
            report.note("schedules", "unchanged", str(doc["_id"]))
            continue
        doc.update(last_run_at=None, last_run_id=None, last_error=None,
                   next_run_at=first_run_at(doc.get("cron"), doc.get("interval_seconds"),
                                            doc.get("timezone") or "UTC", now))
        schedules.collection.insert_one(doc)
        report.note("schedules", "created", str(doc["_id"]))


def _restore_connections(connections: Any, archive: zipfile.ZipFile,
                         report: RestoreReport, by: str | None) -> None:
    rows = json.loads(archive.read("connections.json"))
    if connections is None:
        if rows:
            report.errors.append("connections: this deployment stores no connections")
        return
    from chordflow.connections.catalog import ConnectionConflict
    from chordflow.connections.models import parse_connection

    known = set(connections.names())
    for row in rows:
        name = str(row.get("name") or "")
        if name in known:
            report.note("connections", "unchanged", name)
            continue
        try:
            connections.put(parse_connection({k: v for k, v in row.items() if k != "name"},
                                             name), by)
        except (ValueError, ConnectionConflict) as exc:
            report.errors.append(f"connections: {name}: {exc}")
            continue
        report.note("connections", "created", name)


def _restore_modules(dirs: list[Path], archive: zipfile.ZipFile,
                     report: RestoreReport) -> None:
    names = [n for n in archive.namelist() if n.startswith("modules/") and n.endswith(".py")]
    if not names:
        return
    if not dirs:
        report.errors.append("modules: CHORDFLOW_MODULES_PATH names no directory to "
                             "write module files into")
        return
    root = Path(dirs[0])
    for name in names:
        parts = name.split("/")
        if len(parts) != 3 or not all(_FILE_NAME.match(p) for p in parts[1:]):
            report.errors.append(f"modules: {name}: not modules/<category>/<file>.py")
            continue
        category, file = parts[1], parts[2]
        target = root / file if category == root.name else root / category / file
        if target.exists() and target.read_bytes() == archive.read(name):
            report.note("modules", "unchanged", f"{category}/{file}")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = target.exists()
        temp = target.with_name(f".{target.name}.restoring")
        temp.write_bytes(archive.read(name))
        temp.replace(target)
        report.note("modules", "updated" if existed else "created", f"{category}/{file}")
