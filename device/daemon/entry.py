"""``spinal run``'s serving process: the CLI parses and checks the options, then replaces itself with this entry
(:func:`exec_daemon`: the same PID, so systemd's ``Type=notify``, its watchdog and signals are unchanged), so that
the daemon never holds the CLI framework (typer, click, rich: 2-3 MiB of a ~55 MiB process) in memory.

Errors are reported as every ``spinal`` command reports them: ``error: <one line>`` on stderr and the error's
exit code (:func:`device.errors.report_line`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from device.children import child_env
from device.errors import report_line

# What the new interpreter runs: this module's main() on the JSON request.
CODE = "import sys; from device.daemon.entry import main; main(sys.argv[1])"


def serve(config: Path, duration_s: float | None = None, sim: bool = False) -> int:
    """Load ``config``, run the daemon until it stops; the exit code (raises the project's errors)."""
    from device.config import load_config
    from device.daemon.logs import setup_logging
    from device.daemon.service import Daemon, RunOptions

    cfg = load_config(config, sim=sim)
    setup_logging(cfg.daemon.log_level)
    daemon = Daemon(cfg, RunOptions(duration_s=duration_s, sim=sim))
    daemon.install_signal_handlers()
    return daemon.run()


def command(config: Path, duration_s: float | None, sim: bool) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run :func:`serve` on these options in a fresh interpreter (this
    package first on its path, as the project's other child interpreters get it)."""
    request = json.dumps({"config": str(config), "duration_s": duration_s, "sim": sim})
    env = child_env()
    # the command as the user typed it, after the request (main() ignores it): `ps` and `pgrep -f "spinal run"`
    # still find the daemon
    return [sys.executable, *optimize_flags(), "-c", CODE, request, "spinal", *sys.argv[1:]], env


def optimize_flags(markers: tuple[str, ...] | None = None) -> list[str]:
    """``["-OO"]`` when the serving interpreter can load optimized bytecode without compiling it on every start:
    docstrings and asserts stripped from every module, numpy's included, are 2.7 MiB of a 54 MiB daemon (the
    project's asserts only narrow types). Used when each marker module's ``opt-2`` cache exists, or can be
    written (the first start then writes it); else ``[]``: a read-only install would recompile on every start.
    """
    import importlib.util

    if markers is None:  # this package's and numpy's (located, not imported: this process is about to go)
        numpy = importlib.util.find_spec("numpy")
        markers = (__file__, *([numpy.origin] if numpy is not None and numpy.origin else []))
    for source in markers:
        cache = Path(importlib.util.cache_from_source(source, optimization=2))
        writable = not sys.dont_write_bytecode and os.access(cache.parent if cache.parent.exists()
                                                             else Path(source).parent, os.W_OK)
        if not (cache.exists() or writable):
            return []
    return ["-OO"]


def exec_daemon(config: Path, duration_s: float | None = None, sim: bool = False) -> NoReturn:
    """Replace this process with the serving one (:func:`main`); where that cannot be done (no
    ``sys.executable``, exec refused), serve here instead. Never returns: exits with the daemon's code."""
    argv, env = command(config, duration_s, sim)
    if sys.executable:
        sys.stdout.flush()
        sys.stderr.flush()
        with contextlib.suppress(OSError):
            os.execve(argv[0], argv, env)
    sys.exit(serve(config, duration_s, sim))


def main(request: str) -> NoReturn:
    """The serving process: run the daemon on the options in ``request`` (JSON from :func:`command`)."""
    options: dict[str, Any] = json.loads(request)
    try:
        code = serve(Path(options["config"]), options["duration_s"], options["sim"])
    except Exception as exc:
        reported = report_line(exc)
        if reported is None:
            raise
        message, code = reported
        sys.stderr.write(f"{_red('error:')} {message}\n")
    sys.exit(code)


def _red(text: str) -> str:
    """``text`` in bold red on a terminal that takes colours (as rich writes the CLI's errors), else as is."""
    if not sys.stderr.isatty() or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return text
    return f"\x1b[1;31m{text}\x1b[0m"
