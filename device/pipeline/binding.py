"""Channel binding: which sensor channel feeds each model input channel, and which model tensors the
sensors feed and the task reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from device.errors import BadInput
from device.manifest import Manifest, TensorSpec


@dataclass(frozen=True)
class ChannelSource:
    """Where one model input channel comes from: sensor ``sensor``'s channel ``channel``."""

    sensor: str
    channel: str

    def __str__(self) -> str:
        return f"{self.sensor}.{self.channel}"


def parse_channel_ref(ref: str) -> ChannelSource:
    """``"imu.accel_x"`` → ``ChannelSource("imu", "accel_x")`` (the sensor id is before the first dot)."""
    sensor, dot, channel = ref.partition(".")
    if not dot or not sensor or not channel:
        raise BadInput(f"{ref!r} is not a channel reference; expected SENSOR_ID.CHANNEL such as imu.accel_x")
    return ChannelSource(sensor, channel)


def bind_channels(
    model_channels: Sequence[str],
    sensor_channels: dict[str, Sequence[str]],
    overrides: dict[str, str] | None = None,
    where: str = "binding",
) -> tuple[ChannelSource, ...]:
    """Map every model input channel to a sensor channel.

    By default a model channel named ``imu.accel_x`` reads sensor ``imu``'s channel ``accel_x``;
    ``overrides`` maps a model channel name to another ``SENSOR.CHANNEL``. ``sensor_channels``
    lists each configured sensor's channels. Raises :class:`BadInput` naming the channel.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(model_channels))
    if unknown:
        raise BadInput(f"{where}.{unknown[0]}: the model has no input channel {unknown[0]!r} "
                       f"(its channels: {', '.join(model_channels)})")
    out = []
    for name in model_channels:
        ref = overrides.get(name, name)
        key = f"{where}.{name}" if name in overrides else f"model channel {name!r}"
        if "." not in ref and name not in overrides:
            # A bare channel name (accel_x): the one sensor that has such a channel.
            owners = [sid for sid, chans in sensor_channels.items() if ref in chans]
            if len(owners) == 1:
                out.append(ChannelSource(owners[0], ref))
                continue
            if len(owners) > 1:
                raise BadInput(f"{key}: sensors {', '.join(owners)} all have a channel {ref!r}; say which in "
                               f'[binding], e.g. "{name}" = "{owners[0]}.{ref}"')
            raise BadInput(f"{key}: no sensor has a channel {ref!r}; bind it in [binding], e.g. "
                           f'"{name}" = "SENSOR_ID.CHANNEL"')
        try:
            src = parse_channel_ref(ref)
        except BadInput:
            raise BadInput(f"{key}: {ref!r} is not SENSOR_ID.CHANNEL; bind it in [binding], "
                           f'e.g. "{name}" = "imu.accel_x"') from None
        if src.sensor not in sensor_channels:
            raise BadInput(f"{key}: no sensor with id {src.sensor!r} (sensors: "
                           f"{', '.join(sensor_channels) or 'none'}); add it or bind the channel in [binding]")
        if src.channel not in sensor_channels[src.sensor]:
            raise BadInput(f"{key}: sensor {src.sensor!r} has no channel {src.channel!r} (it has: "
                           f"{', '.join(sensor_channels[src.sensor])})")
        out.append(src)
    return tuple(out)



def pick_input(manifest: Manifest, name: str | None) -> TensorSpec:
    """The model input the sensors feed: ``name`` or the only input."""
    if name is None:
        if len(manifest.inputs) != 1:
            names = ", ".join(i.name for i in manifest.inputs)
            raise BadInput(f"model.input: the model has {len(manifest.inputs)} inputs ({names}); say which one "
                           "the sensors feed")
        return manifest.inputs[0]
    for spec in manifest.inputs:
        if spec.name == name:
            return spec
    raise BadInput(f"model.input: the model has no input {name!r} (inputs: "
                   f"{', '.join(i.name for i in manifest.inputs)})")


def task_output(manifest: Manifest) -> TensorSpec:
    """The output the manifest's task describes."""
    for spec in manifest.outputs:
        if spec.name == manifest.task.output:
            return spec
    raise BadInput(f"manifest task.output {manifest.task.output!r} names no output")
