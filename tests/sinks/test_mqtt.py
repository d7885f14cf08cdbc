"""The MQTT sink against a real Mosquitto: topics, payloads, both protocol versions, availability,
spool-full behaviour, metrics, options and secrets."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from device.errors import BadInput
from device.metrics import Registry
from device.sinks.base import Record, Sink
from device.sinks.mqtt import MqttOptions, encode_record, load_secrets
from device.sinks.spool import SpoolOptions
from tests.sinks.conftest import DEVICE, prediction, reading, wait_until
from tests.sinks.mosquitto_broker import Subscriber, first_arrivals

BASE = f"spinal/{DEVICE}"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_readings_and_predictions_arrive_in_order_with_seq_and_time(broker, subscriber, make_sink, protocol):
    sink = make_sink(broker.port, protocol=protocol)
    assert isinstance(sink, Sink)
    for i in range(100):
        sink.write(reading(i))
        sink.write(prediction(i))
    assert sink.wait_drained(20), sink.stats()
    assert wait_until(lambda: len(subscriber.snapshot(f"{BASE}/")) >= 201, 10)
    seqs = subscriber.seqs_by_topic(BASE)
    assert first_arrivals(seqs[f"{BASE}/readings/bme280"]) == list(range(100))
    assert first_arrivals(seqs[f"{BASE}/predictions/activity"]) == list(range(100))
    msg = subscriber.snapshot(f"{BASE}/readings/bme280")[0].json()
    assert msg["seq"] == 0 and abs(msg["time"] - time.time()) < 60 and msg["device"] == DEVICE
    assert msg["data"]["temperature_c"] == 20.0
    avail = subscriber.snapshot(f"{BASE}/status/availability")
    assert avail[-1].payload == b"online"
    st = sink.stats()
    assert st["acked"] == 200 and st["spool_depth"] == 0 and st["dropped"] == 0 and st["connected"]
    assert st["publish_latency_p50_s"] is not None and st["oldest_unsent_age_s"] is None
    sink.close()
    assert wait_until(lambda: subscriber.snapshot(f"{BASE}/status/availability")[-1].payload == b"offline", 5)


def test_availability_is_retained_for_late_subscribers(broker, make_sink):
    sink = make_sink(broker.port)
    assert wait_until(lambda: sink.connected, 10)
    late = Subscriber(broker.port, (f"{BASE}/status/#",), persistent=False).start()
    try:
        assert wait_until(lambda: any(m.retain and m.payload == b"online" for m in late.snapshot()), 5)
    finally:
        late.stop()


def test_status_records_and_reserved_topics(broker, subscriber, make_sink):
    sink = make_sink(broker.port)
    sink.write(Record("status", 0, time.time(), 0, DEVICE, "health", {"ok": True}))
    assert sink.wait_drained(10)
    assert wait_until(lambda: subscriber.snapshot(f"{BASE}/status/health"), 5)
    with pytest.raises(BadInput, match="reserved"):
        sink.write(Record("status", 1, time.time(), 0, DEVICE, "availability", {}))
    with pytest.raises(BadInput, match="wildcard"):
        sink.write(Record("reading", 1, time.time(), 0, DEVICE, "bme+280", {}))
    with pytest.raises(BadInput, match="device"):
        sink.write(Record("reading", 1, time.time(), 0, "other-pi", "bme280", {}))


def test_payload_is_strict_json_even_with_nan_and_numpy():
    np = pytest.importorskip("numpy")
    rec = Record("reading", 3, 1.5, 7, DEVICE, "s", {"a": float("nan"), "b": np.float32(2.5), "c": np.arange(2)})
    body = json.loads(encode_record(rec))
    assert body["data"] == {"a": None, "b": 2.5, "c": [0, 1]}
    assert body["seq"] == 3 and body["time"] == 1.5


def test_spool_full_drops_oldest_counts_and_delivers_the_rest(broker, subscriber, make_sink, tmp_path):
    registry = Registry()
    broker.kill()  # the broker is down while the spool fills
    sink = make_sink(broker.port, spool=SpoolOptions(tmp_path / "small.db", max_messages=50))
    sink.register_metrics(registry)
    for i in range(200):
        sink.write(reading(i))  # never raises
    st = sink.stats()
    assert st["spool_depth"] == 50 and st["dropped"] == 150 and st["dropped_total"] == 150
    assert not st["connected"] and st["oldest_unsent_age_s"] >= 0
    assert registry.get_sample_value("spinal_mqtt_spool_dropped_total") == 150
    assert registry.get_sample_value("spinal_mqtt_spool_depth") == 50
    assert registry.get_sample_value("spinal_mqtt_connected") == 0
    broker.start()
    assert sink.wait_drained(20), sink.stats()
    topic = f"{BASE}/readings/bme280"
    assert wait_until(lambda: len(subscriber.seqs_by_topic(BASE).get(topic, [])) >= 50, 10)
    assert first_arrivals(subscriber.seqs_by_topic(BASE)[topic]) == list(range(150, 200))
    assert registry.get_sample_value("spinal_mqtt_acked_total") == 50
    assert registry.get_sample_value("spinal_mqtt_publish_latency_seconds_count") == 50
    assert registry.get_sample_value("spinal_mqtt_spool_depth") == 0
    assert registry.get_sample_value("spinal_mqtt_connected") == 1


def test_write_many_is_one_durable_batch(broker, subscriber, make_sink):
    sink = make_sink(broker.port)
    sink.write_many([reading(i) for i in range(50)] + [prediction(i) for i in range(50)])
    assert sink.stats()["written"] == 100
    assert sink.wait_drained(15), sink.stats()
    topic = f"{BASE}/predictions/activity"
    assert wait_until(lambda: len(subscriber.seqs_by_topic(BASE).get(topic, [])) >= 50, 5)
    assert first_arrivals(subscriber.seqs_by_topic(BASE)[topic]) == list(range(50))


def test_messages_the_broker_refuses_are_counted_and_do_not_block_the_rest(tmp_path, make_sink):
    """MQTT 5 PUBACK with 'Not authorized' (Mosquitto ACL): counted, logged, dropped; the spool moves on."""
    from tests.sinks.conftest import require_mosquitto
    from tests.sinks.mosquitto_broker import Mosquitto, free_port

    require_mosquitto()
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite {BASE}/readings/#\ntopic readwrite {BASE}/status/#\ntopic read #\n")
    port = free_port()
    b = Mosquitto(tmp_path / "acl-broker", listeners=(f"listener {port} 127.0.0.1", "allow_anonymous true",
                                                       f"acl_file {acl}"), persistence=False).start()
    try:
        sub = Subscriber(port, (f"{BASE}/#",), persistent=False).start()
        sink = make_sink(port)
        for i in range(10):
            sink.write(prediction(i))  # refused by the ACL
            sink.write(reading(i))
        assert sink.wait_drained(15), sink.stats()
        st = sink.stats()
        assert st["rejected"] == 10 and st["acked"] == 10
        topic = f"{BASE}/readings/bme280"
        assert wait_until(lambda: len(sub.seqs_by_topic(BASE).get(topic, [])) == 10, 5)
        sub.stop()
    finally:
        b.kill()


def test_in_flight_window_follows_the_brokers_receive_maximum(tmp_path, make_sink):
    from tests.sinks.conftest import require_mosquitto
    from tests.sinks.mosquitto_broker import Mosquitto

    require_mosquitto()
    b = Mosquitto(tmp_path / "rm-broker", persistence=False)
    b.conf.write_text(b.conf.read_text().replace("max_inflight_messages 100", "max_inflight_messages 5"))
    b.start()
    try:
        sink = make_sink(b.port, max_inflight=64)
        sink.write_many([reading(i) for i in range(300)])
        assert sink.wait_drained(20), sink.stats()
        assert sink.stats()["window"] == 5 and sink.stats()["acked"] == 300
    finally:
        b.kill()


def test_quota_exceeded_is_retried_not_dropped(broker, subscriber, make_sink):
    """A PUBACK saying 'Quota exceeded' (MQTT 5, 0x97) means 'later': the message stays and is resent."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    sink = make_sink(broker.port)
    assert wait_until(lambda: sink.connected, 10)
    real = sink._client.on_publish
    refused = []

    def over_quota_three_times(client, userdata, mid, reason, properties):
        if len(refused) < 3 and mid in sink._outstanding:
            refused.append(mid)
            reason = ReasonCode(PacketTypes.PUBACK, identifier=0x97)
        real(client, userdata, mid, reason, properties)

    sink._client.on_publish = over_quota_three_times
    for i in range(20):
        sink.write(reading(i))
    assert sink.wait_drained(20), sink.stats()
    st = sink.stats()
    assert len(refused) == 3 and st["retries"] == 3 and st["rejected"] == 0
    topic = f"{BASE}/readings/bme280"
    assert wait_until(lambda: set(subscriber.seqs_by_topic(BASE).get(topic, [])) == set(range(20)), 5)


def test_options_validation_names_the_key(tmp_path):
    with pytest.raises(BadInput, match=r"mqtt\.device_id"):
        MqttOptions(host="h", device_id="a/b")
    with pytest.raises(BadInput, match=r"mqtt\.topic_prefix"):
        MqttOptions(host="h", device_id="a", topic_prefix="x/#")
    with pytest.raises(BadInput, match=r"mqtt\.protocol"):
        MqttOptions(host="h", device_id="a", protocol="4")  # type: ignore[arg-type]
    with pytest.raises(BadInput, match=r"mqtt\.ca_file"):
        MqttOptions(host="h", device_id="a", ca_file=tmp_path / "ca.crt")
    assert MqttOptions(host="h", device_id="a").port == 1883
    assert MqttOptions(host="h", device_id="a", tls=True).port == 8883


# -- secrets --------------------------------------------------------------------------------------

PASSWORD = "s3cret-Zebra-42!"


def write_secrets(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_secrets_file_readable_by_others_is_refused_without_leaking(tmp_path):
    f = write_secrets(tmp_path / "mqtt.secrets", f'username = "pi"\npassword = "{PASSWORD}"\n', 0o644)
    with pytest.raises(BadInput) as info:
        load_secrets(f)
    assert str(f) in str(info.value) and "chmod 600" in str(info.value) and PASSWORD not in str(info.value)
    f.chmod(0o640)  # group-readable (root:spinal 0640) is fine
    s = load_secrets(f)
    assert s.password == PASSWORD and PASSWORD not in repr(s)


def test_secrets_file_errors_never_echo_content(tmp_path):
    f = write_secrets(tmp_path / "bad.secrets", f'username = "pi"\npassword = {PASSWORD}\n')
    with pytest.raises(BadInput) as info:
        load_secrets(f)
    assert "not valid TOML" in str(info.value) and PASSWORD not in str(info.value)
    f = write_secrets(tmp_path / "typo.secrets", f'usernam = "pi"\npassword = "{PASSWORD}"\n')
    with pytest.raises(BadInput, match="the key on line 1 is not one of the allowed keys") as info:
        load_secrets(f)
    assert PASSWORD not in str(info.value) and "'usernam'" not in str(info.value)
    assert "username, password, client_cert, client_key, client_key_password" in str(info.value)


def test_a_password_pasted_as_a_key_is_not_printed(tmp_path):
    """A password pasted on a line of its own (``s3cret = ""`` or a bare key) parses as an unknown key."""
    f = write_secrets(tmp_path / "pasted.secrets",
                      f'# credentials\nusername = "pi"\n\n"{PASSWORD}" = ""\npassword = "x"\n')
    with pytest.raises(BadInput) as info:
        load_secrets(f)
    msg = str(info.value)
    assert PASSWORD not in msg and "line 4" in msg and "\n" not in msg
    f = write_secrets(tmp_path / "table.secrets", 'username = "pi"\n[s3cretTable]\nx = "1"\n')
    with pytest.raises(BadInput, match="the table on line 2") as info:
        load_secrets(f)
    assert "s3cretTable" not in str(info.value)


def test_client_key_readable_by_others_is_refused(tmp_path, tls_material):
    key = tmp_path / "client.key"
    key.write_bytes(tls_material["client.key"].read_bytes())
    key.chmod(0o644)
    f = write_secrets(tmp_path / "m.secrets", f'client_cert = "{tls_material["client.crt"]}"\nclient_key = "{key}"\n')
    with pytest.raises(BadInput, match="client key"):
        load_secrets(f)


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate (EC keys, openssl)."""
    import subprocess

    d = tmp_path_factory.mktemp("tls")

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    # Extensions as Python 3.13's strict X.509 verification (VERIFY_X509_STRICT) wants them.
    ossl("req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=spinal-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nkeyUsage=critical,digitalSignature\n"
                               "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid,issuer\n")
    (d / "client.ext").write_text("keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                                  "authorityKeyIdentifier=keyid,issuer\n")
    ossl("req", *ec, "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    ossl("req", *ec, "-keyout", "client.key", "-passout", f"pass:{PASSWORD}", "-out", "client.csr",
         "-subj", "/CN=pi-tls")
    ossl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "client.crt", "-days", "2", "-extfile", "client.ext")
    (d / "client.key").chmod(0o600)
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.fixture
def tls_broker(tmp_path, tls_material):
    """Plain listener (for the test's subscriber) + TLS with passwords + TLS with client certificates."""
    import subprocess

    from tests.sinks.conftest import require_mosquitto
    from tests.sinks.mosquitto_broker import Mosquitto, free_port

    require_mosquitto()
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "pi-user", PASSWORD], check=True, capture_output=True)
    pw.chmod(0o600)
    m = tls_material
    tls_port, mtls_port = free_port(), free_port()
    listeners = (
        f"listener {tls_port} 127.0.0.1", "allow_anonymous false", f"password_file {pw}",
        f"cafile {m['ca.crt']}", f"certfile {m['server.crt']}", f"keyfile {m['server.key']}",
        f"listener {mtls_port} 127.0.0.1", "allow_anonymous false", "require_certificate true",
        "use_identity_as_username true",
        f"cafile {m['ca.crt']}", f"certfile {m['server.crt']}", f"keyfile {m['server.key']}",
    )
    b = Mosquitto(tmp_path / "tlsbroker", listeners=listeners, persistence=False).start()
    b.tls_port, b.mtls_port = tls_port, mtls_port  # type: ignore[attr-defined]
    yield b
    b.kill()


def test_tls_with_username_and_password(tls_broker, tls_material, make_sink, tmp_path):
    sub = Subscriber(tls_broker.port, (f"{BASE}/#",), persistent=False).start()
    try:
        secrets = write_secrets(tmp_path / "mqtt.secrets", f'username = "pi-user"\npassword = "{PASSWORD}"\n')
        sink = make_sink(tls_broker.tls_port, tls=True, ca_file=tls_material["ca.crt"], secrets_file=secrets)
        assert sink.publisher.direct is not None and not sink.publisher.direct.enabled  # OpenSSL: one thread
        for i in range(20):
            sink.write(reading(i))
        assert sink.wait_drained(15), sink.stats()
        assert wait_until(lambda: len(sub.snapshot(f"{BASE}/readings")) == 20, 5)
    finally:
        sub.stop()


def test_tls_with_client_certificate(tls_broker, tls_material, make_sink, tmp_path):
    sub = Subscriber(tls_broker.port, (f"{BASE}/#",), persistent=False).start()
    try:
        secrets = write_secrets(tmp_path / "mqtt.secrets",
                                f'client_cert = "{tls_material["client.crt"]}"\n'
                                f'client_key = "{tls_material["client.key"]}"\n'
                                f'client_key_password = "{PASSWORD}"\n')
        sink = make_sink(tls_broker.mtls_port, tls=True, ca_file=tls_material["ca.crt"], secrets_file=secrets)
        for i in range(20):
            sink.write(prediction(i))
        assert sink.wait_drained(15), sink.stats()
        assert wait_until(lambda: len(sub.snapshot(f"{BASE}/predictions")) == 20, 5)
    finally:
        sub.stop()


def test_wrong_password_keeps_spooling_and_never_logs_secrets(tls_broker, tls_material, make_sink, tmp_path,
                                                             caplog):
    caplog.set_level(logging.DEBUG)
    wrong = PASSWORD[::-1]
    secrets = write_secrets(tmp_path / "mqtt.secrets", f'username = "pi-user"\npassword = "{wrong}"\n')
    sink = make_sink(tls_broker.tls_port, tls=True, ca_file=tls_material["ca.crt"], secrets_file=secrets)
    for i in range(5):
        sink.write(reading(i))
    assert wait_until(lambda: "refused" in caplog.text, 10), caplog.text
    assert not sink.connected and sink.stats()["spool_depth"] == 5
    text = caplog.text + repr(sink.options) + json.dumps(sink.stats())
    assert wrong not in text and PASSWORD not in text


def test_bad_client_key_password_is_a_clear_error(tls_material, make_sink, tmp_path):
    secrets = write_secrets(tmp_path / "mqtt.secrets",
                            f'client_cert = "{tls_material["client.crt"]}"\n'
                            f'client_key = "{tls_material["client.key"]}"\nclient_key_password = "nope-nope"\n')
    with pytest.raises(BadInput, match="client certificate") as info:
        make_sink(1, tls=True, ca_file=tls_material["ca.crt"], secrets_file=secrets)
    assert "nope-nope" not in str(info.value)


def test_sink_spool_and_discovery_log_through_device_loggers_not_stderr(tmp_path, make_sink, caplog, capfd):
    """The daemon configures handlers on the ``device`` logger: every line of these modules must reach it
    (a named ``device.sinks.*`` logger that propagates), nothing may go to stderr directly."""
    from device.sinks.homeassistant import HomeAssistantOptions
    from tests.sinks.mosquitto_broker import free_port

    spool = tmp_path / "state" / "spool.db"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"not a database" * 100)  # the spool logs an ERROR and starts afresh
    caplog.set_level(logging.DEBUG, logger="device")
    sink = make_sink(free_port(), spool=SpoolOptions(spool), homeassistant=HomeAssistantOptions())  # nobody listens
    sink.write(reading(0))
    assert wait_until(lambda: any("cannot connect" in r.getMessage() for r in caplog.records), 10)
    sink.close()
    names = {r.name for r in caplog.records}
    assert {"device.sinks.spool", "device.sinks.mqtt"} <= names, names
    assert all(n.startswith("device.sinks.") for n in names), names
    for name in ("device.sinks.spool", "device.sinks.mqtt", "device.sinks.homeassistant", "device.sinks.mqtt.paho"):
        lg = logging.getLogger(name)
        assert lg.propagate and not lg.handlers, name
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_an_unreachable_broker_is_probed_often_a_refusing_one_backed_off(broker, make_sink):
    """Unreachable: attempts at most probe_interval_s apart (back within ~1 s of the broker's return, where
    the plain exponential backoff took 5.5 s after a 10 s outage). A live broker that says no (credentials):
    the backoff grows to reconnect_max_s, so it is not hammered with TLS handshakes and CONNECTs."""
    opts = MqttOptions(host="127.0.0.1", port=broker.port, device_id="d", reconnect_min_s=0.5, reconnect_max_s=30)
    assert opts.probe_max_s == 1.0
    assert MqttOptions(host="h", device_id="d", reconnect_min_s=0.1, reconnect_max_s=0.5).probe_max_s == 0.5
    with pytest.raises(BadInput, match="probe_interval_s"):
        MqttOptions(host="h", device_id="d", probe_interval_s=0)
    sink = make_sink(broker.port, reconnect_min_s=0.5, reconnect_max_s=30)
    calls: list[tuple[float, float]] = []

    class Client:
        def reconnect_delay_set(self, low: float, high: float) -> None:
            calls.append((low, high))

    class Refused:
        is_failure = True

    sink._on_connect(Client(), None, None, Refused(), None)
    assert calls == [(0.5, 30)]
    assert sink._client._reconnect_max_delay == 1.0  # as built: the short probe interval
