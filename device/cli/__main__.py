"""``python -m device.cli``: the ``spinal`` command."""

from device.cli.root import main

main()
