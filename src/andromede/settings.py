"""Settings: defaults < TOML file < ``ANDROMEDE_*`` environment variables.

Secrets are never literals here: root credentials come from the environment at first start
(``ANDROMEDE_ROOT_ACCESS_KEY`` / ``ANDROMEDE_ROOT_SECRET_KEY`` or their ``*_FILE`` variants)
and are then kept in ``<data_dir>/root-credentials.json`` (mode 0600).

A misspelt setting would otherwise be dropped without a word and its default used: an unknown
key in the settings file stops the start (``SettingsError``, naming it), and an unknown
``ANDROMEDE_*`` environment variable is logged as a warning (``warn_unknown_env``). The
environment only warns because other tools set such variables for themselves.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

log = logging.getLogger(__name__)
ENV_PREFIX = "ANDROMEDE_"

# ``ANDROMEDE_*`` variables that are not settings fields, and who reads them.
OTHER_ENV_VARS = frozenset(
    {
        # bootstrap: the operator's credentials at first start, or files holding them
        "ANDROMEDE_ROOT_ACCESS_KEY",
        "ANDROMEDE_ROOT_SECRET_KEY",
        "ANDROMEDE_ROOT_ACCESS_KEY_FILE",
        "ANDROMEDE_ROOT_SECRET_KEY_FILE",
        # the CLI: which server, with which key
        "ANDROMEDE_ENDPOINT",
        "ANDROMEDE_ACCESS_KEY",
        "ANDROMEDE_SECRET_KEY",
        # scripts/install-deps, the tests' KMIP server, the benchmark's peers
        "ANDROMEDE_SKIP_APT",
        "ANDROMEDE_PYTHON",
        "ANDROMEDE_KMIP_PYTHON",
        "ANDROMEDE_PEERS_DIR",
    }
)


class SettingsError(ValueError):
    """Settings the server must not start with: an unknown key in the settings file, or a
    file that cannot be read."""


class Settings(BaseSettings):
    """Everything a gateway process needs to know. Frozen once built."""

    model_config = SettingsConfigDict(env_prefix="ANDROMEDE_", frozen=True, extra="ignore")

    data_dir: Path = Path("andromede-data")
    address: str = "127.0.0.1:9000"
    database_url: str | None = None
    region: str = "us-east-1"
    domain: str | None = Field(
        default=None, description="Enables virtual-host style: <bucket>.<domain>"
    )
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    trusted_proxies: str = Field(
        default="",
        description=(
            "comma-separated addresses or CIDR ranges of load balancers whose X-Forwarded-For "
            "names the client (recorded in the audit trail); empty: the peer is the client"
        ),
    )
    garbage_grace_seconds: float = 300.0
    temp_grace_seconds: float = 900.0
    sweep_interval_seconds: float = 60.0
    orphan_scan_interval_seconds: float = 3600.0
    key_cache_seconds: float = 5.0
    max_clock_skew_seconds: float = 900.0
    body_idle_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="a request body that sends nothing for this long ends in 400 RequestTimeout",
    )
    log_level: str = "info"
    audit_sink: Literal["trail", "discard"] = Field(
        default="trail",
        description='"trail" (the signed, hash-chained trail) or "discard" (benchmarks only)',
    )
    audit_dir: Path | None = Field(default=None, description="default: <data_dir>/audit")
    audit_signing_key_file: Path | None = Field(
        default=None, description="Ed25519 PEM; default: <data_dir>/audit-signing.key"
    )
    residency_signing_key_file: Path | None = Field(
        default=None,
        description=(
            "Ed25519 PEM that signs residency reports; default: <data_dir>/"
            "residency-signing.key (a cluster's gateways share one file: one key to verify)"
        ),
    )
    audit_segment_bytes: int = 16 << 20
    audit_segment_max_age_seconds: float = 86400.0
    audit_checkpoint_interval_seconds: float = 60.0
    audit_retention_days: float = 183.0
    audit_rados: str | None = Field(
        default=None,
        description=(
            "a rados: location (rados:POOL?conf=FILE&user=NAME) where every gateway's chain "
            "is also written before a request is answered (a cluster's gateways)"
        ),
    )
    audit_syslog_address: str | None = Field(
        default=None, description="host:port of an RFC 5424 collector (TCP, octet counting)"
    )
    audit_retry_seconds: float = 1.0
    audit_record_wait_seconds: float = Field(
        default=10.0, description="a request whose record is not durable by then gets 503"
    )
    audit_writer_process: bool = Field(
        default=True,
        description="serve: one writer process per data dir (else a writer thread per worker)",
    )
    audit_inline_sync: bool = Field(
        default=True,
        description="serve: a request alone in its worker syncs its record itself instead of "
        "waiting for the writer process (false where a disk may hang: see docs/audit.md)",
    )
    audit_writer_socket: Path | None = Field(
        default=None,
        description="set by `serve` for its workers: the audit writer process's socket",
    )
    start_token: str | None = Field(
        default=None,
        description="set by `serve` for its workers (single host): no worker serves before "
        "one of them has swept the leftovers of a crash and recorded this token",
    )
    keystore_dir: Path | None = Field(
        default=None, description="built-in keystore (sealed KEKs); default: <data_dir>/keystore"
    )
    keystore_passphrase_file: Path | None = Field(
        default=None,
        description="derive the keystore's master key from this passphrase (scrypt) "
        "instead of keeping a master key file",
    )
    key_managers: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='named external key managers: {"hsm1": {"type": "pkcs11", "library": ..., '
        '"token_label": ..., "pin_file": ...}, "kms1": {"type": "kmip", ...}}',
    )
    tenant_key_managers: dict[str, str] = Field(
        default_factory=dict,
        description="tenant -> key manager name for its new keys (others: the built-in keystore)",
    )
    kms_cache_seconds: float = Field(
        default=2.0,
        description="longest time a key disabled or destroyed through another gateway process "
        "stays usable here (key states and unwrapped data keys are cached this long)",
    )
    kms_job_interval_seconds: float = Field(
        default=30.0, description="how often re-wraps and due key destructions run"
    )
    unsafe_plaintext_for_benchmarks: bool = Field(
        default=False,
        description="store new data UNENCRYPTED: only for the encryption benchmark's baseline",
    )
    data_dir_site: bool = Field(
        default=True,
        description=(
            "register a site in the data dir (`local`) at first start; false for gateways of "
            "a cluster, whose sites are shared (Ceph)"
        ),
    )
    default_site_jurisdiction: str = Field(
        default="EU",
        description="ISO 3166-1 code of the site in the data dir (registered at first start)",
    )
    placement_refresh_seconds: float = Field(
        default=2.0, description="how soon a site or region change reaches every gateway"
    )
    site_reserve_bytes: int = Field(
        default=0, description="a site with less free space than this takes no new shards"
    )
    scrub_bytes_per_second: float = Field(
        default=50e6, description="how fast the scrubber re-reads shards (0: no scrubbing)"
    )
    job_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="term of a background job's lease in the database: a dead holder's job "
        "resumes elsewhere within about 4/3 of it (see docs/architecture.md)",
    )
    repair_interval_seconds: float = Field(
        default=10.0, description="how often queued repairs, drains and the scrubber run"
    )
    lifecycle_interval_seconds: float = Field(
        default=3600.0, gt=0, description="how often the lifecycle job applies buckets' rules"
    )
    lifecycle_day_seconds: float | None = Field(
        default=None,
        gt=0,
        description="FOR TESTS ONLY: a lifecycle day lasts this many seconds (no rounding to "
        "midnight UTC), so that tests need not wait days; never set in production",
    )
    config_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments win, then the environment, then the TOML file."""
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def db_url(self) -> str:
        """The metadata database URL (SQLite in the data dir by default)."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'metadata.db').resolve()}"

    @property
    def audit_path(self) -> Path:
        """Where the trail's segments live."""
        return self.audit_dir if self.audit_dir is not None else self.data_dir / "audit"

    @property
    def audit_key_path(self) -> Path:
        """The trail's private signing key."""
        if self.audit_signing_key_file is not None:
            return self.audit_signing_key_file
        return self.data_dir / "audit-signing.key"

    @property
    def residency_key_path(self) -> Path:
        """The private key that signs residency reports."""
        if self.residency_signing_key_file is not None:
            return self.residency_signing_key_file
        return self.data_dir / "residency-signing.key"

    @property
    def keystore_path(self) -> Path:
        """The built-in keystore's directory."""
        return self.keystore_dir if self.keystore_dir is not None else self.data_dir / "keystore"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        """Addresses and ranges only: ``*`` would let every client choose the address the
        trail records."""
        for proxy in (p.strip() for p in value.split(",") if p.strip()):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or CIDR range") from None
        return value

    @property
    def proxies(self) -> list[str]:
        """The trusted proxies (addresses and CIDR ranges)."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def host(self) -> str:
        """Listening host."""
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        """Listening port."""
        return int(self.address.rsplit(":", 1)[1])

    @property
    def embedded(self) -> bool:
        """True when metadata is the local SQLite file (single host)."""
        return self.db_url.startswith("sqlite")


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the file named by ``ANDROMEDE_CONFIG_FILE`` (or ``config_file``), if any."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[object, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, object]:
        path = os.environ.get("ANDROMEDE_CONFIG_FILE")
        if not path:
            return {}
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"settings file {path}: {exc}") from exc
        section = data.get("andromede", data)
        if not isinstance(section, dict):
            return {}
        check_file_keys(section, path)
        return dict(section)


def check_file_keys(section: Mapping[str, object], source: str) -> None:
    """Refuse keys that are not settings: a typo would otherwise leave the default in force
    with no sign of it (``adress = ...`` listening on 127.0.0.1)."""
    known = list(Settings.model_fields)
    unknown = sorted(k for k in section if k not in Settings.model_fields)
    if unknown:
        named = ", ".join(repr(k) + _did_you_mean(k, known) for k in unknown)
        raise SettingsError(f"settings file {source}: unknown setting {named}")


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """The ``ANDROMEDE_*`` variables in ``environ`` that nothing reads (names are matched
    without regard to case, as the settings read them)."""
    known = known_env_vars()
    return sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )


def known_env_vars() -> frozenset[str]:
    """Every ``ANDROMEDE_*`` variable something of ours reads: one per setting, and the rest."""
    return frozenset(ENV_PREFIX + name.upper() for name in Settings.model_fields) | OTHER_ENV_VARS


def warn_unknown_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Log a warning naming each unknown ``ANDROMEDE_*`` variable; returns their names.

    A warning, not an error: a variable meant for a newer version, or for a tool of the
    operator's, should not stop a server."""
    unknown = unknown_env_vars(os.environ if environ is None else environ)
    known = sorted(known_env_vars())
    for name in unknown:
        log.warning(
            "unknown environment variable %s is ignored%s",
            name,
            _did_you_mean(name.upper(), known),
        )
    return unknown


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# Untyped values: pydantic checks each against its field. Only the values given are passed, so
# that the fields not given still come from the environment and the file.
def load_settings(**overrides: Any) -> Settings:
    """Build settings; ``overrides`` are command-line values that win over everything."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)
