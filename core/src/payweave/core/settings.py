"""payweave configuration: pydantic-settings from ``PAYWEAVE_*`` environment variables and an
optional TOML file (``PAYWEAVE_CONFIG``, default ``./payweave.toml`` when present).

Precedence: explicit arguments > environment > TOML file > defaults. Nested values use ``__``
(``PAYWEAVE_JOBS__LEASE_SECONDS=60``). Secrets are ``SecretStr`` and never logged.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class JobSettings(BaseModel):
    lease_seconds: float = Field(60.0, gt=0, description="How long a worker owns a claimed job.")
    poll_interval: float = Field(0.5, gt=0, description="Seconds between polls when idle.")
    max_attempts: int = Field(8, ge=1, description="Attempts before a retryable job is parked as failed.")
    backoff_base: float = Field(2.0, ge=0, description="First retry delay in seconds (exponential, jittered).")
    backoff_max: float = Field(900.0, ge=0, description="Longest retry delay in seconds.")
    late_capture_margin_seconds: float = Field(
        6 * 3600, ge=0, description="Late automatic capture runs this long before the reservation expires."
    )
    renewal_margin_seconds: float = Field(24 * 3600, ge=0, description="Renew reservations expiring within this.")
    batch_size: int = Field(20, ge=1, description="Jobs claimed per poll.")


class ServiceSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8780
    public_base_url: str = Field("http://127.0.0.1:8780", description="Base URL customers and PSPs reach.")
    max_body_bytes: int = Field(1_000_000, gt=0, description="Larger request bodies are refused with 413.")


def _config_file() -> Path | None:
    explicit = os.environ.get("PAYWEAVE_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path("payweave.toml")
    return default if default.is_file() else None


class PayweaveSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAYWEAVE_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    database_url: str = Field("sqlite:///./payweave.db", description="SQLAlchemy URL of the state store.")
    plugins: str | None = Field(
        None,
        description="Allow-list of plugins to load (entry-point or distribution names, comma separated); "
        "unset loads all, an empty value loads none.",
    )
    disabled_plugins: str = Field("", description="Block-list of plugin names; '*' blocks all.")
    trace_plugins: bool = Field(False, description="Log every hook call with its outcome.")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    api_key_pepper: SecretStr = Field(
        SecretStr("payweave-dev-pepper"), description="Server-side secret mixed into API key hashes."
    )
    jobs: JobSettings = Field(default_factory=JobSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    #: Per-plugin accounts: ``[accounts.psp_stripe_like.main] api_key = "sk_..."``.
    accounts: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def __repr_args__(self) -> Any:
        """repr()/str() never show secrets: the accounts' values (plugin settings hold API keys and
        client secrets as plain strings until the plugin's model wraps them) are left out, and the
        database URL's password is masked."""
        for name, value in super().__repr_args__():
            if name == "accounts":
                value = {plugin: {account: sorted(fields) for account, fields in accounts.items()}
                         for plugin, accounts in value.items()}
            elif name == "database_url":
                try:
                    from sqlalchemy.engine import make_url

                    value = make_url(value).render_as_string(hide_password=True)
                except Exception:  # not a URL: nothing to hide
                    pass
            yield name, value

    def plugin_allow_list(self) -> list[str] | None:
        if self.plugins is None:
            return None
        return [name.strip() for name in self.plugins.split(",") if name.strip()]

    def plugin_block_list(self) -> list[str]:
        return [name.strip() for name in self.disabled_plugins.split(",") if name.strip()]
