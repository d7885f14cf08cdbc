"""``python -m device.cli``: the ``spinal`` command."""

from device.cli.root import main

if __name__ == "__main__":
    main()
