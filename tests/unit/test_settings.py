"""Settings: read from the environment, and every one documented in .env.example."""

import re
from pathlib import Path

import pytest

from shared.settings import Settings

ENV_EXAMPLE = Path(__file__).parents[2] / ".env.example"


def test_every_setting_is_documented_with_its_default() -> None:
    documented = dict(re.findall(r"^([A-Z_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for name in Settings.model_fields:
        env = "REDIS_URL" if name == "redis_url" else (
            "DATABASE_URL" if name == "database_url" else f"NEWSFLOW_{name.upper()}")
        assert env in documented, f"{env} is missing from .env.example"
        value = getattr(defaults, name)
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert documented[env] in (shown, shown.removesuffix(".0")), (env, documented[env], shown)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:1/2")
    monkeypatch.setenv("NEWSFLOW_MAX_DELIVERIES", "9")
    monkeypatch.setenv("NEWSFLOW_ALLOW_PRIVATE_NETWORKS", "true")
    settings = Settings()
    assert settings.redis_url == "redis://elsewhere:1/2"
    assert settings.max_deliveries == 9
    assert settings.allow_private_networks is True


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()
