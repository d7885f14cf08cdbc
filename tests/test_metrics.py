"""device.metrics: the Prometheus text format 0.0.4 as prometheus-client wrote it, and /metrics served by
device.http (which no longer uses prometheus-client or http.server)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from device.http import HealthServer
from device.metrics import CONTENT_TYPE, Counter, Gauge, Histogram, ProcessCollector, Registry, format_value


def lines(registry: Registry) -> list[str]:
    return registry.render().decode().splitlines()


def test_numbers_are_written_as_go_writes_them():
    assert [format_value(v) for v in (1, 0.5, 1.7e9, 123456789, 1e-4, float("inf"), float("-inf"), float("nan"))] \
        == ["1.0", "0.5", "1.7e+09", "1.23456789e+08", "0.0001", "+Inf", "-Inf", "NaN"]


def test_a_counter_is_exposed_as_total_with_a_created_gauge_and_escaped_labels():
    r = Registry()
    c = Counter("spinal_samples", "Samples read\\per sensor\nsecond line", ["sensor"], registry=r)
    c.labels("imu").inc()
    c.labels(sensor='we"ird\\\n').inc(2)
    out = lines(r)
    assert out[:4] == [r"# HELP spinal_samples_total Samples read\\per sensor\nsecond line",
                       "# TYPE spinal_samples_total counter",
                       'spinal_samples_total{sensor="imu"} 1.0',
                       r'spinal_samples_total{sensor="we\"ird\\\n"} 2.0']
    assert out[5] == "# TYPE spinal_samples_created gauge"
    assert out[6].startswith('spinal_samples_created{sensor="imu"} 1.')
    assert r.get_sample_value("spinal_samples_total", {"sensor": "imu"}) == 1.0
    with pytest.raises(ValueError):
        c.labels("imu").inc(-1)


def test_a_metric_without_series_has_help_and_type_but_no_created_family():
    r = Registry()
    Counter("spinal_errors", "Errors", ["sink"], registry=r)
    assert lines(r) == ["# HELP spinal_errors_total Errors", "# TYPE spinal_errors_total counter"]


def test_histogram_buckets_are_cumulative_up_to_inf_with_le_among_sorted_labels():
    r = Registry()
    h = Histogram("lat_seconds", "Latency", ["sensor"], buckets=(0.001, 0.01), registry=r)
    for v in (0.0005, 0.001, 0.005, 2.0):
        h.labels("imu").observe(v)
    assert lines(r)[2:7] == ['lat_seconds_bucket{le="0.001",sensor="imu"} 2.0',
                             'lat_seconds_bucket{le="0.01",sensor="imu"} 3.0',
                             'lat_seconds_bucket{le="+Inf",sensor="imu"} 4.0',
                             'lat_seconds_count{sensor="imu"} 4.0',
                             'lat_seconds_sum{sensor="imu"} 2.0065']


def test_gauges_set_and_read_from_functions_and_names_are_unique_in_a_registry():
    r = Registry()
    g = Gauge("depth", "Spool depth", registry=r)
    g.set_function(lambda: 7)
    info = Gauge("model_info", "The model", ["model", "runtime"], registry=r)
    info.labels("a", "litert").set(1)
    info.clear()
    info.labels(model="b", runtime="onnxruntime").set(1)
    assert r.get_sample_value("depth") == 7.0
    assert 'model_info{model="b",runtime="onnxruntime"} 1.0' in lines(r)
    assert r.get_sample_value("model_info", {"model": "a", "runtime": "litert"}) is None
    with pytest.raises(ValueError, match="duplicated"):
        Counter("depth", "again", registry=r)  # depth_total is free, the family's name is not
    with pytest.raises(ValueError, match="duplicated"):
        Gauge("depth", "again", registry=r)


def test_process_metrics_and_python_info():
    r = Registry()
    ProcessCollector(registry=r)
    assert r.get_sample_value("process_resident_memory_bytes") > 1e6
    assert r.get_sample_value("process_open_fds") >= 3
    assert any(line.startswith("python_info{implementation=") for line in lines(r))


def test_metrics_healthz_and_errors_over_http():
    r = Registry()
    Counter("spinal_windows", "Windows", registry=r).inc(3)
    server = HealthServer("127.0.0.1", 0, lambda: {"status": "starting"}, r)
    server.start()
    host, port = server.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics?x=1", timeout=5) as resp:
            assert resp.headers["Content-Type"] == CONTENT_TYPE
            assert "spinal_windows_total 3.0" in resp.read().decode()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5)
        assert err.value.code == 503 and b'"starting"' in err.value.read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://{host}:{port}/nope", timeout=5)
        assert err.value.code == 404
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"garbage\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.0 400 ")
    finally:
        server.close()
