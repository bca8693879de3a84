"""WhatsApp Cloud API webhooks (`object: "whatsapp_business_account"`) -> typed `InboundEvent`s.

`parse(payload)` is pure: no I/O, no state, and it never raises. It walks every `entry[]`, every `changes[]`
and, in each `value`, every `messages[]`, `statuses[]` and value-level `errors[]` element; one event per element.

Routing: `channel_external_id` is `value.metadata.phone_number_id` (entry.id is the WABA, which may hold several
numbers; the display number can change). The customer is the message `from` / status `recipient_id` (wa_id), or,
for a customer whose number Meta does not share, `from_user_id` / `recipient_user_id` (a business-scoped user id),
named from `value.contacts[]`. `smb_message_echoes` (a person answering from the WhatsApp Business app on a number
shared with the Cloud API) become ECHO events for the customer in `to`. WhatsApp sends unix seconds as strings;
`timestamp_ms` is seconds x 1000.

`event_key` (the inbox dedupe key, stable across Meta's retries and unique within a channel):
- `messages[]` element, any kind (text, media, reaction, edit, revoke, ...): its own wamid `messages[].id`.
  Every message, reactions and edits included, carries a fresh wamid, so no prefix is needed.
- `statuses[]` element: `status:<wamid>:<status>` (one per state of one of our outbound messages).
- value-level `errors[]` element: `error:<code>:<timestamp>`, or `error:<code>:<sha256 of the error>` when it has
  no timestamp (the documented case), so a retried delivery of the same error dedupes.
- UNKNOWN: `unknown:<sha256 of the element's canonical JSON (sorted keys)>`.

Malformed input never raises; it becomes UNKNOWN events carrying the offending element in `raw`:
- a body that is not an object, or whose `entry` is not a list: one UNKNOWN for the body (`{"entry": []}` is a
  valid empty batch: `[]`);
- an entry without a `changes` list, a change whose `field` is not "messages" (template status, account_update,
  ...), a "messages" change without `value.metadata.phone_number_id` or with nothing in it: one UNKNOWN each;
- a message without an id, sender or valid timestamp, of an unknown type, or whose `<type>` object is missing
  or unusable; a status without id, status or valid timestamp; a non-list `messages`/`statuses`/`errors`.
Such events are never answered; `channel_external_id` is "" when no phone_number_id is known.

`request_welcome` (the customer opened the chat for the first time; Meta sends it so the business can greet
them) is a MESSAGE with content type OTHER and no text: it deserves an answer, a welcome, rather than silence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from adapters.events import DeliveryStatus, EventKind, InboundEvent, Platform, Referral
from adapters.whatsapp_content import as_id, as_mapping, as_str, read_content, read_errors, seconds_to_ms

_ELEMENT_KEYS = ("messages", "statuses", "errors")


def parse(payload: Mapping[str, Any]) -> list[InboundEvent]:
    """Every event in one webhook body, in delivery order."""
    body = as_mapping(payload)
    entries = None if body is None else body.get("entry")
    if not isinstance(entries, list):
        return [_unknown(payload, "")]
    events: list[InboundEvent] = []
    for entry in entries:
        events.extend(_parse_entry(entry))
    return events


def _parse_entry(entry: Any) -> list[InboundEvent]:
    mapping = as_mapping(entry)
    changes = None if mapping is None else mapping.get("changes")
    if mapping is None or not isinstance(changes, list):
        return [_unknown(entry, "")]
    # Non-"messages" fields (template updates, ...) carry `entry.time`; message elements have their own time.
    entry_ms = seconds_to_ms(mapping.get("time")) or 0
    events: list[InboundEvent] = []
    for change in changes:
        events.extend(_parse_change(change, entry_ms))
    return events


def _parse_change(change: Any, entry_ms: int) -> list[InboundEvent]:
    mapping = as_mapping(change) or {}
    value = as_mapping(mapping.get("value")) or {}
    channel = as_id((as_mapping(value.get("metadata")) or {}).get("phone_number_id"))
    if mapping.get("field") == "smb_message_echoes" and channel is not None:
        return _business_app_echoes(change, value, channel, entry_ms)
    if mapping.get("field") != "messages" or channel is None:
        return [_unknown(change, channel or "", entry_ms)]
    names = _contact_names(value.get("contacts"))
    events: list[InboundEvent] = []
    for key in _ELEMENT_KEYS:
        elements = value.get(key)
        if elements is None:
            continue
        if not isinstance(elements, list):
            events.append(_unknown({key: elements}, channel, entry_ms))
            continue
        for element in elements:
            if key == "messages":
                events.append(_message_event(element, channel, names))
            elif key == "statuses":
                events.append(_status_event(element, channel, names))
            else:
                events.append(_error_event(element, channel, entry_ms))
    # A "messages" change with nothing we can read is still kept, so a new shape shows up in inspection.
    return events or [_unknown(change, channel, entry_ms)]


def _business_app_echoes(change: Any, value: Mapping[str, Any], channel: str, entry_ms: int) -> list[InboundEvent]:
    """`smb_message_echoes` (WhatsApp coexistence): a person replied to a customer from the WhatsApp Business app on
    the same number. Echo events, as Messenger's are: the bot then leaves the conversation to that person."""
    echoes = value.get("message_echoes")
    if not isinstance(echoes, list) or not echoes:
        return [_unknown(change, channel, entry_ms)]
    events: list[InboundEvent] = []
    for element in echoes:
        echo = as_mapping(element) or {}
        wamid = as_id(echo.get("id"))
        customer = as_id(echo.get("to")) or as_id(echo.get("to_user_id"))
        timestamp_ms = seconds_to_ms(echo.get("timestamp"))
        if wamid is None or customer is None or timestamp_ms is None:
            events.append(_unknown(element, channel, timestamp_ms or entry_ms, message_id=wamid))
            continue
        events.append(
            InboundEvent(
                platform=Platform.WHATSAPP,
                kind=EventKind.ECHO,
                channel_external_id=channel,
                customer_id=customer,
                event_key=f"echo:{wamid}",
                message_id=wamid,
                timestamp_ms=timestamp_ms,
                text=as_str((as_mapping(echo.get("text")) or {}).get("body")),
                raw=echo,
            )
        )
    return events


def _contact_names(contacts: Any) -> Mapping[str, str]:
    """wa_id (and business-scoped user id) -> profile name, from `value.contacts[]` (sent with inbound messages,
    sometimes with statuses)."""
    names: dict[str, str] = {}
    for item in contacts if isinstance(contacts, list) else ():
        contact = as_mapping(item) or {}
        name = as_str((as_mapping(contact.get("profile")) or {}).get("name"))
        for key in ("wa_id", "user_id"):
            customer = as_id(contact.get(key))
            if customer is not None and name:
                names.setdefault(customer, name)
    return names


def _message_event(element: Any, channel: str, names: Mapping[str, str]) -> InboundEvent:
    message = as_mapping(element) or {}
    # `from` is the customer's number; a customer with a username may come with only `from_user_id`, their
    # business-scoped user id (BSUID), which replies are addressed to instead (adapters/replies.py).
    wamid = as_id(message.get("id"))
    sender = as_id(message.get("from")) or as_id(message.get("from_user_id"))
    timestamp_ms = seconds_to_ms(message.get("timestamp"))
    content = read_content(message)
    if wamid is None or sender is None or timestamp_ms is None or content is None:
        return _unknown(element, channel, timestamp_ms or 0, message_id=wamid, customer_id=sender)
    context = as_mapping(message.get("context")) or {}
    return InboundEvent(
        platform=Platform.WHATSAPP,
        kind=content.kind,
        channel_external_id=channel,
        customer_id=sender,
        event_key=wamid,
        message_id=wamid,
        timestamp_ms=timestamp_ms,
        content_type=content.content_type,
        text=content.text,
        attachments=content.attachments,
        location=content.location,
        contacts=content.contacts,
        button=content.button,
        reaction=content.reaction,
        referral=_referral(message.get("referral")),
        reply_to_message_id=content.reply_to_message_id or as_id(context.get("id")),
        customer_name=names.get(sender),
        errors=read_errors(message.get("errors")),
        raw=message,
    )


def _referral(value: Any) -> Referral | None:
    """Click-to-WhatsApp ad: source_type ("ad"/"post"), media_type, the ad id and the click id (ctwa_clid)."""
    referral = as_mapping(value)
    if referral is None:
        return None
    return Referral(
        source=as_str(referral.get("source_type")),
        type=as_str(referral.get("media_type")),
        ref=as_str(referral.get("ctwa_clid")),
        ad_id=as_id(referral.get("source_id")),
    )


def _status_event(element: Any, channel: str, names: Mapping[str, str]) -> InboundEvent:
    status = as_mapping(element) or {}
    wamid, state = as_id(status.get("id")), as_str(status.get("status"))
    timestamp_ms = seconds_to_ms(status.get("timestamp"))
    if wamid is None or not state or timestamp_ms is None:
        return _unknown(element, channel, timestamp_ms or 0, message_id=wamid)
    recipient = as_id(status.get("recipient_id")) or as_id(status.get("recipient_user_id"))
    errors = read_errors(status.get("errors"))
    return InboundEvent(
        platform=Platform.WHATSAPP,
        kind=EventKind.STATUS,
        channel_external_id=channel,
        customer_id=recipient,
        event_key=f"status:{wamid}:{state}",
        message_id=wamid,  # our outbound message this status is about
        timestamp_ms=timestamp_ms,
        status=DeliveryStatus(state, recipient, errors),
        customer_name=None if recipient is None else names.get(recipient),
        errors=errors,
        raw=status,
    )


def _error_event(element: Any, channel: str, entry_ms: int) -> InboundEvent:
    error = as_mapping(element)
    if error is None:
        return _unknown(element, channel, entry_ms)
    errors = read_errors([error])
    code = errors[0].code
    own_ms = seconds_to_ms(error.get("timestamp"))
    suffix = str(own_ms // 1000) if own_ms is not None else _digest(error)
    return InboundEvent(
        platform=Platform.WHATSAPP,
        kind=EventKind.ERROR,
        channel_external_id=channel,
        customer_id=None,
        event_key=f"error:{'none' if code is None else code}:{suffix}",
        message_id=None,
        timestamp_ms=own_ms if own_ms is not None else entry_ms,
        errors=errors,
        raw=error,
    )


def _unknown(
    element: Any, channel: str, timestamp_ms: int = 0, *, message_id: str | None = None, customer_id: str | None = None
) -> InboundEvent:
    return InboundEvent(
        platform=Platform.WHATSAPP,
        kind=EventKind.UNKNOWN,
        channel_external_id=channel,
        customer_id=customer_id,
        event_key=f"unknown:{_digest(element)}",
        message_id=message_id,
        timestamp_ms=timestamp_ms,
        # `raw` is a mapping by contract; a bare list or scalar is wrapped so it is still kept.
        raw=element if isinstance(element, Mapping) else {"element": element},
    )


def _digest(element: Any) -> str:
    """sha256 of canonical JSON (sorted keys, compact), so a retried delivery gets the same key."""
    try:
        text = json.dumps(element, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        # Only reachable for objects json.loads cannot produce (mixed-type keys, cycles): a stable stand-in.
        text = f"unserialisable:{type(element).__name__}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
