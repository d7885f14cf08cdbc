"""`spinal` for the field runs, with `--gate-measure SPEC` until device/cli.py's convert has that flag.

The flag sets `toolchain.convert.ConvertOptions.gate_measure` (map-iou:T | ctc[:BLANK]); every other argument
goes to the CLI unchanged. Remove this file once `spinal convert --gate-measure` exists.
"""
from __future__ import annotations

import functools
import sys


def main() -> None:
    args = sys.argv[1:]
    if "--gate-measure" in args:
        i = args.index("--gate-measure")
        measure = args[i + 1]
        del args[i:i + 2]
        import toolchain.convert as conv

        conv.ConvertOptions = functools.partial(conv.ConvertOptions, gate_measure=measure)  # type: ignore[misc]
    sys.argv = ["spinal", *args]
    from device.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
