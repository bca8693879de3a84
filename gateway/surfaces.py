"""The composition root of the HTTP API: which surfaces the service serves, and their handler objects.

`SURFACES` is the one list the app factory mounts and the OpenAPI document describes. `provide_handlers` builds
each operation table's handler object from the service groups, passing each exactly what its constructor asks for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from api import conversations, dashboard, feedback, provisioning, relay, service, status, webhooks
from api.audit_trail import AUDIT_STORE
from api.bodies import Limits
from api.conversations.handlers import Conversations
from api.dashboard.activity import Activity
from api.dashboard.reports import Reports
from api.dashboard.user_quota import UserQuotas
from api.feedback.handlers import Feedbacks
from api.openapi import build_document
from api.operations import Surface
from api.provisioning.accounts import Accounts
from api.provisioning.api_keys import ApiKeys
from api.provisioning.audit import AuditTrail
from api.provisioning.bots import Bots
from api.provisioning.channels import Channels
from api.provisioning.credits import Credits
from api.provisioning.exports import Exports
from api.provisioning.knowledge import Knowledge
from api.provisioning.notifications import NotificationEndpoints
from api.provisioning.plans import Plans
from api.relay.handlers import Relay
from api.service import Document, Probes
from api.status.handlers import Status
from api.webhooks import DataDeletion, Deliveries
from core.clock import Clock
from core.metrics import Metrics
from core.passwords import Passwords
from core.people import People
from gateway.services import Storage, Upstreams, Web
from gateway.settings import Settings
from web.admin_pages import AdminPageDeps
from web.bot_pages import BotPageDeps
from web.key_pages import KeyPageDeps
from web.pages import PageDeps, Pages
from web.routes import PAGES, make_templates
from web.signin import SignIn, trusted_networks
from web.try_chat import TryChat
from web.usage_pages import UsagePageDeps

SURFACES: tuple[Surface, ...] = (
    service.PROBES,
    service.DOCUMENT,
    relay.SURFACE,
    webhooks.SURFACE,
    feedback.SURFACE,
    provisioning.SURFACE,
    conversations.SURFACE,
    *dashboard.SURFACES,
    status.SURFACE,
)
# A worker process (`serve --role worker`) serves only its probes and metrics.
WORKER_SURFACES: tuple[Surface, ...] = (service.PROBES,)


def surfaces_for(role: str) -> tuple[Surface, ...]:
    return WORKER_SURFACES if role == "worker" else SURFACES


def limits(settings: Settings) -> Limits:
    return Limits(
        max_body_bytes=settings.max_body_bytes,
        max_message_chars=settings.max_message_chars,
        body_read_seconds=settings.body_read_timeout_seconds,
    )


def openapi_document(settings: Settings) -> dict[str, object]:
    return build_document(
        SURFACES, version=_version(), limits=limits(settings), public_base_url=settings.public_base_url
    )


@dataclass(frozen=True, slots=True)
class Groups:
    """What the handlers are built from (the service groups of gateway/services.py, and the frame's own)."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    storage: Storage
    upstreams: Upstreams
    web: Web
    database_wide: Callable[[], bool]  # this process exports the database-wide gauges (the housekeeping leader)


def provide_handlers(app: web.Application, g: Groups) -> None:
    s, settings = g.storage, g.settings
    service.handlers.OPERATIONS.provide(
        app,
        Probes(
            s.db,
            s.status_reader,
            g.metrics,
            llm_configured=g.upstreams.engine is not None,
            metrics_token=settings.metrics_token,
            host=settings.host,
            database_wide=g.database_wide,
        ),
    )
    service.document.OPERATIONS.provide(app, Document(_cached(lambda: openapi_document(settings))))
    relay.handlers.OPERATIONS.provide(app, Relay(s.api_keys, s.bots, g.upstreams.engine, s.handoffs))
    webhooks.deliveries.OPERATIONS.provide(
        app,
        Deliveries(g.web.directory, g.web.inbox_writer, g.metrics, max_body_bytes=settings.max_webhook_bytes),
    )
    webhooks.data_deletion.OPERATIONS.provide(
        app,
        DataDeletion(
            s.eraser,
            s.deletion_requests,
            app_secret=settings.meta_app_secret,
            public_base_url=settings.public_base_url,
        ),
    )
    app[AUDIT_STORE] = s.audit  # the JWT surfaces' audit trail middleware writes there
    feedback.handlers.OPERATIONS.provide(app, Feedbacks(s.feedback, s.api_keys))
    p = provisioning
    p.plans.OPERATIONS.provide(app, Plans(s.plans))
    p.accounts.OPERATIONS.provide(app, Accounts(s.accounts, s.quota))
    p.api_keys.OPERATIONS.provide(app, ApiKeys(s.api_keys, s.accounts))
    p.credits.OPERATIONS.provide(app, Credits(s.credits))
    p.bots.OPERATIONS.provide(app, Bots(s.bots, s.accounts, s.plans))
    p.channels.OPERATIONS.provide(app, Channels(s.channels, s.bots, g.upstreams.graph, s.queue))
    p.knowledge.OPERATIONS.provide(
        app,
        Knowledge(g.upstreams.knowledge, s.bots, s.accounts, s.plans, max_upload=settings.knowledge_max_upload_bytes),
    )
    p.notifications.OPERATIONS.provide(app, NotificationEndpoints(s.notifications, s.accounts))
    p.audit.OPERATIONS.provide(app, AuditTrail(s.audit, s.accounts))
    p.exports.OPERATIONS.provide(app, Exports(s.export_reader, s.accounts, g.web.export_slots))
    conversations.handlers.OPERATIONS.provide(
        app,
        Conversations(
            s.conversation_reader,
            s.state,
            s.bots,
            s.accounts,
            s.eraser,
            g.web.search_slots,
            g.upstreams.agent_replies,
            g.clock,
        ),
    )
    dashboard.reports.OPERATIONS.provide(
        app, Reports(s.totals_reader, s.usage_series_reader, s.bot_report_reader, s.accounts, s.quota, g.clock)
    )
    dashboard.activity.OPERATIONS.provide(app, Activity(s.activity, s.accounts))
    dashboard.user_quota.OPERATIONS.provide(app, UserQuotas(s.quota, s.accounts))
    status.handlers.OPERATIONS.provide(
        app,
        Status(
            g.upstreams.openai_probe, s.status_reader, s.accounts, g.clock, openai_base_url=settings.openai_base_url
        ),
    )


def provide_pages(app: web.Application, g: Groups) -> None:
    """The web dashboard's pages, over the handler objects the API surfaces were just given."""
    s = g.storage
    passwords = Passwords()
    signin = SignIn(
        people=s.people,
        sessions=s.web_sessions,
        passwords=passwords,
        limiter=s.rate_limits,
        accounts=s.accounts,
        secure_cookies=(g.settings.public_base_url or "").startswith("https://"),
        trusted_proxies=trusted_networks(g.settings.trusted_proxies),
    )
    app[PAGES] = Pages(
        PageDeps(
            signin=signin,
            reports=app[dashboard.reports.OPERATIONS.key],
            status=app[status.handlers.OPERATIONS.key],
            conversations=app[conversations.handlers.OPERATIONS.key],
            bots=s.bots,
            templates=make_templates(),
            clock=g.clock,
            bot_pages=BotPageDeps(
                bots=app[provisioning.bots.OPERATIONS.key],
                channels=app[provisioning.channels.OPERATIONS.key],
                knowledge=app[provisioning.knowledge.OPERATIONS.key],
                accounts=s.accounts,
                plans=s.plans,
                try_chat=None if g.upstreams.engine is None else TryChat(g.upstreams.engine, s.accounts, s.handoffs),
                limiter=s.rate_limits,
                max_upload=g.settings.knowledge_max_upload_bytes,
            ),
            usage_pages=UsagePageDeps(
                reports=app[dashboard.reports.OPERATIONS.key],
                exports=app[provisioning.exports.OPERATIONS.key],
                activity=app[dashboard.activity.OPERATIONS.key],
            ),
            admin_pages=AdminPageDeps(
                accounts=app[provisioning.accounts.OPERATIONS.key],
                plans=app[provisioning.plans.OPERATIONS.key],
                credits=app[provisioning.credits.OPERATIONS.key],
                people=People(s.people, passwords),
            ),
            key_pages=KeyPageDeps(
                api_keys=app[provisioning.api_keys.OPERATIONS.key], accounts=s.accounts, limiter=s.rate_limits
            ),
        )
    )


def _cached(build: Callable[[], dict[str, object]]) -> Callable[[], bytes]:
    """The encoded document, built on first use (it walks every model) and then served from memory."""
    body: list[bytes] = []

    def encoded() -> bytes:
        if not body:
            body.append(json.dumps(build(), separators=(",", ":")).encode())
        return body[0]

    return encoded


def _version() -> str:
    try:
        return version("nexus-gateway")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
