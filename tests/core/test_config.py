from pathlib import Path

import pytest

from core.config import API_KEY_ENV, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "configs" / "c.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_resolve_relative_to_project_root(tmp_path):
    cfg = load_config(write(tmp_path, "profile: local\n"))
    assert cfg.data_dir == (tmp_path / "data").resolve()
    assert cfg.tracking_uri == f"sqlite:///{(tmp_path / 'mlruns' / 'mlflow.db').resolve()}"
    assert cfg.online_store == {"type": "sqlite", "path": str(cfg.data_dir / "online_store.db")}


def test_misspelled_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"optuna\.n_trails: unknown key"):
        load_config(write(tmp_path, "optuna:\n  n_trails: 3\n"))


def test_unknown_top_level_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"servng: unknown key"):
        load_config(write(tmp_path, "servng: {port: 1}\n"))


def test_bad_value_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"serving\.port"):
        load_config(write(tmp_path, "serving: {port: 99999}\n"))


def test_overrides_are_yaml_values(tmp_path):
    cfg = load_config(
        write(tmp_path, ""), ["optuna.n_trials=3", "training.mql.threshold.mode=precision"]
    )
    assert cfg.optuna.n_trials == 3
    assert cfg.training.mql.threshold.mode == "precision"


def test_malformed_override(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(write(tmp_path, ""), ["optuna.n_trials"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_api_key_environment_wins(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, "serving: {api_key: from-file}\n"))
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert cfg.api_key() == "from-file"
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert cfg.api_key() == "from-env"


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[2] / "configs"
    local = load_config(root / "local.yaml")
    prod = load_config(root / "production.yaml")
    assert local.online_store["type"] == "sqlite"
    assert prod.online_store["type"] == "redis"
    assert prod.registry["registry_type"] == "sql"
    assert prod.tracking_uri.startswith("postgresql+psycopg://")


def test_relative_paths_resolve_against_the_project_root(tmp_path, monkeypatch) -> None:
    """In <root>/configs/: against <root>; elsewhere: against the folder funnel runs in, not
    the config's own folder."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "configs").mkdir(parents=True)
    elsewhere.mkdir()
    for folder in (project / "configs", elsewhere):
        (folder / "c.yaml").write_text("paths: {data_dir: mydata}\n")
    monkeypatch.chdir(project)
    assert load_config(project / "configs" / "c.yaml").data_dir == project / "mydata"
    assert load_config(elsewhere / "c.yaml").data_dir == project / "mydata"
