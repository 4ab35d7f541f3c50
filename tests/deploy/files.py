"""The deployment files, loaded for the tests: compose, Dockerfile, k8s, systemd."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from chordflow.config import Settings

from tests.servers import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"

#: Variables the files may use before Settings declares them (none now: every one is a
#: field of Settings).
PENDING_SETTINGS: set[str] = set()

API_PORT = 8080
WORKER_METRICS_PORT = 9808


def setting_names() -> set[str]:
    return {f"CHORDFLOW_{name.upper()}" for name in Settings.model_fields}


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for _, d in k8s_docs()
            if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def units() -> dict[str, configparser.ConfigParser]:
    return {p.name: unit(p) for p in sorted(SYSTEMD.glob("*.service"))}


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line (continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def chordflow_vars(text: str) -> set[str]:
    return set(re.findall(r"\bCHORDFLOW_[A-Z0-9_]+\b", text))
