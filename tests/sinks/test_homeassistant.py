"""Home Assistant MQTT discovery through a real Mosquitto."""

from __future__ import annotations

import json

import paho.mqtt.client as paho
import pytest

from device.sinks.homeassistant import HaEntity, HomeAssistantOptions, entities_from_record, guess_entity
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
        "homeassistant/sensor/spinal_pi-test_prediction_activity_label/config",
        "homeassistant/sensor/spinal_pi-test_prediction_activity_score/config",
        "homeassistant/sensor/spinal_pi-test_prediction_activity_scores_walk/config",
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
    label = cfgs["homeassistant/sensor/spinal_pi-test_prediction_activity_label/config"]
    assert label["name"] == "Activity" and label["icon"] == "mdi:run" and "state_class" not in label

    # The templates really extract the values from the payloads the sink publishes.
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    topic_payload = {m.topic: m.json() for m in subscriber.snapshot(BASE) if m.payload.startswith(b"{")}
    for cfg in cfgs.values():
        value = env.from_string(cfg["value_template"]).render(value_json=topic_payload[cfg["state_topic"]])
        assert value not in ("", "None"), cfg["unique_id"]
    walk = cfgs["homeassistant/sensor/spinal_pi-test_prediction_activity_scores_walk/config"]
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
