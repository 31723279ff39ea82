"""Settings: paper defaults, the config file, environment, CLI flags on top, and secrets kept out of sight."""

import re
from pathlib import Path

import pytest

from streams.cli import build_parser, main, settings_from_args
from streams.settings import ConfigFileError, Settings, load_settings, settings_env

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_are_the_papers_numbers():
    p = Settings().pipeline
    assert (p.max_skills, p.instructions_per_metadata, p.rubrics_per_metadata) == (3, 10, 4)
    assert (p.max_iterations, p.gap_threshold, p.judge_passes, p.generation_temperature) == (4, 3.0, 2, 0.7)


def test_environment_then_flags(monkeypatch):
    monkeypatch.setenv("CODECLM_PIPELINE__GAP_THRESHOLD", "2.5")
    monkeypatch.setenv("CODECLM_PIPELINE__MAX_ITERATIONS", "3")
    monkeypatch.setenv("CODECLM_STRONG__BASE_URL", "http://env/v1")
    args = build_parser().parse_args(
        ["worker", "--max-iterations", "6", "--target-url", "http://flag/v1", "--partitions", "8"]
    )
    settings = settings_from_args(args)
    assert settings.pipeline.gap_threshold == 2.5  # env
    assert settings.pipeline.max_iterations == 6  # flag beats env
    assert settings.strong.base_url == "http://env/v1"
    assert settings.target.base_url == "http://flag/v1"
    assert settings.kafka.partitions == 8


def test_judge_defaults_to_strong_and_a_judge_flag_starts_from_it(monkeypatch):
    monkeypatch.setenv("CODECLM_STRONG__MODEL", "big")
    assert Settings().judge_endpoint.model == "big"
    settings = settings_from_args(build_parser().parse_args(["worker", "--judge-model", "judge"]))
    assert settings.judge_endpoint.model == "judge"
    assert settings.judge_endpoint.base_url == settings.strong.base_url


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("CODECLM_PIPELINE__MAX_ITERATIONS", "0")
    with pytest.raises(ValueError, match="max_iterations"):
        Settings()


def test_keys_are_hidden_when_printed_but_travel_to_child_processes(monkeypatch):
    monkeypatch.setenv("CODECLM_STRONG__API_KEY", "sk-very-secret")
    settings = Settings()
    assert "sk-very-secret" not in repr(settings) and "sk-very-secret" not in str(settings)
    assert settings.strong.key() == "sk-very-secret"
    assert settings_env(settings)["CODECLM_STRONG__API_KEY"] == "sk-very-secret"


def test_settings_survive_the_trip_through_the_environment(monkeypatch):
    args = build_parser().parse_args(["worker", "--gap-threshold", "4", "--topic-prefix", "x."])
    settings = settings_from_args(args)
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    assert Settings() == settings


def test_api_key_file(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    monkeypatch.setenv("CODECLM_TARGET__API_KEY_FILE", str(key_file))
    assert Settings().target.key() == "sk-from-file"


# -- the config file: below the environment, which is below the flags ---------------------------


def write_config(path, text: str):
    path.write_text(text)
    return path


def test_config_file_then_environment_then_flags(tmp_path, monkeypatch):
    config = write_config(
        tmp_path / "codeclm.toml",
        """
[kafka]
bootstrap_servers = "file:9092"
topic_prefix = "file."
[strong]
base_url = "http://file/v1"
model = "file-strong"
max_retries = 2
[pipeline]
gap_threshold = 2.0
max_iterations = 2
judge_passes = 1
""",
    )
    monkeypatch.setenv("CODECLM_KAFKA__TOPIC_PREFIX", "env.")
    monkeypatch.setenv("CODECLM_PIPELINE__MAX_ITERATIONS", "3")
    monkeypatch.setenv("CODECLM_PIPELINE__JUDGE_PASSES", "3")
    args = build_parser().parse_args(["worker", "--config", str(config), "--judge-passes", "4", "--strong-model", "m"])
    settings = settings_from_args(args)
    assert settings.kafka.bootstrap_servers == "file:9092"  # only the file says
    assert settings.kafka.topic_prefix == "env."  # the environment beats the file
    assert settings.pipeline.gap_threshold == 2.0
    assert settings.pipeline.max_iterations == 3
    assert settings.pipeline.judge_passes == 4  # the flag beats both
    assert (settings.strong.base_url, settings.strong.model, settings.strong.max_retries) == ("http://file/v1", "m", 2)


def test_codeclm_config_names_the_file_and_the_flag_wins_over_it(tmp_path, monkeypatch):
    by_env = write_config(tmp_path / "env.toml", '[target]\nmodel = "from-env-file"\n')
    by_flag = write_config(tmp_path / "flag.toml", '[target]\nmodel = "from-flag-file"\n')
    monkeypatch.setenv("CODECLM_CONFIG", str(by_env))
    assert Settings().target.model == "from-env-file"
    assert settings_from_args(build_parser().parse_args(["worker"])).target.model == "from-env-file"
    args = build_parser().parse_args(["worker", "--config", str(by_flag)])
    assert settings_from_args(args).target.model == "from-flag-file"


def test_fields_of_a_section_merge_across_the_file_and_the_environment(tmp_path, monkeypatch):
    config = write_config(tmp_path / "c.toml", '[judge]\nbase_url = "http://judge/v1"\n')
    monkeypatch.setenv("CODECLM_JUDGE__MODEL", "critic")
    settings = load_settings(config)
    assert (settings.judge_endpoint.base_url, settings.judge_endpoint.model) == ("http://judge/v1", "critic")


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "strong.key").write_text("sk-in-a-file\n")
    config = write_config(tmp_path / "c.toml", '[strong]\napi_key_file = "keys/strong.key"\n')
    assert load_settings(config).strong.key() == "sk-in-a-file"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[strong]\nmodle = "x"\n', "unknown key 'modle' in [strong]"),
        ("[pipelines]\ngap_threshold = 2\n", "unknown section or key 'pipelines'"),
        ('bootstrap_servers = "x:1"\n', "unknown section or key 'bootstrap_servers'"),
        ("[kafka\n", "not a readable TOML file"),
    ],
)
def test_a_config_file_with_an_unknown_name_is_an_error_naming_the_file_and_the_key(tmp_path, capsys, text, named):
    config = write_config(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigFileError, match=re.escape(named)):
        load_settings(config)
    assert main(["topics", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and named in err


def test_a_missing_config_file_is_an_error(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere.toml"
    assert main(["worker", "--config", str(missing)]) == 2
    assert f"{missing}: no such config file" in capsys.readouterr().err
    monkeypatch.setenv("CODECLM_CONFIG", str(missing))
    with pytest.raises(ConfigFileError, match="no such config file"):
        Settings()


def test_a_wrong_value_in_the_file_is_refused_naming_the_file(tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", '[kafka]\npartitions = "many"\n')
    assert main(["topics", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "kafka.partitions" in err and str(config) in err


def test_the_readme_config_file_is_valid(tmp_path):
    """The example in the README's configuration section loads as it is written."""
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert example, "the README shows a config file"
    settings = load_settings(write_config(tmp_path / "codeclm.toml", example.group(1)))
    assert settings.strong.base_url and settings.target.base_url
    assert settings.strong.api_key is None  # keys stay out of the example
