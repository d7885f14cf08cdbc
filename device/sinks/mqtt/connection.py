"""The connection to the broker: paho's client, its callbacks, reconnection and availability.

The callbacks run on paho's network thread: they stay short and never block.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from device.sinks.homeassistant import HomeAssistantDiscovery
from device.sinks.mqtt.const import OFFLINE, ONLINE, log
from device.sinks.mqtt.credentials import MqttSecrets
from device.sinks.mqtt.options import MqttOptions
from device.sinks.mqtt.publisher import Publisher


class Connection:
    """paho's client for one sink, and what its callbacks do: count connections, hand the publisher the
    broker's window, announce availability and Home Assistant discovery, queue PUBACKs."""

    def __init__(self, options: MqttOptions, publisher: Publisher, connected: threading.Event,
                 wake: threading.Event, stop: threading.Event) -> None:
        self.options = options
        self.publisher = publisher
        self.connected = connected
        self._wake, self._stop = wake, stop
        self.homeassistant: HomeAssistantDiscovery | None = None
        self.client: Any = None
        # For the log line on reconnect; the sink gives the spool's.
        self.spool_depth: Callable[[], int] = lambda: 0
        self._last_fail_log = 0.0
        self.connects = 0
        self.reconnects = 0
        self.disconnects = 0
        self.paho_log = logging.getLogger(f"{log.name}.paho")

    def make_client(self, paho: Any, secrets: MqttSecrets, tls_context: Any) -> Any:
        """paho's client, configured (not yet connected)."""
        o = self.options
        proto = paho.MQTTv5 if o.protocol == "5" else paho.MQTTv311
        kwargs: dict[str, Any] = {"callback_api_version": paho.CallbackAPIVersion.VERSION2,
                                  "client_id": o.client_id or f"spinal-{o.device_id}", "protocol": proto}
        if proto == paho.MQTTv311:
            kwargs["clean_session"] = True
        client = paho.Client(**kwargs)
        self.paho_log.addFilter(self.quiet_when_closing)
        client.enable_logger(self.paho_log)
        client.max_inflight_messages_set(o.max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(o.reconnect_min_s, o.probe_max_s)
        client.will_set(o.availability_topic, OFFLINE, qos=1, retain=True)
        if secrets.username:
            client.username_pw_set(secrets.username, secrets.password)
        if tls_context is not None:
            client.tls_set_context(tls_context)
        client.on_connect = self.on_connect
        client.on_disconnect = self.on_disconnect
        client.on_connect_fail = self.on_connect_fail
        client.on_publish = self.publisher.on_publish
        client.on_message = self.on_message
        self.client = client
        return client

    def quiet_when_closing(self, record: logging.LogRecord) -> bool:
        """paho logs 'Client is not connected' at ERROR once its loop sees the socket we just closed."""
        return not (self._stop.is_set() and str(record.msg).startswith("Client is not connected"))

    def on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """paho's on_connect: a refusal backs off; a connection resumes sending and announces us."""
        o = self.options
        if reason.is_failure:  # the broker is there and says no: back off up to reconnect_max_s
            client.reconnect_delay_set(o.reconnect_min_s, o.reconnect_max_s)
            self._log_fail(f"broker {o.host}:{o.port_number} refused the connection: {reason}")
            return
        client.reconnect_delay_set(o.reconnect_min_s, o.probe_max_s)
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
            if self.publisher.metrics:
                self.publisher.metrics.reconnects.inc()
            log.info("MQTT reconnected to %s:%d; %d message(s) in the spool", o.host, o.port_number,
                     self.spool_depth())
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        self.publisher.on_connected(receive_max)
        self.connected.set()
        self._wake.set()
        try:
            client.publish(o.availability_topic, ONLINE, qos=1, retain=True)
            if self.homeassistant is not None:
                self.homeassistant.connected(time.monotonic())
                for topic in self.homeassistant.subscriptions:
                    client.subscribe(topic, qos=1)
                self.homeassistant.announce()
        except Exception:  # an exception here would end up in paho's log only; keep the sink running
            log.exception("MQTT: announcing availability / Home Assistant discovery failed")

    def on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        """paho's on_disconnect: spool until the connection is back."""
        if self.connected.is_set():
            self.connected.clear()
            self.disconnects += 1
            if self.publisher.metrics:
                self.publisher.metrics.disconnects.inc()
            if not self._stop.is_set():
                log.warning("MQTT connection to %s:%d lost (%s); spooling until it is back",
                            self.options.host, self.options.port_number, reason)

    def on_connect_fail(self, client: Any, userdata: Any) -> None:
        """paho's on_connect_fail (the broker cannot be reached)."""
        exc = sys.exc_info()[1]  # paho calls this from inside its `except OSError`
        detail = f": {exc}" if exc is not None else ""
        self._log_fail(f"cannot connect to broker {self.options.host}:{self.options.port_number}{detail}")

    def _log_fail(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_fail_log >= 60.0 or self._last_fail_log == 0.0:
            self._last_fail_log = now
            log.warning("MQTT %s; retrying (messages are kept in the spool)", message)

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """paho's on_message: Home Assistant's birth messages and retained configs."""
        if self.homeassistant is not None:
            try:
                self.homeassistant.handle_message(message.topic, message.payload, bool(message.retain))
            except Exception:
                log.exception("MQTT: handling a message on %s failed", message.topic)

    def publish_direct(self, topic: str, payload: bytes | str, retain: bool) -> bool:
        """Publish outside the spool (availability, discovery): only while connected, QoS 1."""
        if not self.connected.is_set():
            return False
        self.client.publish(topic, payload, qos=1, retain=retain)
        return True

    def publish_offline(self) -> None:
        """The retained "offline" before a clean disconnect (waits up to 1 s for its PUBACK)."""
        try:
            info = self.client.publish(self.options.availability_topic, OFFLINE, qos=1, retain=True)
            info.wait_for_publish(timeout=1.0)
        except (RuntimeError, ValueError):
            pass
