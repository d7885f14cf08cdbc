"""``spinal keygen`` and ``spinal sign``: ed25519 keys and bundle signatures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from device.cli.common import console, reports_errors


@reports_errors
def keygen(
    out: Annotated[Path, typer.Option("--out", "-o", help="Key file prefix: writes PREFIX.key (0600) and PREFIX.pub.")],
) -> None:
    """Make an ed25519 key pair for signing bundles."""
    from device.signing import generate_keypair, load_public_key

    private_path, public_path = generate_keypair(out)
    key = load_public_key(public_path)
    console.print(f"key {key.key_id}: private {private_path} (mode 0600, keep it secret), public {public_path} "
                  "(copy it to devices: trusted_keys)")


@reports_errors
def sign(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory or .spinal archive.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="The private key (PREFIX.key from spinal keygen).")],
) -> None:
    """Sign a bundle's manifest (which hashes every file) after checking its integrity."""
    from device.bundle import sign_bundle

    key_id = sign_bundle(bundle, key)
    console.print(f"{bundle}: signed by key {key_id}")
