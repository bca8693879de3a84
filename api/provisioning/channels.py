"""Channels: connect a bot to a Facebook Page, an Instagram account or a WhatsApp number.

Access tokens, app secrets and verify tokens are write-only: accepted here, sealed with SECRETS_KEY, and never
returned (answers say only whether a secret is set).
"""

from __future__ import annotations

import structlog
from aiohttp import web

from adapters.graph_client import GraphClient
from admin.access import require_writer
from api.bodies import Body
from api.errors import ApiError
from api.jwt_auth import principal
from api.operations import JWT, OperationTable
from api.provisioning.bots import visible_bot
from api.provisioning.models import ChannelChanges, ChannelConnect, ChannelList
from core.channel_ownership import verify_ownership
from core.errors import NotFound
from core.models import Channel
from core.secrets import SecretsError
from core.storage.bots import BotStore
from core.storage.channels import ChannelStore
from core.storage.inbox_queue import InboxQueue

log = structlog.get_logger("api.provisioning.channels")


class Channels:
    def __init__(
        self,
        channels: ChannelStore,
        bots: BotStore,
        graph: GraphClient,
        queue: InboxQueue,
    ) -> None:
        self._channels = channels
        self._bots = bots
        self._graph = graph  # Graph reads made for the admin API: does the token control the id?
        self._queue = queue

    async def connect_channel(self, request: web.Request, body: Body[ChannelConnect]) -> Channel:
        bot = await visible_bot(request, self._bots)
        require_writer(principal(request))
        wanted = await body.parse()
        if not (wanted.external_id.isascii() and wanted.external_id.isdigit()):
            raise ApiError(400, "bad_request", "'external_id' must be the numeric Page, Instagram or phone number id")
        try:
            self._channels.require_sealing()
            # Graph must confirm the token controls the id; otherwise a tenant could claim another business's Page
            # or number and receive its customers' messages. Checked before anything is stored, and before the
            # already-connected check, so someone without the token learns nothing about the id.
            await self._check_ownership(wanted.platform, wanted.external_id, wanted.access_token)
            channel = await self._channels.connect(bot.account_id, bot.id, wanted.model_dump())
        except SecretsError as exc:
            raise ApiError(503, "not_configured", str(exc)) from None
        return channel

    async def list_channels(self, request: web.Request) -> ChannelList:
        bot = await visible_bot(request, self._bots)
        return ChannelList(channels=await self._channels.for_bot(bot.id))

    async def get_channel(self, request: web.Request) -> Channel:
        return await self._visible_channel(request)

    async def update_channel(self, request: web.Request, body: Body[ChannelChanges]) -> Channel:
        channel = await self._visible_channel(request)
        require_writer(principal(request))
        changes = (await body.parse()).sent()
        try:
            if changes.get("access_token") is not None:
                self._channels.require_sealing()
                await self._check_ownership(channel.platform, channel.external_id, changes["access_token"])
            updated = await self._channels.update(channel.id, changes)
        except SecretsError as exc:
            raise ApiError(503, "not_configured", str(exc)) from None
        if channel.status == "needs_reauth" and updated.status == "active":
            # Messages that waited for the new token are answered now, not at their next scheduled look.
            woken = await self._queue.wake(channel.id)
            log.info("channel_reauthorised", channel_id=channel.id, waiting_events=woken)
        return updated

    async def disconnect_channel(self, request: web.Request) -> None:
        channel = await self._visible_channel(request)
        require_writer(principal(request))
        await self._channels.disconnect(channel.id)

    async def _check_ownership(self, platform: str, external_id: str, access_token: str) -> None:
        verdict = await verify_ownership(self._graph, platform, external_id, access_token)
        if verdict.outcome == "rejected":
            raise ApiError(
                400, "bad_request", f"the access token does not control this {platform} id: {verdict.reason}"
            )
        if verdict.outcome == "unavailable":
            raise ApiError(502, "upstream_unavailable", verdict.reason)
        log.info("channel_ownership_verified", platform=platform, external_id=external_id)

    async def _visible_channel(self, request: web.Request) -> Channel:
        channel = await self._channels.get(request.match_info["channel_id"])
        who = principal(request)
        if not who.is_admin and who.account_id != channel.account_id:
            raise NotFound("channel")  # another account's channel looks exactly like one that does not exist
        return channel


OPERATIONS = OperationTable(Channels, tag="admin", security=JWT)
OPERATIONS.post(
    "/bots/{bot_id}/channels",
    Channels.connect_channel,
    summary="Connect the bot to a Page, an Instagram account or a WhatsApp number",
    description=(
        "Graph must confirm that the access token controls the id (400 if not, 502 if Graph is unreachable); "
        "secrets are sealed with SECRETS_KEY (503 not_configured without it) and never returned. 409 if the id "
        "is already connected to a bot."
    ),
    errors=(403, 409, 502, 503),
)
OPERATIONS.get("/bots/{bot_id}/channels", Channels.list_channels, summary="The bot's channels")
OPERATIONS.get("/channels/{channel_id}", Channels.get_channel, summary="One channel")
OPERATIONS.patch(
    "/channels/{channel_id}",
    Channels.update_channel,
    summary="Replace a channel's secrets or switch it on and off",
    description="A new access token is checked with Graph first and clears needs_reauth; the messages that "
    "waited for it are answered at once.",
    errors=(403, 502, 503),
)
OPERATIONS.delete("/channels/{channel_id}", Channels.disconnect_channel, summary="Disconnect a channel", errors=(403,))
