"""Settings: every ``CHORDFLOW_*`` environment variable, read once into one object.

The defaults run everything on one machine; nothing here is required to try chordflow.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHORDFLOW_", extra="ignore")

    #: Threads of the embedded executor; a workflow's ``max_parallel`` limits further.
    embedded_threads: int = Field(default=16, ge=1, le=1024)
    #: Parent directory of each step's scratch working directory.
    workdir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "chordflow")
    #: Extra directories of ``.py`` step-module files, ``os.pathsep``-separated.
    modules_path: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    #: Secrets steps may read as ``${secrets.NAME}`` (JSON object), never stored in clear.
    secrets: dict[str, str] = Field(default_factory=dict)
    #: A directory of secret files (file name = secret name), as Docker and Kubernetes
    #: mount them; merged over ``secrets``.
    secrets_dir: Path | None = None

    def load_secrets(self) -> dict[str, str]:
        secrets = dict(self.secrets)
        if self.secrets_dir is not None and self.secrets_dir.is_dir():
            for path in sorted(self.secrets_dir.iterdir()):
                if path.is_file():
                    secrets[path.name] = path.read_text().rstrip("\n")
        return secrets

    @field_validator("modules_path", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(p) for p in value.split(os.pathsep) if p]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
