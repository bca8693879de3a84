"""Settings from the environment: the contract's defaults, bad values refused naming the variable, secrets kept out
of the repr, and a quota reservation that outlives the turn holding it.
"""

from __future__ import annotations

import re

import pytest

from gateway.settings import Settings, SettingsError
from tests.support.harness import JWT_SECRET
from tests.support.paths import PROJECT_ROOT


def test_settings_from_env_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.database_url == "sqlite:///data/gateway.db"
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert settings.graph_api_base_url == "https://graph.facebook.com"
    assert (settings.log_level, settings.log_format) == ("INFO", "json")
    assert settings.admin_jwt_secret is None
    assert settings.admin_jwt_max_ttl_seconds == 30 * 24 * 3600
    assert settings.body_read_timeout_seconds == 15


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"ADMIN_JWT_SECRET": "short"}, "ADMIN_JWT_SECRET"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LLM_TOTAL_BUDGET": "-1"}, "LLM_TOTAL_BUDGET"),
        ({"ADMIN_JWT_MAX_TTL_SECONDS": "10"}, "ADMIN_JWT_MAX_TTL_SECONDS"),
        ({"ADMIN_JWT_MAX_TTL_SECONDS": "1e9"}, "ADMIN_JWT_MAX_TTL_SECONDS"),
        ({"BODY_READ_TIMEOUT_SECONDS": "0"}, "BODY_READ_TIMEOUT_SECONDS"),
        ({"KNOWLEDGE_MIN_SIMILARITY": "1.5"}, "KNOWLEDGE_MIN_SIMILARITY must be between 0 and 1"),
        ({"KNOWLEDGE_MIN_SIMILARITY": "high"}, "KNOWLEDGE_MIN_SIMILARITY must be a number"),
        ({"KNOWLEDGE_FETCH_ALLOW_PRIVATE": "maybe"}, "KNOWLEDGE_FETCH_ALLOW_PRIVATE must be 1 or 0"),
        ({"KNOWLEDGE_FETCH_ALLOW_NETWORKS": "10.0.0.0/8, intranet"}, "KNOWLEDGE_FETCH_ALLOW_NETWORKS"),
        ({"KNOWLEDGE_MAX_UPLOAD_BYTES": "10"}, "KNOWLEDGE_MAX_UPLOAD_BYTES"),
        ({"WORKER_NICE": "20"}, "WORKER_NICE"),
        ({"WORKER_NICE": "-5"}, "WORKER_NICE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


def test_knowledge_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "EMBEDDINGS_MODEL": "text-embedding-3-small",
            "KNOWLEDGE_MIN_SIMILARITY": "0.42",
            "KNOWLEDGE_FETCH_ALLOW_PRIVATE": "1",
            "KNOWLEDGE_FETCH_ALLOW_NETWORKS": "10.1.0.0/16, fd00::/8",
        }
    )
    assert settings.embeddings_model == "text-embedding-3-small"
    assert settings.knowledge_min_similarity == 0.42
    assert settings.knowledge_fetch_allow_private is True
    assert settings.knowledge_fetch_allow_networks == ("10.1.0.0/16", "fd00::/8")
    defaults = Settings.from_env({})
    assert (defaults.embeddings_model, defaults.knowledge_fetch_allow_private) == (None, False)


def test_notification_settings_are_read() -> None:
    settings = Settings.from_env(
        {"NOTIFY_ALLOW_PRIVATE": "1", "NOTIFY_ALLOW_NETWORKS": "10.2.0.0/16", "NOTIFY_TIMEOUT_SECONDS": "3.5"}
    )
    assert (settings.notify_allow_private, settings.notify_allow_networks) == (True, ("10.2.0.0/16",))
    assert settings.notify_timeout_seconds == 3.5
    defaults = Settings.from_env({})
    assert (defaults.notify_allow_private, defaults.notify_allow_networks, defaults.notify_timeout_seconds) == (
        False,
        (),
        10.0,
    )


def test_media_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "TRANSCRIPTION_MODEL": "gpt-4o-transcribe",
            "MEDIA_ALLOWED_HOSTS": "Lookaside.FBSBX.com, .fbcdn.net",
            "MEDIA_MAX_BYTES": "1048576",
            "MEDIA_MAX_AUDIO_SECONDS": "120",
        }
    )
    assert settings.transcription_model == "gpt-4o-transcribe"
    assert settings.media_allowed_hosts == ("lookaside.fbsbx.com", "fbcdn.net")
    assert (settings.media_max_bytes, settings.media_max_audio_seconds) == (1048576, 120)
    assert Settings.from_env({"TRANSCRIPTION_MODEL": ""}).transcription_model == ""  # off
    defaults = Settings.from_env({})
    assert defaults.transcription_model == "gpt-4o-mini-transcribe"
    assert "lookaside.fbsbx.com" in defaults.media_allowed_hosts
    with pytest.raises(SettingsError, match="MEDIA_ALLOWED_HOSTS"):
        Settings.from_env({"MEDIA_ALLOWED_HOSTS": "https://evil.example/x"})


def test_secrets_never_show_in_settings_repr() -> None:
    settings = Settings.from_env({"ADMIN_JWT_SECRET": JWT_SECRET, "OPENAI_API_KEY": "sk-very-secret"})
    assert JWT_SECRET not in repr(settings) and "sk-very-secret" not in repr(settings)


def test_reservation_ttl_must_outlive_two_model_calls() -> None:
    """Was: a TTL shorter than a turn let the sweeper free tokens a live call still held."""
    with pytest.raises(SettingsError, match="RESERVATION_TTL_SECONDS"):
        Settings.from_env({"RESERVATION_TTL_SECONDS": "60", "LLM_TOTAL_BUDGET": "30"})
    assert Settings.from_env({"RESERVATION_TTL_SECONDS": "90", "LLM_TOTAL_BUDGET": "30"}).reservation_ttl_seconds == 90


class _Asked(dict[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        self.names.add(name)
        return default


def test_every_setting_is_in_the_readmes_configuration_table() -> None:
    """An operator configures the gateway from the README: a variable the gateway reads and the table leaves out
    cannot be found, one the table names that nothing reads misleads."""
    asked = _Asked()
    Settings.from_env(asked)
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split(" | ")[0])}
    # Read by core/llm.py as the openai package would: its headers, and the proxy of its HTTP client.
    sdk = {
        *("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS"),
        *("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"),
    }
    assert asked.names - documented == set()
    assert documented - asked.names - sdk == set()
