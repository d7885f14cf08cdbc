"""The MQTT sink's constants: topic layout, availability payloads, the sender's batching knobs."""

from __future__ import annotations

import logging

# One logger for the whole package, as before the split: operators filter on "device.sinks.mqtt".
log = logging.getLogger("device.sinks.mqtt")

KIND_DIRS = {"reading": "readings", "prediction": "predictions", "status": "status"}
AVAILABILITY = "availability"
ONLINE, OFFLINE = "online", "offline"
# PUBACK reason codes that mean "not now" rather than "never": Quota exceeded, Server busy.
TRANSIENT = frozenset({0x97, 0x89})
# Messages handed to paho at most (in flight + in paho's queue); see Publisher.handover.
HANDOVER = 1024
# Rows the sender hands over per turn (from memory or read from the spool).
FETCH_ROWS = 256
# Bytes of committed messages a writer could not hand over, kept in memory for the sender (beyond: read
# back from the file). A burst of 20,000 records read half of them back with 64 batches kept (~7 % more CPU).
PENDING_BYTES = 8 * 2**20
# The sender takes PUBACKs every ACK_TICK_S while messages are out, at once when ACK_WAKE are waiting,
# and deletes what was delivered once DELETE_BATCH are done or the oldest has waited DELETE_DELAY_S.
ACK_TICK_S = 0.01
ACK_WAKE = 128
DELETE_BATCH = 512
DELETE_DELAY_S = 0.02
SECRET_KEYS = ("username", "password", "client_cert", "client_key", "client_key_password")
