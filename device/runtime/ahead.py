"""The TFLite probe child, started as ``load_model`` begins instead of when the first file is loaded.

Every runtime's first contact with a TFLite file new to this device happens in a child process
(:func:`device.modelfile.probe_tflite_files`): a second Python start-up plus the runtime's import, about as
long as the rest of a first start. Started here, before the bundle is unpacked and before the selection code
and the other runtimes are imported, it gets ready on the other core while this process does that work; the
probe then hands it the verified files. Whether to start it early is decided from the manifest alone (a bundle
whose TFLite contents all passed a probe here needs no child); what the child reads is still the verified copy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device import modelfile

if TYPE_CHECKING:
    from device.runtime.base import RuntimePolicy

_MANIFEST = "manifest.json"
_PEEK_BYTES = 1 << 22  # a manifest larger than this is not peeked at (open_bundle still reads it)


def probe_runtime(policy: RuntimePolicy) -> str | None:
    """The TFLite runtime a probe under ``policy`` will use (``default``: the preferred one), or ``None``."""
    if policy.runtime in ("auto", "litert") and importlib.util.find_spec("ai_edge_litert") is not None:
        return "default"
    if policy.runtime in ("auto", "tflite-runtime") and importlib.util.find_spec("tflite_runtime") is not None:
        return "tflite-runtime"
    return None


def _peek_manifest(path: Path) -> dict[str, Any]:
    """A bundle's manifest as plain JSON, unchecked (``{}`` if it cannot be read cheaply): the archive's first
    member, where ``pack_archive`` puts it, or the directory's file."""
    try:
        if path.is_dir():
            data = (path / _MANIFEST).read_bytes()[:_PEEK_BYTES + 1]
        else:
            with tarfile.open(path, mode="r:*") as tar:
                member = tar.next()
                if member is None or member.name != _MANIFEST or not member.isfile() or member.size > _PEEK_BYTES:
                    return {}
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
        manifest = json.loads(data) if len(data) <= _PEEK_BYTES else {}
    except (OSError, ValueError, tarfile.TarError, EOFError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def tflite_digests(source: Any, artifact: str | None = None) -> list[str]:
    """The sha256 of each plain TFLite artifact ``source`` (an open bundle or a bundle path) lists, as far as
    its manifest says; ``[]`` when it cannot be read cheaply."""
    manifest = getattr(source, "manifest", None)
    if manifest is not None:  # an open Bundle: its verified manifest
        arts = [{"format": a.format, "path": a.path, "precision": a.precision, "sha256": a.sha256,
                 "edgetpu": a.edgetpu} for a in manifest.artifacts]
    else:
        path = Path(source)
        if path.suffix != ".spinal" and not path.is_dir():
            return []
        listed = _peek_manifest(path).get("artifacts")
        arts = [a for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []
    return [str(a["sha256"]) for a in arts if a.get("format") == "tflite" and not a.get("edgetpu")
            and isinstance(a.get("sha256"), str) and artifact in (None, a.get("path"), a.get("precision"))]


def probe_ahead(source: Any, policy: RuntimePolicy) -> contextlib.AbstractContextManager[None]:
    """A block in which the probe child for ``source``'s TFLite files is already starting, if it will be needed:
    the policy can run TFLite, and the manifest lists a TFLite content no probe on this device has passed."""
    runtime = probe_runtime(policy)
    if runtime is None or modelfile.probe_child_started(runtime):
        return contextlib.nullcontext()
    digests = tflite_digests(source, policy.artifact)
    if not digests or all(modelfile.digest_probed(d, runtime) for d in digests):
        return contextlib.nullcontext()
    return modelfile.probe_child_ahead(runtime)
