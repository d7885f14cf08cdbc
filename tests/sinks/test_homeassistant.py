"""Home Assistant MQTT discovery through a real Mosquitto."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as paho
import pytest

from device.sinks.base import Record
from device.sinks.homeassistant import (
    HaEntity,
    HomeAssistantDiscovery,
    HomeAssistantOptions,
    entities_from_record,
    guess_entity,
)
from device.sinks.mqtt import MqttOptions
from tests.sinks.conftest import DEVICE, prediction, reading, wait_until
from tests.sinks.mosquitto_broker import Subscriber

BASE = f"spinal/{DEVICE}"


def configs(sub: Subscriber) -> dict[str, dict]:
    """Latest discovery config per config topic."""
    return {m.topic: json.loads(m.payload) for m in sub.snapshot("homeassistant/") if m.topic.endswith("/config")}


def publish(port: int, topic: str, payload: str, retain: bool = False) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_readings_and_predictions_arrive_with_discovery_configs(broker, subscriber, make_sink):
    ha = HomeAssistantOptions(device_name="Kitchen Pi", model="tiny-activity", entities=(
        HaEntity("prediction", "activity", "label", name="Activity", icon="mdi:run"),))
    sink = make_sink(broker.port, homeassistant=ha)
    for i in range(10):
        sink.write(reading(i))
        sink.write(prediction(i, scores={"idle": 0.1, "walk": 0.7, "run": 0.2}, label="walk", score=0.7))
    assert sink.wait_drained(10)
    want = {
        "homeassistant/sensor/spinal_pi-test_reading_bme280_temperature_c/config",
        "homeassistant/sensor/spinal_pi-test_reading_bme280_humidity_pct/config",
        "homeassistant/sensor/spinal_pi-test_reading_bme280_pressure_hpa/config",
        "homeassistant/sensor/spinal_pi-test_prediction_model_label/config",
        "homeassistant/sensor/spinal_pi-test_prediction_model_score/config",
        "homeassistant/sensor/spinal_pi-test_prediction_model_scores_walk/config",
    }
    assert wait_until(lambda: want <= set(configs(subscriber)), 10), sorted(configs(subscriber))
    cfgs = configs(subscriber)
    assert len({c["unique_id"] for c in cfgs.values()}) == len(cfgs)
    late = Subscriber(broker.port, ("homeassistant/#",), persistent=False).start()  # configs are retained
    try:
        assert wait_until(lambda: want <= {m.topic for m in late.snapshot() if m.retain}, 5)
    finally:
        late.stop()
    temp = cfgs["homeassistant/sensor/spinal_pi-test_reading_bme280_temperature_c/config"]
    assert temp["device_class"] == "temperature" and temp["unit_of_measurement"] == "°C"
    assert temp["state_class"] == "measurement"
    assert temp["state_topic"] == f"{BASE}/readings/bme280"
    assert temp["availability_topic"] == f"{BASE}/status/availability"
    assert temp["device"]["identifiers"] == ["spinal_pi-test"] and temp["device"]["name"] == "Kitchen Pi"
    assert temp["device"]["model"] == "tiny-activity" and temp["origin"]["name"] == "spinal"
    hum = cfgs["homeassistant/sensor/spinal_pi-test_reading_bme280_humidity_pct/config"]
    assert (hum["device_class"], hum["unit_of_measurement"]) == ("humidity", "%")
    pres = cfgs["homeassistant/sensor/spinal_pi-test_reading_bme280_pressure_hpa/config"]
    assert pres["unit_of_measurement"] == "hPa"
    label = cfgs["homeassistant/sensor/spinal_pi-test_prediction_model_label/config"]
    assert label["state_topic"] == f"{BASE}/predictions/activity"
    assert label["name"] == "Activity" and label["icon"] == "mdi:run" and "state_class" not in label

    # The templates really extract the values from the payloads the sink publishes.
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    topic_payload = {m.topic: m.json() for m in subscriber.snapshot(BASE) if m.payload.startswith(b"{")}
    for cfg in cfgs.values():
        value = env.from_string(cfg["value_template"]).render(value_json=topic_payload[cfg["state_topic"]])
        assert value not in ("", "None"), cfg["unique_id"]
    walk = cfgs["homeassistant/sensor/spinal_pi-test_prediction_model_scores_walk/config"]
    assert env.from_string(walk["value_template"]).render(
        value_json=topic_payload[walk["state_topic"]]) == "0.7"
    assert sink.homeassistant.stats()["entities"] == 6 + 2  # + scores.idle, scores.run


def test_reannounced_when_home_assistant_comes_online(broker, subscriber, make_sink):
    sink = make_sink(broker.port, homeassistant=HomeAssistantOptions())
    sink.write(reading(0))
    assert sink.wait_drained(10)
    topic = "homeassistant/sensor/spinal_pi-test_reading_bme280_temperature_c/config"
    assert wait_until(lambda: len(subscriber.snapshot(topic)) >= 1, 5)
    before = len(subscriber.snapshot(topic))
    publish(broker.port, "homeassistant/status", "online")
    assert wait_until(lambda: len(subscriber.snapshot(topic)) > before, 5)
    assert sink.homeassistant.birth_messages == 1
    publish(broker.port, "homeassistant/status", "offline")  # nothing to do
    assert sink.homeassistant.birth_messages == 1


def test_retained_commands_are_ignored(broker, subscriber, make_sink):
    publish(broker.port, "homeassistant/status", "online", retain=True)  # stale, from long ago
    sink = make_sink(broker.port, homeassistant=HomeAssistantOptions())
    assert wait_until(lambda: sink.homeassistant.ignored_retained == 1, 5)
    assert sink.homeassistant.birth_messages == 0
    assert sink.homeassistant.announcements == 1  # the one on connect, not a second one


def test_guessing_device_classes_and_units():
    assert guess_entity("reading", "s", "temperature_c", 1.0).device_class == "temperature"
    assert guess_entity("reading", "s", "accel_x_ms2", 1.0).unit == "m/s²"
    assert guess_entity("reading", "s", "gyro_z_dps", 1).unit == "°/s"
    assert guess_entity("reading", "s", "co2_ppm", 400).device_class == "carbon_dioxide"
    assert guess_entity("reading", "s", "ch0_v", 1.2).device_class == "voltage"
    assert guess_entity("prediction", "m", "anomaly", True).component == "binary_sensor"
    assert guess_entity("prediction", "m", "label", "walk").state_class is None
    assert guess_entity("prediction", "m", "logits", [1, 2]) is None
    rec = prediction(1, label="x", scores={"a": 0.5}, raw=[1, 2])
    assert [e.key for e in entities_from_record(rec)] == ["label", "scores.a"]
    # The daemon's own shapes: readings {"values": {...}, "slot": n}; predictions with bookkeeping.
    ignore = HomeAssistantOptions().ignore_keys
    rec = reading(1, values={"temperature_c": 21.0, "humidity_pct": 40.0}, slot=7)
    assert [e.key for e in entities_from_record(rec, ignore)] == ["values.temperature_c", "values.humidity_pct"]
    rec = prediction(1, label="walk", score=0.9, values={"walk": 0.9, "run": 0.1}, model="m", generation=2,
                     window={"first_seq": 1, "last_seq": 9}, inference_ms=0.2)
    assert [e.key for e in entities_from_record(rec, ignore)] == ["label", "score", "values.walk", "values.run",
                                                                  "inference_ms"]


class Recorder:
    """Stands in for the MQTT sink's direct publish: remembers what would be retained on the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []
        self.retained: dict[str, dict] = {}

    def __call__(self, topic: str, payload: bytes, retain: bool) -> bool:
        self.sent.append((topic, payload, retain))
        if retain:
            if payload:
                self.retained[topic] = json.loads(payload)
            else:
                self.retained.pop(topic, None)
        return True


def discovery(**ha) -> tuple[HomeAssistantDiscovery, Recorder]:
    rec = Recorder()
    mqtt = MqttOptions(host="h", device_id=DEVICE, homeassistant=HomeAssistantOptions(**ha))
    return HomeAssistantDiscovery(mqtt, rec), rec


def render(template: str, data: dict) -> str:
    jinja2 = pytest.importorskip("jinja2")
    return jinja2.Environment().from_string(template).render(value_json={"data": data})


def daemon_reading(source: str, values: dict, **extra) -> Record:
    return Record("reading", 1, 0.0, 0, DEVICE, source, {"values": values, "slot": 3, **extra})


def daemon_prediction(model: str, **values: float) -> Record:
    best = max(values, key=values.get)
    return Record("prediction", 1, 0.0, 0, DEVICE, model, {
        "label": best, "score": values[best], "values": values, "model": model, "generation": 1,
        "window": {"first_seq": 0, "last_seq": 9}, "inference_ms": 0.2})


def test_pressure_sent_in_pa_is_shown_in_hpa_and_adc_channels_are_volts():
    """The daemon's readings are SI: pressure in Pa (101326). Discovery said hPa and passed Pa (100x)."""
    d, rec = discovery()
    data = {"values": {"temperature": 21.5, "pressure": 101326.0, "humidity": 40.0}, "slot": 3}
    d.observe(daemon_reading("bme280", data["values"]))
    d.observe(daemon_reading("adc", {"ain0": 1.25, "ain0_ain1": -0.125}))
    cfg = {c["unique_id"]: c for c in rec.retained.values()}
    pres = cfg["spinal_pi-test_reading_bme280_values_pressure"]
    assert pres["unit_of_measurement"] == "hPa" and pres["device_class"] == "atmospheric_pressure"
    assert float(render(pres["value_template"], data)) == pytest.approx(1013.26)
    temp = cfg["spinal_pi-test_reading_bme280_values_temperature"]
    assert temp["unit_of_measurement"] == "°C" and float(render(temp["value_template"], data)) == 21.5
    for ch, v in (("ain0", 1.25), ("ain0_ain1", -0.125)):
        e = cfg[f"spinal_pi-test_reading_adc_values_{ch}"]
        assert (e["unit_of_measurement"], e["device_class"]) == ("V", "voltage")
        assert float(render(e["value_template"], {"values": {"ain0": 1.25, "ain0_ain1": -0.125}})) == v


def test_units_in_the_record_decide():
    d, rec = discovery()
    values = {"pressure": 99000.0, "pressure_sea": 1013.0, "x": 2.0}
    d.observe(daemon_reading("s", values, units={"pressure": "Pa", "pressure_sea": "hPa", "x": "V"}))
    cfg = {c["unique_id"]: c for c in rec.retained.values()}
    assert "spinal_pi-test_reading_s_units_pressure" not in cfg  # "units" is bookkeeping
    p = cfg["spinal_pi-test_reading_s_values_pressure"]
    assert p["unit_of_measurement"] == "hPa" and float(render(p["value_template"], {"values": values})) == 990.0
    sea = cfg["spinal_pi-test_reading_s_values_pressure_sea"]
    assert sea["unit_of_measurement"] == "hPa" and float(render(sea["value_template"], {"values": values})) == 1013.0
    assert cfg["spinal_pi-test_reading_s_values_x"]["device_class"] == "voltage"


def test_a_bundle_with_another_name_keeps_the_entities_and_removes_what_went_away():
    """Reloading to a bundle named differently made new entities and left the old ones retained."""
    d, rec = discovery()
    d.observe(daemon_prediction("tiny-activity", walk=0.7, run=0.2, idle=0.1))
    before = dict(rec.retained)
    assert before and not any("tiny" in t for t in before)
    assert all(c["state_topic"] == f"{BASE}/predictions/tiny-activity" for c in before.values())
    d.observe(daemon_prediction("tiny-activity-v2", walk=0.6, idle=0.3, sit=0.1))  # 'run' went, 'sit' came
    after = rec.retained
    gone = "homeassistant/sensor/spinal_pi-test_prediction_model_values_run/config"
    assert gone in before and gone not in after and (gone, b"", True) in rec.sent
    sit = "homeassistant/sensor/spinal_pi-test_prediction_model_values_sit/config"
    assert set(after) == set(before) - {gone} | {sit}
    assert all(c["state_topic"] == f"{BASE}/predictions/tiny-activity-v2" for c in after.values())
    assert {c["unique_id"] for c in after.values()} >= {before[t]["unique_id"] for t in before if t != gone}
    d.observe(daemon_prediction("tiny-activity-v2", walk=0.5, idle=0.4, sit=0.1))  # same model: nothing new
    n = len(rec.sent)
    d.observe(daemon_prediction("tiny-activity-v2", walk=0.5, idle=0.4, sit=0.1))
    assert len(rec.sent) == n


def test_stale_retained_configs_of_this_device_are_removed_after_connecting(broker, make_sink):
    """Configs left retained by an older run (named after the old bundle, a sensor since removed) go;
    other devices' configs and the ones announced again stay."""
    old = "homeassistant/sensor/spinal_pi-test_prediction_tiny-activity_label/config"
    other = "homeassistant/sensor/spinal_other-pi_reading_bme280_temperature_c/config"
    current = "homeassistant/sensor/spinal_pi-test_reading_bme280_temperature_c/config"
    for topic in (old, other, current):
        publish(broker.port, topic, json.dumps({"unique_id": topic.split("/")[2]}), retain=True)
    sink = make_sink(broker.port, homeassistant=HomeAssistantOptions(stale_after_s=1.0))
    sink.write(reading(0))
    assert wait_until(lambda: sink.homeassistant.configs_removed == 1, 10), sink.homeassistant.stats()
    late = Subscriber(broker.port, ("homeassistant/#",), persistent=False).start()
    try:
        assert wait_until(lambda: current in {m.topic for m in late.snapshot() if m.retain}, 5)
        time.sleep(0.3)
        retained = {m.topic for m in late.snapshot() if m.retain and m.payload}
    finally:
        late.stop()
    assert old not in retained and other in retained and current in retained
