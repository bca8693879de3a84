"""Channels: connect a bot to a Facebook Page, an Instagram account or a WhatsApp number.

Access tokens, app secrets and verify tokens are write-only: accepted here, sealed with SECRETS_KEY, and never
returned (answers say only whether a secret is set).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from adapters.graph_client import GraphClient
from admin.auth import principal, require_writer
from admin.bots import visible_bot
from core.channel_ownership import verify_ownership
from core.clock import iso_utc
from core.errors import NotFound
from core.secrets import SecretsError
from core.storage.channels import Channel
from gateway.errors import ApiError
from gateway.keys import SERVICES
from gateway.validation import Field, read_json, validate

routes = web.RouteTableDef()
log = structlog.get_logger("admin.channels")

_SECRET_FIELDS = (
    Field("access_token", str, max_length=4096, credential=True),
    Field("app_secret", str, nullable=True, max_length=256, credential=True),
    Field("verify_token", str, nullable=True, max_length=256, credential=True),
)
_CREATE = (
    Field("platform", str, required=True, choices=("messenger", "instagram", "whatsapp")),
    Field("external_id", str, required=True, max_length=64),
    Field("access_token", str, required=True, max_length=4096, credential=True),
    *_SECRET_FIELDS[1:],
)
_UPDATE = (*_SECRET_FIELDS, Field("status", str, choices=("active", "disabled")))


def channel_json(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "account_id": channel.account_id,
        "bot_id": channel.bot_id,
        "platform": channel.platform,
        "external_id": channel.external_id,
        "status": channel.status,
        "status_reason": channel.status_reason,
        "has_app_secret": channel.has_app_secret,
        "has_verify_token": channel.has_verify_token,
        "created_at": iso_utc(channel.created_at),
        "updated_at": iso_utc(channel.updated_at),
    }


@routes.post("/bots/{bot_id}/channels")
async def connect_channel(request: web.Request) -> web.Response:
    bot = await visible_bot(request)
    require_writer(principal(request))
    body = validate(await read_json(request), _CREATE)
    if not body["external_id"].isdigit():
        raise ApiError(400, "bad_request", "'external_id' must be the numeric Page, Instagram or phone number id")
    services = request.config_dict[SERVICES]
    try:
        services.channels.require_sealing()
        # Graph must confirm the token controls the id; otherwise a tenant could claim another business's Page or
        # number and receive its customers' messages. Checked before anything is stored, and before the
        # already-connected check, so someone without the token learns nothing about the id.
        await _check_ownership(services.graph, body["platform"], body["external_id"], body["access_token"])
        channel = await services.channels.connect(bot.account_id, bot.id, body)
    except SecretsError as exc:
        raise ApiError(503, "not_configured", str(exc)) from None
    services.directory.invalidate()
    return web.json_response(channel_json(channel), status=201)


@routes.get("/bots/{bot_id}/channels")
async def list_channels(request: web.Request) -> web.Response:
    bot = await visible_bot(request)
    channels = await request.config_dict[SERVICES].channels.for_bot(bot.id)
    return web.json_response({"channels": [channel_json(c) for c in channels]})


@routes.get("/channels/{channel_id}")
async def get_channel(request: web.Request) -> web.Response:
    return web.json_response(channel_json(await _visible_channel(request)))


@routes.patch("/channels/{channel_id}")
async def update_channel(request: web.Request) -> web.Response:
    channel = await _visible_channel(request)
    require_writer(principal(request))
    body = validate(await read_json(request), _UPDATE, partial=True)
    services = request.config_dict[SERVICES]
    try:
        if body.get("access_token") is not None:
            services.channels.require_sealing()
            await _check_ownership(services.graph, channel.platform, channel.external_id, body["access_token"])
        updated = await services.channels.update(channel.id, body)
    except SecretsError as exc:
        raise ApiError(503, "not_configured", str(exc)) from None
    services.directory.invalidate()
    if channel.status == "needs_reauth" and updated.status == "active":
        # Messages that waited for the new token are answered now, not at their next scheduled look.
        woken = await services.queue.wake(channel.id)
        log.info("channel_reauthorised", channel_id=channel.id, waiting_events=woken)
    return web.json_response(channel_json(updated))


@routes.delete("/channels/{channel_id}")
async def disconnect_channel(request: web.Request) -> web.Response:
    channel = await _visible_channel(request)
    require_writer(principal(request))
    services = request.config_dict[SERVICES]
    await services.channels.disconnect(channel.id)
    services.directory.invalidate()
    return web.Response(status=204)


async def _check_ownership(graph: GraphClient, platform: str, external_id: str, access_token: str) -> None:
    verdict = await verify_ownership(graph, platform, external_id, access_token)
    if verdict.outcome == "rejected":
        raise ApiError(400, "bad_request", f"the access token does not control this {platform} id: {verdict.reason}")
    if verdict.outcome == "unavailable":
        raise ApiError(502, "upstream_unavailable", verdict.reason)
    log.info("channel_ownership_verified", platform=platform, external_id=external_id)


async def _visible_channel(request: web.Request) -> Channel:
    channel = await request.config_dict[SERVICES].channels.get(request.match_info["channel_id"])
    who = principal(request)
    if not who.is_admin and who.account_id != channel.account_id:
        raise NotFound("channel")  # another account's channel looks exactly like one that does not exist
    return channel
