"""The MQTT sink: every record goes to disk first (the spool), then to the broker at QoS 1.

The package, by job: ``options`` (``[mqtt]``, topics), ``credentials`` (the secrets file, TLS),
``connection`` (paho's client and callbacks), ``publisher`` (the sender/ack path between the spool and
paho), ``metrics`` (stats and Prometheus), ``sink`` (:class:`MqttSink`, the Sink protocol), ``const``.
Home Assistant discovery is :mod:`device.sinks.homeassistant`; the spool is :mod:`device.sinks.spool`.

Topics (``prefix`` and ``device_id`` from :class:`MqttOptions`)::

    <prefix>/<device_id>/readings/<sensor id>       JSON of Record.to_dict(): seq, time, data …
    <prefix>/<device_id>/predictions/<model name>   idem
    <prefix>/<device_id>/status/<source>            idem
    <prefix>/<device_id>/status/availability        retained "online" / "offline" (also the last will)

Delivery: ``write``/``write_many`` append the JSON payloads to the :class:`~device.sinks.spool.Spool`
in one transaction and return once it is committed (the records are then accepted). When nothing older
is waiting, the writing thread hands the new messages to paho just before the insert, so the round trip
to the broker overlaps the fsync; otherwise a sender thread hands spooled messages to paho in spool
order. paho keeps ``max_inflight`` on the wire and queues the rest (at most ``HANDOVER``), sending them
as PUBACKs come in; a message leaves the spool only after its PUBACK (deleted in batches).
While the broker is unreachable messages stay in the spool; paho resends the ones it already had
(in order) when the connection comes back, then the sender carries on from the spool. After a restart
the spool replays everything still in it, in order. The guarantee is at-least-once: a message whose
PUBACK was lost is sent again, so consumers count by ``seq`` (per kind) and drop repeats.

Credentials live in a separate TOML file (``secrets_file``) that must not be readable by others::

    username = "pi-kitchen"
    password = "…"
    client_cert = "/etc/spinal/mqtt-client.crt"   # optional, with client_key
    client_key = "/etc/spinal/mqtt-client.key"
    client_key_password = "…"                      # optional

Neither passwords nor payloads are ever logged or put in error messages.
"""

from __future__ import annotations

from device.sinks.base import encode_record
from device.sinks.mqtt.const import AVAILABILITY, OFFLINE, ONLINE
from device.sinks.mqtt.credentials import MqttSecrets, check_options, load_secrets, make_tls_context
from device.sinks.mqtt.options import MqttOptions
from device.sinks.mqtt.sink import MqttSink

__all__ = [
    "AVAILABILITY", "OFFLINE", "ONLINE", "MqttOptions", "MqttSecrets", "MqttSink",
    "check_options", "encode_record", "load_secrets", "make_tls_context",
]
