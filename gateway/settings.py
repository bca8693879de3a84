"""Service settings, read once from an environment mapping (12-factor); names follow the API contract."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from admin.tokens import DEFAULT_MAX_TTL_SECONDS
from core.secrets import SecretBox, SecretsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"

# HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2); PyJWT warns below 32 bytes too.
MIN_JWT_SECRET_BYTES = 32


ROLES_OF_A_PROCESS = ("all", "web", "worker")


class SettingsError(ValueError):
    """A setting is present but unusable; the message names the variable and what is expected."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite:///data/gateway.db"
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str = "https://api.openai.com/v1"
    meta_app_secret: str | None = field(default=None, repr=False)
    meta_verify_token: str | None = field(default=None, repr=False)
    graph_api_base_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v25.0"
    admin_jwt_secret: str | None = field(default=None, repr=False)
    # The longest lifetime (exp - iat) an admin, owner or viewer token may have; longer ones are refused (401).
    admin_jwt_max_ttl_seconds: int = DEFAULT_MAX_TTL_SECONDS
    secrets_key: str | None = field(default=None, repr=False)
    # When set, GET /metrics requires it as a bearer token; unset, /metrics is open on a loopback HOST only (503).
    metrics_token: str | None = field(default=None, repr=False)
    # Where Meta reaches this service (used for the data deletion status URL); derived from the request if unset.
    public_base_url: str | None = None
    # A dashboard session ends this long after sign-in, however busy (web/signin.py).
    session_hours: int = 12
    log_level: str = "INFO"
    log_format: str = "json"
    data_dir: Path = DEFAULT_DATA_DIR
    # LLM call policy: per-attempt timeout, attempts, and the wall-clock budget for one call with its retries.
    llm_attempt_timeout: float = 20.0
    llm_max_attempts: int = 3
    llm_total_budget: float = 30.0
    # Longest inbound message accepted, in characters; longer ones are refused with 400, never silently cut.
    max_message_chars: int = 4000
    max_body_bytes: int = 256 * 1024
    # A request body must arrive within this many seconds (else 408 and the connection is closed).
    body_read_timeout_seconds: int = 15
    # Meta documents webhook bodies of up to 3 MB (WhatsApp); a little headroom above that.
    max_webhook_bytes: int = 4 * 1024 * 1024
    # What this process does (`serve --role`): all (the default), web (every HTTP API and webhook, no inbox
    # workers) or worker (inbox workers and housekeeping; only /healthz, /readyz and /metrics).
    role: str = "all"
    # Inbox workers in this process (0: ingest only; a web process runs none whatever this says). 32, measured
    # (python -m bench.webhooks --workers 8 / 32): 161 / 207 messages answered a second end to end on one process,
    # and the acknowledgements no slower (at 1,000 deliveries/s both saturate the core).
    workers: int = 32
    # Fewer workers run while a webhook's inbox commit takes longer than this to acknowledge (0: never give way).
    worker_ack_target_ms: int = 4
    # A worker-role process lowers its CPU priority by this much (nice) when it starts, so that where web and worker
    # processes share cores, a webhook's acknowledgement is not kept waiting behind a turn: the cross-process
    # counterpart of WORKER_ACK_TARGET_MS. A process alone on its cores runs as fast either way. Measured with
    # bench/webhooks.py on PostgreSQL (1 web + 2 worker processes, 1,000 deliveries/s, 2 cores): ack p99 45-135 ms
    # at 0, 17-52 ms at 10.
    worker_nice: int = 10
    # How long an event's lease lasts: the worker holding it renews it every third of this while its turn runs
    # (a model call may take longer than a lease), so this is how soon another worker takes up the events of a
    # process that died.
    inbox_lease_seconds: int = 15
    # A stored event waits this long before a worker may take it, so that an earlier message of the same
    # conversation still being stored (another delivery, another process) is answered first.
    inbox_settle_ms: int = 50
    # Workers look for due events this often without being rung (retries coming due, another process's events
    # on SQLite, a ring lost with its connection).
    inbox_poll_seconds: float = 0.5
    # PostgreSQL connections this process opens at most for the message path and the APIs (reports and exports
    # have REPORT_CONNECTIONS more); SQLite has one writer and one reader whatever this says.
    database_pool_size: int = 10
    # A reservation older than this belongs to a crashed call and is released by the sweeper.
    reservation_ttl_seconds: int = 300
    # Knowledge limits: one uploaded file, and per account the documents and their tokens all together
    # (2,000,000 tokens: about 3,000 pages of text; each turn reads only the few chunks that answer it).
    knowledge_max_upload_bytes: int = 20 * 1024 * 1024
    knowledge_max_documents: int = 1000
    knowledge_max_account_tokens: int = 2_000_000
    # URL imports never reach loopback, private or link-local addresses unless allowed here (core/knowledge/fetch.py):
    # all of them (KNOWLEDGE_FETCH_ALLOW_PRIVATE=1), or only these networks (an intranet wiki, say).
    knowledge_fetch_allow_private: bool = False
    knowledge_fetch_allow_networks: tuple[str, ...] = ()
    knowledge_fetch_timeout_seconds: float = 15.0
    # Accounts' notification endpoints (core/notifier.py) pass the same address policy as URL imports.
    notify_allow_private: bool = False
    notify_allow_networks: tuple[str, ...] = ()
    # The TLS proxies in front (their addresses or networks): for a request from one of them, the dashboard takes
    # the client's address from X-Forwarded-For (sign-in attempt limits count per client, not per proxy).
    trusted_proxies: tuple[str, ...] = ()
    notify_timeout_seconds: float = 10.0
    # Hybrid knowledge retrieval: the embeddings model at {OPENAI_BASE_URL}/embeddings (unset: lexical alone, no
    # network), and the cosine similarity at which a chunk is relevant whatever its words (model-dependent: the
    # README says how to choose it).
    embeddings_model: str | None = None
    knowledge_min_similarity: float = 0.5
    # Voice notes and audio are transcribed by this model at {OPENAI_BASE_URL}/audio/transcriptions (the contract's
    # default); "" turns transcription off (audio then gets the bot's media answer).
    transcription_model: str = "gpt-4o-mini-transcribe"
    # Media is downloaded only from these hosts (names, or suffixes matching their subdomains): Meta's Graph and CDN.
    media_allowed_hosts: tuple[str, ...] = (
        "graph.facebook.com",
        "lookaside.fbsbx.com",
        "cdn.fbsbx.com",
        "fbcdn.net",
        "cdninstagram.com",
        "whatsapp.net",
    )
    media_max_bytes: int = 16 * 1024 * 1024  # WhatsApp's own limit for audio
    media_max_audio_seconds: int = 600
    media_timeout_seconds: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        defaults = cls()
        secret = get("ADMIN_JWT_SECRET")
        if secret is not None and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise SettingsError(
                f"ADMIN_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes; "
                "generate one with: python -m gateway keygen"
            )
        secrets_key = get("SECRETS_KEY")
        if secrets_key is not None:
            try:
                SecretBox(secrets_key)
            except SecretsError as exc:
                raise SettingsError(str(exc)) from None
        log_format = (get("LOG_FORMAT") or defaults.log_format).lower()
        if log_format not in ("json", "console"):
            raise SettingsError("LOG_FORMAT must be 'json' or 'console'")
        log_level = (get("LOG_LEVEL") or defaults.log_level).upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        settings = cls(
            host=get("HOST") or defaults.host,
            port=_int(env, "PORT", defaults.port, low=0, high=65535),
            database_url=get("DATABASE_URL") or defaults.database_url,
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=(get("OPENAI_BASE_URL") or defaults.openai_base_url).rstrip("/"),
            meta_app_secret=get("META_APP_SECRET"),
            meta_verify_token=get("META_VERIFY_TOKEN"),
            graph_api_base_url=(get("GRAPH_API_BASE_URL") or defaults.graph_api_base_url).rstrip("/"),
            graph_api_version=get("GRAPH_API_VERSION") or defaults.graph_api_version,
            admin_jwt_secret=secret,
            admin_jwt_max_ttl_seconds=_int(
                env, "ADMIN_JWT_MAX_TTL_SECONDS", defaults.admin_jwt_max_ttl_seconds, low=60, high=10 * 365 * 24 * 3600
            ),
            secrets_key=secrets_key,
            metrics_token=get("METRICS_TOKEN"),
            public_base_url=get("PUBLIC_BASE_URL"),
            session_hours=_int(env, "SESSION_HOURS", defaults.session_hours, low=1, high=24 * 30),
            log_level=log_level,
            log_format=log_format,
            data_dir=Path(get("DATA_DIR") or defaults.data_dir),
            llm_attempt_timeout=_float(env, "LLM_ATTEMPT_TIMEOUT", defaults.llm_attempt_timeout),
            llm_max_attempts=_int(env, "LLM_MAX_ATTEMPTS", defaults.llm_max_attempts, low=1, high=10),
            llm_total_budget=_float(env, "LLM_TOTAL_BUDGET", defaults.llm_total_budget),
            max_message_chars=_int(env, "MAX_MESSAGE_CHARS", defaults.max_message_chars, low=1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", defaults.max_body_bytes, low=1024),
            body_read_timeout_seconds=_int(
                env, "BODY_READ_TIMEOUT_SECONDS", defaults.body_read_timeout_seconds, low=1, high=600
            ),
            workers=_int(env, "WORKERS", defaults.workers, low=0, high=256),
            worker_ack_target_ms=_int(env, "WORKER_ACK_TARGET_MS", defaults.worker_ack_target_ms, low=0, high=10_000),
            worker_nice=_int(env, "WORKER_NICE", defaults.worker_nice, low=0, high=19),
            inbox_lease_seconds=_int(env, "INBOX_LEASE_SECONDS", defaults.inbox_lease_seconds, low=3, high=3600),
            inbox_settle_ms=_int(env, "INBOX_SETTLE_MS", defaults.inbox_settle_ms, low=0, high=5000),
            inbox_poll_seconds=_float(env, "INBOX_POLL_SECONDS", defaults.inbox_poll_seconds),
            database_pool_size=_int(env, "DATABASE_POOL_SIZE", defaults.database_pool_size, low=2, high=500),
            max_webhook_bytes=_int(env, "MAX_WEBHOOK_BYTES", defaults.max_webhook_bytes, low=64 * 1024),
            reservation_ttl_seconds=_int(env, "RESERVATION_TTL_SECONDS", defaults.reservation_ttl_seconds, low=30),
            knowledge_max_upload_bytes=_int(
                env, "KNOWLEDGE_MAX_UPLOAD_BYTES", defaults.knowledge_max_upload_bytes, low=1024, high=1024**3
            ),
            knowledge_fetch_allow_private=_flag(env, "KNOWLEDGE_FETCH_ALLOW_PRIVATE"),
            knowledge_fetch_allow_networks=_networks(env, "KNOWLEDGE_FETCH_ALLOW_NETWORKS"),
            knowledge_fetch_timeout_seconds=_float(
                env, "KNOWLEDGE_FETCH_TIMEOUT_SECONDS", defaults.knowledge_fetch_timeout_seconds
            ),
            notify_allow_private=_flag(env, "NOTIFY_ALLOW_PRIVATE"),
            notify_allow_networks=_networks(env, "NOTIFY_ALLOW_NETWORKS"),
            trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            notify_timeout_seconds=_float(env, "NOTIFY_TIMEOUT_SECONDS", defaults.notify_timeout_seconds),
            embeddings_model=get("EMBEDDINGS_MODEL"),
            transcription_model=(
                defaults.transcription_model
                if env.get("TRANSCRIPTION_MODEL") is None
                else env["TRANSCRIPTION_MODEL"].strip()
            ),
            media_allowed_hosts=_hosts(env, "MEDIA_ALLOWED_HOSTS", defaults.media_allowed_hosts),
            media_max_bytes=_int(env, "MEDIA_MAX_BYTES", defaults.media_max_bytes, low=1024, high=25 * 1024 * 1024),
            media_max_audio_seconds=_int(
                env, "MEDIA_MAX_AUDIO_SECONDS", defaults.media_max_audio_seconds, low=1, high=3600
            ),
            media_timeout_seconds=_float(env, "MEDIA_TIMEOUT_SECONDS", defaults.media_timeout_seconds),
            knowledge_min_similarity=_fraction(env, "KNOWLEDGE_MIN_SIMILARITY", defaults.knowledge_min_similarity),
            knowledge_max_documents=_int(env, "KNOWLEDGE_MAX_DOCUMENTS", defaults.knowledge_max_documents, low=1),
            knowledge_max_account_tokens=_int(
                env, "KNOWLEDGE_MAX_ACCOUNT_TOKENS", defaults.knowledge_max_account_tokens, low=1000
            ),
        )
        # A turn may call the model twice (once more without history after a context overflow); a reservation
        # must outlive that, plus one sweep period, or the sweeper would free tokens a live call still holds.
        floor = 2 * settings.llm_total_budget + 30
        if settings.reservation_ttl_seconds < floor:
            raise SettingsError(f"RESERVATION_TTL_SECONDS must be at least 2 x LLM_TOTAL_BUDGET + 30 = {floor:g}")
        return settings


def _int(env: Mapping[str, str], name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SettingsError(f"{name} must be {bounds}, got {value}")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    value = _real(env, name, default, "a number between 0 and 1")
    if not 0 <= value <= 1:
        raise SettingsError(f"{name} must be between 0 and 1, got {env.get(name)!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def _hosts(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    hosts = tuple(item.strip().lower().lstrip(".") for item in raw.split(",") if item.strip())
    for host in hosts:
        if any(ch in host for ch in "/: @"):
            raise SettingsError(f"{name} must be comma-separated host names (lookaside.fbsbx.com), got {host!r}")
    return hosts


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in (env.get(name) or "").split(",") if item.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name} must be comma-separated networks (10.0.0.0/8, fd00::/8), got {item!r}"
            ) from None
    return items


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = _real(env, name, default, "a number of seconds")
    if not value > 0:
        raise SettingsError(f"{name} must be positive, got {env.get(name)!r}")
    return value


def _real(env: Mapping[str, str], name: str, default: float, what: str) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from None
