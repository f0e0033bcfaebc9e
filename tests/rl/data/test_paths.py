"""Where the data layer reads shipped files and caches builds: argument, environment, default."""

import pathlib

from rl.data import paths

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_data_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "cache"))
    assert paths.resolve_data_dir(None) == (tmp_path / "cache").resolve()
    monkeypatch.delenv(paths.DATA_DIR_ENV)
    assert paths.default_data_dir().parts[-3:] == (".cache", "rlreward", "tfds")


def test_an_explicit_data_dir_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "env"))
    assert paths.resolve_data_dir(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert paths.resolve_data_dir(str(tmp_path / "arg")) == (tmp_path / "arg").resolve()


def test_an_empty_environment_variable_means_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(paths.DATA_DIR_ENV, "")
    assert paths.default_data_dir() == tmp_path / ".cache" / "rlreward" / "tfds"


def test_home_is_expanded_and_relative_paths_made_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(paths.DATA_DIR_ENV, "~/shared/tfds")
    assert paths.default_data_dir() == tmp_path / "home" / "shared" / "tfds"
    assert paths.resolve_data_dir("~/mine") == (tmp_path / "home" / "mine").resolve()
    monkeypatch.chdir(tmp_path)
    resolved = paths.resolve_data_dir("relative/cache")
    assert resolved.is_absolute() and resolved == (tmp_path / "relative" / "cache").resolve()


def test_files_dir_holds_the_shipped_sources():
    assert paths.FILES_DIR == ROOT / "rl" / "data" / "files"
    for source in ("gsm8k/train.jsonl", "gsm8k/test.jsonl", "math500/test.jsonl"):
        assert (paths.FILES_DIR / source).is_file(), source
