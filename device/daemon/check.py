"""``spinal run --check``: validate what can be validated without running."""

from __future__ import annotations

from device.config import Config, locate
from device.daemon.model import load_candidate
from device.daemon.sampler import check_sim, describe_sensor, open_bus_for, sensor_channels
from device.errors import BadInput


def check_config(config: Config, sim: bool = False) -> list[str]:
    """Validate drivers and their options, the bundle (if it exists: integrity, binding, sample rate,
    post-processing, load and canary), the sinks' options.

    Returns human-readable lines; raises the first problem found.
    """
    lines = [f"{config.source}: config ok (device {config.device_id!r}, {len(config.sensors)} sensor(s), "
             f"{len(config.sinks)} sink(s))"]
    channels = {}
    for i, s in enumerate(config.sensors):
        channels[s.id] = sensor_channels(s, i)
        where = f"bus {s.bus}" + (" (simulated)" if sim else "")
        addr = f"0x{s.address:02x}" if s.address is not None else "default address"
        lines.append(f"sensor {s.id}: {s.driver} on {where} at {addr}, {s.rate_hz:g} Hz, channels "
                     f"{', '.join(channels[s.id])}")
    for sc in config.sinks:
        if sc.type == "mqtt":  # what the sink reads at start: the secrets file, the TLS files
            from device.sinks.mqtt import check_options

            check_options(sc.options.mqtt)
            mq = sc.options.mqtt
            lines.append(f"sink {sc.name}: mqtt {mq.host}:{mq.port}{' (TLS)' if mq.tls else ''}, spool "
                         f"{sc.options.spool.path}{', secrets ' + str(mq.secrets_file) if mq.secrets_file else ''}")
    if sim:
        for i in range(len(config.sensors)):
            check_sim(config, i)
    if not config.model.bundle.exists():
        raise BadInput(f"{locate(config, 'model', 'bundle')}: {config.model.bundle} does not exist; install a "
                       "bundle there (made by spinal convert) before starting the service")
    active = load_candidate(config, channels, 1)
    try:
        lines.append(f"model {active.name}: {active.model.info.describe()}")
        lines.append(f"input {active.plan.spec.name!r}: window {active.plan.window}, hop {active.plan.hop}, "
                     f"channels {', '.join(str(c) for c in active.sources)}")
        if active.canary:
            lines.append(f"canary: {active.canary.vectors} golden vectors ok (max |err| "
                         f"{active.canary.max_abs_err:.3g}), median {active.canary.median_ms:.3f} ms "
                         f"<= budget {config.model.latency_budget_ms:g} ms")
        lines.append(f"delegate: {active.delegate}")
    finally:
        active.close()
    return lines


def probe_sensors(config: Config, sim: bool = False) -> list[str]:
    """``--check --probe``: touch each sensor's bus read-only (an address acknowledge, then the chip's id
    registers: nothing is written to a chip's configuration) and say what answers where the config expects
    each driver. Raises :class:`BadInput` naming file, line and key when nothing or another chip answers."""
    from device.sensors.bus import as_bus
    from device.sensors.registry import scan

    lines = []
    for i, s in enumerate(config.sensors):
        address = describe_sensor(s, i).address
        bus = as_bus(open_bus_for(s, sim, config.source.absolute().parent))
        try:
            found = scan(bus, address, address)
        finally:
            bus.close()
        where = f"0x{address:02x} on {bus.label}"
        if not found:
            raise BadInput(f"{locate(config, 'sensors', i, 'address')}: nothing answers at {where} (expected a "
                           f"{s.driver}); check the wiring and the address (`spinal sensors scan --bus {s.bus}`)")
        chip, detail = found[0].chip, found[0].detail
        if chip is not None and chip != s.driver:
            raise BadInput(f"{locate(config, 'sensors', i, 'driver')}: a {chip} answers at {where} ({detail}), not "
                           f"a {s.driver}; set driver = \"{chip}\" or fix the address")
        if chip is None and detail and "not probed" not in detail:
            raise BadInput(f"{locate(config, 'sensors', i, 'driver')}: the chip at {where} is not a {s.driver} "
                           f"({detail})")
        lines.append(f"probe {s.id}: {s.driver} answers at {where}" + (f" ({detail})" if detail else ""))
    return lines
