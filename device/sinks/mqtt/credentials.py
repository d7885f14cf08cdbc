"""The credentials file (``secrets_file``) and the TLS context built from it.

Neither passwords nor the file's content ever appear in a log line or an error message.
"""

from __future__ import annotations

import os
import ssl
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from device.errors import BadInput
from device.sinks.mqtt.const import SECRET_KEYS
from device.sinks.mqtt.options import MqttOptions


@dataclass(frozen=True)
class MqttSecrets:
    """What :func:`load_secrets` read. The passwords never appear in a repr."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_cert: Path | None = None
    client_key: Path | None = None
    client_key_password: str | None = field(default=None, repr=False)


def _check_private(path: Path, what: str) -> os.stat_result:
    try:
        st = path.stat()
    except OSError as exc:
        raise BadInput(f"cannot read the {what} {path}: {exc.strerror}; check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"the {what} {path} is not a regular file")
    if st.st_mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise BadInput(f"the {what} {path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):o}); "
                       f"run: chmod 600 {path}")
    return st


def _unknown_key_line(path: Path, n: int) -> str:
    """Where the first key that is not allowed is ("line 3"), without saying what it is."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("["):
            return f"the table on line {number}"  # no tables are allowed at all
        key = text.split("=", 1)[0].strip().strip("\"'")
        if "=" in text and key not in SECRET_KEYS:
            return f"the key on line {number}"
    return f"{n} key(s)"


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # The parser's message names a position, never the content; keep only that part.
        where = str(exc).rsplit("(", 1)[-1].rstrip(")") if "(" in str(exc) else "unknown position"
        raise BadInput(f"MQTT secrets file {path} is not valid TOML ({where}); fix its syntax") from None
    except OSError as exc:
        raise BadInput(f"cannot read the MQTT secrets file {path}: {exc.strerror}") from None


def _check_keys(path: Path, data: dict[str, object]) -> dict[str, str]:
    if set(data) - set(SECRET_KEYS):
        # Never echo the key: a password pasted on a line of its own is a key to the TOML parser.
        where = _unknown_key_line(path, len(set(data) - set(SECRET_KEYS)))
        raise BadInput(f"MQTT secrets file {path}: {where} is not one of the allowed keys "
                       f"({', '.join(SECRET_KEYS)}); fix or remove it")
    checked: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str) or not value:
            raise BadInput(f"MQTT secrets file {path}: key {key!r} must be a non-empty string")
        checked[key] = value
    if "password" in checked and "username" not in checked:
        raise BadInput(f"MQTT secrets file {path}: 'password' given without 'username'")
    if ("client_cert" in checked) != ("client_key" in checked):
        raise BadInput(f"MQTT secrets file {path}: 'client_cert' and 'client_key' go together")
    return checked


def load_secrets(path: Path) -> MqttSecrets:
    """Read the credentials file; refuse it when other users can read or anyone else can write it."""
    path = Path(path)
    _check_private(path, "MQTT secrets file")
    data = _check_keys(path, _read_toml(path))
    base = path.parent
    cert = (base / data["client_cert"]) if "client_cert" in data else None
    key = (base / data["client_key"]) if "client_key" in data else None
    if key is not None:
        _check_private(key, "MQTT client key")
    return MqttSecrets(
        username=data.get("username"), password=data.get("password"),
        client_cert=cert, client_key=key, client_key_password=data.get("client_key_password"),
    )


def make_tls_context(o: MqttOptions, s: MqttSecrets) -> ssl.SSLContext:
    """The TLS context for the broker: ``ca_file`` (or the system store) and the client certificate, if any."""
    try:
        ctx = ssl.create_default_context(cafile=str(o.ca_file) if o.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(f"cannot load mqtt.ca_file {o.ca_file}: {getattr(exc, 'strerror', None) or exc}; "
                       "give a PEM file with the broker's CA") from None
    if s.client_cert is not None and s.client_key is not None:
        try:
            ctx.load_cert_chain(str(s.client_cert), str(s.client_key), password=s.client_key_password)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
            raise BadInput(f"cannot load the MQTT client certificate {s.client_cert} with key "
                           f"{s.client_key} ({reason}); check client_cert, client_key and "
                           f"client_key_password in {o.secrets_file}") from None
    return ctx


def check_options(o: MqttOptions) -> None:
    """What the sink reads at start, without connecting: the secrets file and the TLS files (for --check)."""
    secrets = load_secrets(o.secrets_file) if o.secrets_file else MqttSecrets()
    if o.tls:
        make_tls_context(o, secrets)
