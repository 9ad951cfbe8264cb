"""Settings: parsing, aliases, and the generated documentation staying in step with the code."""
from pathlib import Path

from app.core.config import SETTINGS, env_example, load_settings, markdown_table, secret_values

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_and_parsing():
    settings = load_settings(environ={"PORT": "6000", "PROVIDER_FALLBACKS": "anthropic, gemini", "RETRY_ATTEMPTS": ""})
    assert settings["PORT"] == 6000 and settings["HOST"] == "127.0.0.1"
    assert settings["PROVIDER_FALLBACKS"] == ["anthropic", "gemini"]
    assert settings["RETRY_ATTEMPTS"] == 2 and settings["SSE_HEARTBEAT_S"] == 15.0


def test_github_pat_is_an_alias_and_named_endpoints_are_kept():
    settings = load_settings(environ={"GITHUB_PAT": "ghp_alias", "VLLM_API_BASE": "http://gpu:8000/v1"})
    assert settings["GITHUB_TOKEN"] == "ghp_alias"
    assert settings["VLLM_API_BASE"] == "http://gpu:8000/v1"


def test_secrets_are_collected_for_redaction():
    settings = load_settings(environ={"OPENAI_API_KEY": "sk-abc123", "VLLM_API_KEY": "vllm-key-9"})
    assert {"sk-abc123", "vllm-key-9"} <= set(secret_values(settings))


def test_env_example_and_readme_table_match_the_code():
    assert (ROOT / ".env.example").read_text() == env_example(), "run `make env-example`"
    assert markdown_table() in (ROOT / "README.md").read_text(), "run `make env-example`"
    assert all(f"{s.name}=" in env_example() for s in SETTINGS)


def test_an_empty_value_empties_a_text_setting_but_not_a_number():
    settings = load_settings(environ={"OPENAI_MODEL_FALLBACKS": "", "PORT": ""})
    assert settings["OPENAI_MODEL_FALLBACKS"] == "" and settings["PORT"] == 5001
