"""Bundles: a directory (or a ``NAME.spinal`` archive of it) of model files plus ``manifest.json``.

Opening a bundle verifies it before anything uses it: the manifest parses, every file it
lists exists as a regular file inside the bundle with the recorded size and sha256, and an
archive holds nothing but regular files with safe names and sane sizes. The toolchain
writes bundles with :func:`write_manifest` and :func:`pack_archive`; the format is defined
here, once.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.digests import file_digest as file_digest  # the bundle format's digest (toolchain, tests)
from device.errors import BundleError, OutOfSpace
from device.manifest import MANIFEST_NAME, Manifest, parse_manifest, unsafe_path_reason
from device.signing import SIGNATURE_NAME, PublicKey, verify_signature

ARCHIVE_SUFFIX = ".spinal"
# Limits that no real edge model comes near; they stop a hostile archive early.
MAX_FILE_BYTES = 1 << 30  # 1 GiB per member
MAX_TOTAL_BYTES = 2 << 30  # 2 GiB unpacked in all
MAX_MEMBERS = 1000
_CHUNK = 1 << 20


@dataclass
class Bundle:
    """A verified bundle on disk. Use :func:`open_bundle` (a context manager for archives)."""

    root: Path
    manifest: Manifest
    source: Path
    signed_by: PublicKey | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def path_of(self, relative: str) -> Path:
        """Absolute path of a file named in the manifest."""
        return self.root / relative

    def shown(self, message: str) -> str:
        """``message`` with the private copy's directory replaced by the bundle the user named."""
        return message.replace(str(self.root), str(self.source)) if self.root != self.source else message

    @property
    def is_archive(self) -> bool:
        """Whether this bundle was unpacked from a ``.spinal`` archive (not copied from a directory)."""
        return self._tmp is not None and not self.source.is_dir()

    def load_golden(self) -> dict[str, np.ndarray[Any, Any]]:
        """The golden vectors as arrays keyed ``input/<name>`` and ``output/<artifact>/<name>``."""
        golden = self.manifest.golden
        if golden is None:
            raise BundleError(f"{self.source}: manifest.json has no golden vectors")
        path = self.path_of(golden.path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except Exception as exc:  # numpy raises many types for a corrupt npz
            raise BundleError(f"{path}: unreadable golden file ({type(exc).__name__}: {exc})") from None
        for spec in self.manifest.inputs:
            key = f"input/{spec.name}"
            if key not in arrays:
                raise BundleError(f"{path}: no {key!r} array (has {', '.join(sorted(arrays)) or 'none'})")
            if arrays[key].shape[0] != golden.count:
                raise BundleError(f"{path}: {key} holds {arrays[key].shape[0]} samples, manifest says {golden.count}")
        return arrays

    def close(self) -> None:
        """Remove the unpacked copy of an archive (a no-op for a directory bundle)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_bundle_path(path: Path) -> bool:
    """Whether ``path`` should be opened as a bundle (a directory, or a ``.spinal`` file)."""
    return path.suffix == ARCHIVE_SUFFIX or path.is_dir()


def open_bundle(
    path: str | os.PathLike[str],
    workdir: str | os.PathLike[str] | None = None,
    trusted_keys: Sequence[PublicKey] = (),
    require_signature: bool = False,
) -> Bundle:
    """Open and verify a bundle directory or ``.spinal`` archive.

    What is verified is exactly what is loaded: an archive is checked member by member and unpacked,
    and a directory's manifest and listed files are each read once and copied, into a private
    temporary directory (under ``workdir`` if given) that lives until :meth:`Bundle.close`; the
    hashes and the signature are checked on that copy, and the runtimes load from it, so a process
    that can write the bundle directory cannot swap a file between the check and the load. With
    ``require_signature`` the manifest must carry a valid signature by one of
    ``trusted_keys``; with trusted keys alone, a signature that is present must be valid.
    Raises :class:`BundleError` naming the file or manifest key at fault.
    """
    source = Path(path)
    if not source.exists():
        raise BundleError(f"{source}: no such bundle (expected a directory with {MANIFEST_NAME} or a "
                          f"{ARCHIVE_SUFFIX} file)")
    if not source.is_dir() and source.suffix != ARCHIVE_SUFFIX:
        raise BundleError(f"{source}: not a bundle (expected a directory or a {ARCHIVE_SUFFIX} archive)")
    tmp = tempfile.TemporaryDirectory(prefix="spinal-bundle-", dir=workdir)
    try:
        root = Path(tmp.name)
        if source.is_dir():
            copy_directory(source, root)
        else:
            unpack_archive(source, root)
        manifest = verify_directory(root, label=source)
        signed_by = _check_signature(root, source, trusted_keys, require_signature)
    except BaseException:
        tmp.cleanup()
        raise
    return Bundle(root=root, manifest=manifest, source=source, signed_by=signed_by, _tmp=tmp)


def _check_signature(
    root: Path, label: Path, trusted_keys: Sequence[PublicKey], required: bool
) -> PublicKey | None:
    if required or (trusted_keys and (root / SIGNATURE_NAME).exists()):
        return verify_signature(root, list(trusted_keys), label=str(label))
    return None


def read_manifest(root: Path, label: Path | None = None) -> Manifest:
    """Read and parse ``root/manifest.json`` without checking the files it lists."""
    label = label or root
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file() or manifest_path.is_symlink():
        raise BundleError(f"{label}: no {MANIFEST_NAME} (is this a bundle?)")
    return parse_manifest(manifest_path.read_bytes(), source=f"{label}/{MANIFEST_NAME}")


def _regular_member(root: Path, rel: str, where: str) -> os.stat_result:
    """``root/rel``'s status, if it is a regular file inside ``root``; else a :class:`BundleError`."""
    path = root / rel
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise BundleError(f"{where}: file is missing") from None
    if stat.S_ISLNK(info.st_mode):
        raise BundleError(f"{where}: is a symbolic link; bundles hold regular files only")
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{where}: not a regular file")
    if root.resolve() not in path.resolve().parents:
        raise BundleError(f"{where}: resolves outside the bundle")
    return info


def copy_directory(source: Path, dest: Path) -> None:
    """Copy a bundle directory's manifest, signature and listed files into ``dest``, reading each once.

    Checks are those of :func:`verify_directory` (what a link, a device or a missing file gets); the
    copy is then verified by the caller, so its bytes are the ones that are used.
    """
    try:
        _copy_members(source, dest)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk, not the bundle
            raise OutOfSpace(f"{dest.parent}: no space left on device while copying {source} "
                             f"({_human_bytes(shutil.disk_usage(dest.parent).free)} free); free space there, "
                             "then start again") from None
        raise


def _copy_members(source: Path, dest: Path) -> None:
    manifest_bytes = _read_regular(source, MANIFEST_NAME, f"{source}: no {MANIFEST_NAME} (is this a bundle?)")
    manifest = parse_manifest(manifest_bytes, source=f"{source}/{MANIFEST_NAME}")
    (dest / MANIFEST_NAME).write_bytes(manifest_bytes)
    if (source / SIGNATURE_NAME).exists():
        signature = _read_regular(source, SIGNATURE_NAME, f"{source}/{SIGNATURE_NAME}: not a regular file")
        (dest / SIGNATURE_NAME).write_bytes(signature)
    for key, rel, _, _ in manifest.files():
        where = f"{source}/{rel} ({MANIFEST_NAME} {key})"
        _regular_member(source, rel, where)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            src = open(source / rel, "rb", opener=_no_follow)  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise BundleError(f"{where}: cannot be read ({exc.strerror})") from None
        with src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def _read_regular(root: Path, name: str, missing: str) -> bytes:
    path = root / name
    try:
        with open(path, "rb", opener=_no_follow) as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise BundleError(missing)
            return fh.read()
    except OSError:
        raise BundleError(missing) from None


def verify_directory(root: Path, label: Path | None = None) -> Manifest:
    """Parse the manifest and check every file it lists (existence, type, size, sha256)."""
    label = label or root
    manifest = read_manifest(root, label)
    for key, rel, sha256, size in manifest.files():
        path = root / rel
        where = f"{label}/{rel} ({MANIFEST_NAME} {key})"
        info = _regular_member(root, rel, where)
        if info.st_size != size:
            raise BundleError(f"{where}: size is {info.st_size} bytes, manifest says {size}; "
                              "the file was changed or truncated")
        actual, _ = file_digest(path)
        if actual != sha256:
            raise BundleError(f"{where}: sha256 mismatch (file {actual[:12]}…, manifest {sha256[:12]}…); "
                              "the file was changed after the bundle was made")
    return manifest


# --------------------------------------------------------------------------------------------
# Archives


_TAR_TYPES = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO",
              tarfile.CONTTYPE: "a contiguous file"}


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _check_member(member: tarfile.TarInfo, archive: Path, seen: set[str]) -> None:
    name = member.name
    problem = unsafe_path_reason(name)
    if problem:
        raise BundleError(f"{archive}: member {name!r} {problem}; refusing the archive")
    if member.issym() or member.islnk():
        raise BundleError(f"{archive}: member {name!r} is a link; bundles hold regular files only")
    if not member.isfile():
        kind = _TAR_TYPES.get(member.type, "not a regular file")
        raise BundleError(f"{archive}: member {name!r} is {kind}; bundles hold regular files only")
    if name in seen:
        raise BundleError(f"{archive}: member {name!r} appears twice; refusing the archive")
    if member.size > MAX_FILE_BYTES:
        raise BundleError(f"{archive}: member {name!r} claims {_human_bytes(member.size)}, more than the "
                          f"{_human_bytes(MAX_FILE_BYTES)} a file may have; refusing the archive")


def unpack_archive(archive: Path, dest: Path) -> list[str]:
    """Check every member of a ``.spinal`` archive, then unpack it into ``dest``.

    Refuses absolute paths, ``..``, links, devices, directories-as-files tricks, duplicate
    names, more than :data:`MAX_MEMBERS` members and anything over the size limits (counting
    the bytes actually decompressed, so a compression bomb stops at the limit).
    Nothing is written until every header has been checked. Returns the member names.
    """
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = _checked_members(tar, archive)
            _extract(tar, members, archive, dest)
    except BundleError:
        raise
    except tarfile.ReadError:
        raise BundleError(f"{archive}: not a readable {ARCHIVE_SUFFIX} archive (not a tar file, or a corrupt "
                          "or truncated one)") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk, not the bundle
            raise OutOfSpace(f"{dest.parent}: no space left on device while unpacking {archive} "
                             f"({_human_bytes(shutil.disk_usage(dest.parent).free)} free); free space there, "
                             "then start again") from None
        raise BundleError(f"{archive}: not a readable {ARCHIVE_SUFFIX} archive ({type(exc).__name__}: "
                          f"{exc})") from None
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise BundleError(f"{archive}: not a readable {ARCHIVE_SUFFIX} archive ({type(exc).__name__}: "
                          f"{exc})") from None
    seen = {m.name for m in members}
    allowed = {MANIFEST_NAME, SIGNATURE_NAME}
    manifest = read_manifest(dest, archive)
    allowed |= {path for _, path, _, _ in manifest.files()}
    strays = sorted(seen - allowed)
    if strays:
        raise BundleError(f"{archive}: member {strays[0]!r} is not listed in {MANIFEST_NAME}; "
                          "refusing the archive")
    return sorted(seen)


def _checked_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every file member's header checked (names, kinds, count, declared sizes) before anything is written."""
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    for member in tar:
        if member.isdir():
            continue
        if len(members) >= MAX_MEMBERS:
            raise BundleError(f"{archive}: more than {MAX_MEMBERS} members; refusing the archive")
        _check_member(member, archive, seen)
        seen.add(member.name)
        members.append(member)
    if MANIFEST_NAME not in seen:
        raise BundleError(f"{archive}: no {MANIFEST_NAME} inside (is this a bundle?)")
    declared = sum(m.size for m in members)
    if declared > MAX_TOTAL_BYTES:
        raise BundleError(f"{archive}: members add up to {_human_bytes(declared)}, more than the "
                          f"{_human_bytes(MAX_TOTAL_BYTES)} a bundle may have; refusing the archive")
    return members


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], archive: Path, dest: Path) -> None:
    """Write the checked members, counting the bytes actually decompressed against the size limits."""
    total = 0
    for member in members:
        target = dest / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        assert src is not None  # regular files always have a payload
        with src, open(target, "xb") as out:
            written = 0
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                total += len(chunk)
                if written > MAX_FILE_BYTES or total > MAX_TOTAL_BYTES:
                    raise BundleError(f"{archive}: member {member.name!r} unpacks past the size "
                                      "limit; refusing the archive")
                out.write(chunk)
        os.chmod(target, 0o644)


def pack_archive(root: Path, out: Path) -> Path:
    """Write the verified bundle directory ``root`` as a reproducible ``.spinal`` archive.

    Only the manifest, the files it lists and a signature (if present) go in; members are
    sorted with fixed owner and mtime, so the same bundle always packs to the same bytes.
    The archive is written to a temporary name and renamed into place.
    """
    if out.suffix != ARCHIVE_SUFFIX:
        raise BundleError(f"{out}: an archive name must end in {ARCHIVE_SUFFIX}")
    manifest = verify_directory(root)
    names = [MANIFEST_NAME, *sorted(path for _, path, _, _ in manifest.files())]
    if (root / SIGNATURE_NAME).is_file():
        names.append(SIGNATURE_NAME)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_output(out) as tmp_path, open(tmp_path, "wb") as raw:
        import gzip  # local: only writers need it

        with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(
            fileobj=gz, mode="w", format=tarfile.PAX_FORMAT
        ) as tar:
            for name in names:
                data = (root / name).read_bytes()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return out


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically after checking it round-trips through the parser."""
    text = manifest.to_json()
    parse_manifest(text, source=f"{root}/{MANIFEST_NAME} (being written)")
    path = root / MANIFEST_NAME
    with _atomic_output(path) as tmp_path:
        tmp_path.write_text(text, encoding="utf-8")
    return path


@contextmanager
def _atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()



def sign_bundle(path: Path, private_key_path: Path) -> str:
    """Verify a bundle's integrity, then sign its manifest in place; returns the key id.

    A directory gets a ``manifest.sig`` next to its manifest; an archive is re-packed with one
    (atomically, so a failure leaves the original archive untouched).
    """
    from device.signing import sign_directory

    with open_bundle(path) as bundle:  # the verified private copy is what gets signed
        key_id = sign_directory(bundle.root, private_key_path)
        if bundle.is_archive:
            pack_archive(bundle.root, Path(path))
        else:
            with _atomic_output(Path(path) / SIGNATURE_NAME) as tmp_path:
                tmp_path.write_bytes((bundle.root / SIGNATURE_NAME).read_bytes())
    return key_id
