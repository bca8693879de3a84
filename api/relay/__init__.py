"""`POST /api/messages/relay`: a business's own app talks to its bot, authenticated by an account API key."""

from api.operations import Surface
from api.relay.handlers import OPERATIONS, Relay

SURFACE = Surface("relay", (OPERATIONS,))

__all__ = ["SURFACE", "Relay"]
