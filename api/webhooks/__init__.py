"""Meta's webhooks: deliveries for Messenger, Instagram and WhatsApp, and the data deletion callback."""

from api.operations import Surface
from api.webhooks import data_deletion, deliveries
from api.webhooks.data_deletion import DataDeletion
from api.webhooks.deliveries import Deliveries

SURFACE = Surface("webhooks", (deliveries.OPERATIONS, data_deletion.OPERATIONS))

__all__ = ["SURFACE", "DataDeletion", "Deliveries"]
