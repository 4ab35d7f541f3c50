"""``CHORDFLOW_CONFIG``: settings from a TOML or YAML file, the environment winning."""

from __future__ import annotations

from pathlib import Path

import pytest
from chordflow.config import ConfigFileError, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHORDFLOW_MONGO_DB", "CHORDFLOW_API_PORT", "CHORDFLOW_FILE_ROOTS",
                 "CHORDFLOW_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("suffix,text", [
    (".toml", 'mongo_db = "from-file"\napi_port = 9001\nfile_roots = ["/a", "/b"]\n'),
    (".yaml", "mongo_db: from-file\napi_port: 9001\nfile_roots: [/a, /b]\n"),
])
def test_a_config_file_sets_what_the_environment_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, text: str) -> None:
    path = tmp_path / f"chordflow{suffix}"
    path.write_text(text)
    monkeypatch.setenv("CHORDFLOW_CONFIG", str(path))
    settings = Settings()
    assert (settings.mongo_db, settings.api_port) == ("from-file", 9001)
    assert settings.file_roots == [Path("/a"), Path("/b")]
    monkeypatch.setenv("CHORDFLOW_API_PORT", "9002")
    assert Settings().api_port == 9002  # the environment wins
    assert Settings().mongo_db == "from-file"


def test_a_prefixed_key_is_read_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('CHORDFLOW_MONGO_DB = "x"\n')
    monkeypatch.setenv("CHORDFLOW_CONFIG", str(path))
    assert Settings().mongo_db == "x"


def test_a_misspelled_key_or_a_missing_file_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yml"
    path.write_text("mongo_ur: mongodb://x\n")
    monkeypatch.setenv("CHORDFLOW_CONFIG", str(path))
    with pytest.raises(ConfigFileError, match="unknown setting 'mongo_ur' "
                                              r"\(did you mean 'mongo_url'\?\)"):
        Settings()
    monkeypatch.setenv("CHORDFLOW_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigFileError, match="cannot read it"):
        Settings()
    (tmp_path / "bad.toml").write_text("mongo_db = \n")
    monkeypatch.setenv("CHORDFLOW_CONFIG", str(tmp_path / "bad.toml"))
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        Settings()
