"""The daemon's Prometheus metrics (:mod:`device.metrics`; the exact recent-value windows behind /healthz:
``device.percentiles``)."""

from __future__ import annotations

from device.metrics import Counter, Gauge, Histogram, ProcessCollector, Registry

FINE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The daemon's Prometheus metrics, in a private registry (served by ``device.http``)."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes ..., python_info
        self._sensor_metrics()
        self._pipeline_metrics()
        self._sink_metrics()

    def _sensor_metrics(self) -> None:
        r = self.registry
        self.samples = Counter("spinal_samples", "Samples read, per sensor", ["sensor"], registry=r)
        self.read_errors = Counter("spinal_sensor_read_errors", "Failed sensor reads (after bus retries)",
                                   ["sensor"], registry=r)
        self.retries = Counter("spinal_sensor_retries", "Set-ups of a sensor after a failure (or at start)",
                               ["sensor"], registry=r)
        self.probes = Counter("spinal_sensor_probes", "Cheap probes (address acknowledge) of a failed sensor",
                              ["sensor"], registry=r)
        self.bus_retries = Counter("spinal_bus_retries", "I2C transactions retried after a transient error",
                                   ["sensor"], registry=r)
        self.missed_ticks = Counter("spinal_sampler_missed_ticks", "Sampling ticks skipped because the "
                                    "sampler was late", ["sensor"], registry=r)
        self.sensor_up = Gauge("spinal_sensor_up", "1 while the sensor answers, 0 while degraded", ["sensor"],
                               registry=r)
        self.sensor_stale = Gauge("spinal_sensor_stale", "1 while the sensor's data is frozen (the same values "
                                  "stale_after reads in a row), else 0", ["sensor"], registry=r)
        self.sample_lateness = Histogram("spinal_sample_lateness_seconds", "Read time after the scheduled tick",
                                         ["sensor"], buckets=FINE_BUCKETS, registry=r)

    def _pipeline_metrics(self) -> None:
        r = self.registry
        self.windows = Counter("spinal_windows", "Complete windows handed to the model", registry=r)
        self.windows_dropped = Counter("spinal_windows_dropped", "Windows not run: reason=behind (inference "
                                       "queue full), gap (sensor gap), stale (model swapped)", ["reason"],
                                       registry=r)
        self.inferences = Counter("spinal_inferences", "Model invocations", registry=r)
        self.inference_errors = Counter("spinal_inference_errors", "Model invocations that raised", registry=r)
        self.inference_latency = Histogram("spinal_inference_seconds", "Normalize + model run + post-process",
                                           buckets=FINE_BUCKETS, registry=r)
        self.window_to_sink = Histogram("spinal_window_to_sink_seconds", "Window complete to every sink written",
                                        buckets=FINE_BUCKETS, registry=r)
        self.model_info = Gauge("spinal_model_info", "The active model (value 1)",
                                ["model", "runtime", "version", "artifact", "precision", "delegate"], registry=r)
        self.reloads = Counter("spinal_reloads", "Model reloads by result", ["result"], registry=r)
        self.last_inference = Gauge("spinal_last_inference_timestamp_seconds", "Unix time of the last inference",
                                    registry=r)

    def _sink_metrics(self) -> None:
        r = self.registry
        self.records = Counter("spinal_records", "Records written, per sink", ["sink", "kind"], registry=r)
        self.sink_errors = Counter("spinal_sink_errors", "Sink writes that raised", ["sink"], registry=r)
        self.sink_up = Gauge("spinal_sink_up", "1 while the sink's latest write succeeded, 0 while they fail",
                             ["sink"], registry=r)
        self.records_dropped = Counter("spinal_records_dropped", "Records dropped: output queue full", registry=r)
        self.records_unnumbered = Counter("spinal_records_unnumbered", "Records dropped because no sequence "
                                          "number could be reserved (state_dir/seq.json could not be saved)",
                                          registry=r)
