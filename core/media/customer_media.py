"""A customer's media made into what a turn takes: a voice note's words, a photo's image part.

The bytes come through `MediaFetcher` (allowed hosts, size and time limits), the words through `ChargedTranscriber`
(reserved, charged, and stored with the inbox event by the caller's `keep`). When the media cannot be had, the step
answers a `MediaFailure`: why (for the log), whether another try later may work, and the sentence the customer is told
otherwise. The channel worker decides between the two; the customer is never left without an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.events import Attachment, ContentType, InboundEvent
from core.chat import ImagePart
from core.errors import UpstreamUnavailable
from core.media.download import Media, MediaFetcher, MediaUnavailable
from core.media.images import ImageRefused, image_part
from core.media.transcriber import AudioRefused, ChargedTranscriber
from core.models import Channel
from core.paid_calls import Payer
from core.storage.db import Transaction

VOICE_UNAVAILABLE = "Sorry, I couldn't open your voice message. Could you send it again, or type your question instead?"
VOICE_UNREADABLE = "Sorry, I couldn't understand your voice message. Could you type your question instead?"
PHOTO_UNAVAILABLE = "Sorry, I couldn't open your photo. Could you send it again, or tell me in words what you need?"


@dataclass(frozen=True, slots=True)
class MediaFailure:
    reason: str  # for the log and the inbox row
    temporary: bool  # another try later may work (a timeout, a 5xx, a provider failing)
    answer: str  # what the customer is told when it is not tried again


class CustomerMedia:
    def __init__(self, fetcher: MediaFetcher, transcriber: ChargedTranscriber | None) -> None:
        self._fetcher = fetcher
        self._transcriber = transcriber  # None: TRANSCRIPTION_MODEL is off, or no model is configured

    @property
    def hears(self) -> bool:
        """Whether voice notes are transcribed (otherwise they get the bot's media answer)."""
        return self._transcriber is not None

    async def heard(
        self,
        channel: Channel,
        audio: Attachment,
        token: str,
        payer: Payer,
        keep: Callable[[Transaction, str], Awaitable[None]],
    ) -> str | MediaFailure:
        """A voice note's words, transcribed and charged to `payer` (`keep` stores them in the charge's commit).
        QuotaExceeded and AccountLocked travel to the caller: the account decides, not the media."""
        assert self._transcriber is not None
        try:
            media = await self._fetch(channel, audio, token)
        except MediaUnavailable as exc:
            return MediaFailure(str(exc), exc.temporary, VOICE_UNAVAILABLE)
        try:
            return await self._transcriber.transcribe(media, payer, keep)
        except AudioRefused as exc:
            return MediaFailure(str(exc), False, VOICE_UNREADABLE)
        except UpstreamUnavailable as exc:
            return MediaFailure(f"transcription: {exc}", exc.temporary, VOICE_UNREADABLE)

    async def seen(self, channel: Channel, picture: Attachment, token: str) -> ImagePart | MediaFailure:
        """A photo as an image part for the model (checked, as a data URL); never stored here."""
        try:
            media = await self._fetch(channel, picture, token)
            return await asyncio.to_thread(image_part, media.data)  # base64 of megabytes: off the event loop
        except MediaUnavailable as exc:
            return MediaFailure(str(exc), exc.temporary, PHOTO_UNAVAILABLE)
        except ImageRefused as exc:
            return MediaFailure(str(exc), False, PHOTO_UNAVAILABLE)

    async def _fetch(self, channel: Channel, attachment: Attachment, token: str) -> Media:
        """WhatsApp media by id through Graph (asked for the number it came to); Messenger and Instagram by URL."""
        if attachment.media_id is not None:
            return await self._fetcher.whatsapp(attachment.media_id, token, channel.external_id)
        return await self._fetcher.url(attachment.url or "", attachment.mime_type)


def fetchable(event: InboundEvent, kind: ContentType) -> Attachment | None:
    """The first attachment of a message of this kind that can be fetched (a media id or a URL)."""
    if event.content_type is not kind:
        return None
    for attachment in event.attachments:
        if attachment.media_id or attachment.url:
            return attachment
    return None
