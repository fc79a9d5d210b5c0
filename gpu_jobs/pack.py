"""One job = one tar.gz whose content hash is its id.

The archive is deterministic: entries sorted by name, mtime 0, uid/gid 0, no user names, fixed
modes, and a gzip header without a timestamp or file name. The modes are private (files 0600,
folders 0700, each folder an entry of its own): a `tar` run as root on the box keeps the
archive's modes rather than masking them with the umask, and a job's dataset and code are the
owner's alone. The same spec, data and code
therefore always give the same bytes and the same id, which is what lets `ship` skip a job the
box already has.

Only the modules the GPU box runs are packed (`REMOTE_MODULES`): changing the trading-box side
(client, transports) does not change job ids.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gpu_jobs.spec import JobSpec

PACKAGE_DIR = Path(__file__).resolve().parent
REMOTE_MODULES = (
    "__init__.py",
    "__main__.py",
    "datasets.py",
    "remote.py",
    "spec.py",
    "training.py",
    "models/__init__.py",
    "models/base.py",
    "models/lstm.py",
    "models/ppo.py",
    "models/registry.py",
    "models/tft.py",
)
ID_HEX = 16
FILE_MODE = 0o600
DIR_MODE = 0o700
BLOCK = 4096  # the usual filesystem block


@dataclass(frozen=True)
class PackedJob:
    job_id: str
    path: Path
    sha256: str
    spec: JobSpec
    unpacked_bytes: int  # what its files take unpacked on the box (the pack itself aside), in 4 KiB blocks


def code_files() -> dict[str, bytes | Path]:
    return {f"code/gpu_jobs/{name}": (PACKAGE_DIR / name).read_bytes() for name in REMOTE_MODULES}


def code_sha256() -> str:
    digest = hashlib.sha256()
    for name in REMOTE_MODULES:
        data = (PACKAGE_DIR / name).read_bytes()
        digest.update(f"code/gpu_jobs/{name}".encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def _write_tar_gz(entries: dict[str, bytes | Path], dest: Path) -> str:
    """Stream the archive to `dest` (data files are read as they are added, never held whole
    in memory); its sha256. Every folder the files lie in is an entry too (mode `DIR_MODE`),
    before its files: left to `tar`, a folder it makes for a file takes the umask's mode."""
    folders = {str(parent) for name in entries for parent in PurePosixPath(name).parents if str(parent) != "."}
    with (
        dest.open("wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(folders | set(entries)):  # a folder's name sorts before its files'
            info = _tar_info(name)
            data = entries.get(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
                tar.addfile(info)
            elif isinstance(data, Path):
                info.size = data.stat().st_size
                with data.open("rb") as src:
                    tar.addfile(info, src)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return _sha256_file(dest)


def _tar_info(name: str) -> tarfile.TarInfo:
    """An entry with nothing of this machine in it (no times, owners or umask): a private file."""
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.mode = FILE_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_job(spec: JobSpec, dataset_dir: Path, out_dir: Path) -> PackedJob:
    """Write `<out_dir>/<job_id>.tar.gz` holding job.json, data/ and code/; reuse it when the
    same job was packed before."""
    files = sorted(p for p in dataset_dir.iterdir() if p.is_file())
    if not files:
        raise ValueError(f"dataset folder {dataset_dir} is empty; build the dataset first")
    spec = spec.with_code(code_sha256())
    entries: dict[str, bytes | Path] = {"job.json": spec.dumps().encode(), **code_files()}
    entries.update({f"data/{p.name}": p for p in files})
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkstemp(prefix=".pack-", suffix=".tmp", dir=out_dir)[1])
    try:
        sha = _write_tar_gz(entries, tmp)
        job_id = f"{spec.task}-{sha[:ID_HEX]}"
        path = out_dir / f"{job_id}.tar.gz"
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sizes = [data.stat().st_size if isinstance(data, Path) else len(data) for data in entries.values()]
    unpacked = sum(-(-size // BLOCK) * BLOCK for size in sizes)  # a file takes whole blocks on the box's disk
    return PackedJob(job_id=job_id, path=path, sha256=sha, spec=spec, unpacked_bytes=unpacked)
