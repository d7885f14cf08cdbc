"""Where a key is in a TOML file (``tomllib`` does not report lines), and errors that say so:
``FILE:LINE: KEY: message``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from device.config.models import Config, ConfigError
from device.schema import KeyPath, Reader, SchemaError, path_text

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*(\]\]?)\s*(#.*)?$")
_SIMPLE_KEY = r'(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')'
_KEY_RE = re.compile(rf"^\s*({_SIMPLE_KEY}(?:\s*\.\s*{_SIMPLE_KEY})*)\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', dotted)
    return tuple(a or b or c for a, b, c in parts)


class KeyLocator:
    """Maps key paths such as ``("sensors", 1, "address")`` to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        counts: dict[tuple[Any, ...], int] = {}
        current: tuple[Any, ...] = ()
        in_multiline = False
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.count('"""') % 2 or line.count("'''") % 2:
                in_multiline = not in_multiline
                if not in_multiline:
                    continue
            if in_multiline:
                continue
            m = _HEADER_RE.match(line)
            if m and m.group(1) in ("[", "[["):
                keys = self._resolve(_split_key(m.group(2)), counts)
                if m.group(1) == "[[":
                    idx = counts.get(keys, 0)
                    counts[keys] = idx + 1
                    keys = (*keys, idx)
                current = keys
                self.lines.setdefault(current, lineno)
                continue
            m = _KEY_RE.match(line)
            if m:
                self.lines.setdefault((*current, *_split_key(m.group(1))), lineno)

    @staticmethod
    def _resolve(keys: tuple[str, ...], counts: dict[tuple[Any, ...], int]) -> tuple[Any, ...]:
        # [sensors.options] after [[sensors]] belongs to the last sensors entry.
        out: tuple[Any, ...] = ()
        for i, key in enumerate(keys):
            out = (*out, key)
            if i < len(keys) - 1 and out in counts:
                out = (*out, counts[out] - 1)
        return out

    def line(self, path: tuple[Any, ...]) -> int | None:
        """The line of ``path`` or, failing that, of its nearest enclosing table."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


class ConfigFile:
    """One config file being read: its :class:`~device.schema.Reader` (paths relative to the file) and its
    errors, ``FILE:LINE: KEY: message``."""

    def __init__(self, source: Path, text: str) -> None:
        self.source = source
        self.locator = KeyLocator(text)
        self.reader = Reader(resolve_path=self.resolve_path)

    def where(self, path: KeyPath) -> str:
        """``FILE:LINE`` of ``path`` (``FILE`` where no line holds it)."""
        line = self.locator.line(path)
        return f"{self.source}:{line}" if line else str(self.source)

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {path_text(path)}: {message}", path)

    def from_schema(self, exc: SchemaError) -> ConfigError:
        """The error at the line of its key (a custom message, such as the simulator's, kept as it is)."""
        if exc.custom:
            return ConfigError(f"{self.where(exc.path)}: {exc}", exc.path)
        return self.error(exc.path, exc.detail)

    def resolve_path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.source.absolute().parent / p)


def locate(config: Config, *path: Any) -> str:
    """``FILE:LINE: KEY`` for a key of a loaded config (``FILE: KEY`` if the file cannot be read again)."""
    try:
        line = KeyLocator(config.source.read_text(encoding="utf-8")).line(tuple(path))
    except (OSError, UnicodeDecodeError):
        line = None
    where = f"{config.source}:{line}" if line else str(config.source)
    return f"{where}: {path_text(tuple(path))}"
