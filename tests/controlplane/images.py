"""Container images without a registry: the node's sandbox image, a Debian base, and the
project's image built from its Dockerfile with buildah (../shared/NOTES.md §5).

- The sandbox ("pause") image is one static binary: written here as an OCI archive.
- The base is made from Debian packages with mmdebstrap (python3, its venv module, CA
  certificates, passwd for useradd), imported into buildah's storage once and reused while the
  package list is unchanged.
- `build_image` runs `buildah bud` on the repository's Dockerfile with `--build-arg
  BASE_IMAGE=<that base>` and exports the result as an OCI archive for `ctr images import`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

PAUSE_IMAGE = "llmbudget.local/pause:v1"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
SUITE = "bookworm"
BUILDAH = ("buildah", "--storage-driver=overlay")
# buildah's default runtime (crun) fails on this cgroup layout; runc works
BUILD_FLAGS = ("--runtime=/usr/sbin/runc", "--network=host", "--layers=false", "--isolation=oci")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_single_file_image(archive: Path, binary: Path, path_in_image: str, name: str) -> Path:
    """An OCI image archive with one file (`binary` at `path_in_image`) as its entrypoint."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        info = tarfile.TarInfo(path_in_image.lstrip("/"))
        data = binary.read_bytes()
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
    layer = layer_tar.getvalue()
    layer_gz = gzip.compress(layer, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [path_in_image]},
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _sha256(layer_gz),
                    "size": len(layer_gz),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _sha256(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                    },
                }
            ],
        }
    ).encode()
    with tarfile.open(archive, "w") as tar:
        files = {
            "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "index.json": index,
            **{f"blobs/sha256/{_sha256(b)[7:]}": b for b in (layer_gz, config, manifest)},
        }
        for member, content in files.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    return archive


def _run(*argv: str, cwd: Path | None = None, timeout: float = 1200) -> str:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def missing_build_tools() -> list[str]:
    return [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]


def base_image_name() -> str:
    """The base's name, keyed by what goes into it (a new package list builds a new base)."""
    key = hashlib.sha256(f"{SUITE} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()[:10]
    return f"llmbudget.local/debian-python:{SUITE}-{key}"


def image_exists(name: str) -> bool:
    result = subprocess.run(
        [*BUILDAH, "inspect", "--type=image", name], capture_output=True, check=False
    )
    return result.returncode == 0


def ensure_base_image(cache: Path) -> tuple[str, float]:
    """Make (or reuse) the Debian base in buildah's storage; returns its name and the seconds
    it took (0 when reused)."""
    name = base_image_name()
    if image_exists(name):
        return name, 0.0
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    rootfs = cache / f"{name.rsplit(':', 1)[1]}.tar"
    if not rootfs.exists():
        partial = rootfs.with_suffix(".partial.tar")  # mmdebstrap picks the format by suffix
        _run(
            "mmdebstrap",
            "--variant=apt",
            "--quiet",
            f"--include={','.join(BASE_PACKAGES)}",
            # no docs, man pages or apt lists in the image
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
            SUITE,
            str(partial),
        )
        partial.replace(rootfs)
    container = _run(*BUILDAH, "from", "scratch").strip()
    try:
        _run(*BUILDAH, "add", container, str(rootfs), "/")
        _run(
            *BUILDAH,
            "config",
            "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env=LANG=C.UTF-8",
            "--cmd=/bin/bash",
            container,
        )
        _run(*BUILDAH, "commit", "--rm", container, name)
    except BaseException:
        subprocess.run([*BUILDAH, "rm", container], capture_output=True, check=False)
        raise
    return name, time.monotonic() - started


@dataclass(frozen=True)
class BuiltImage:
    name: str
    archive: Path
    build_seconds: float
    base_seconds: float
    size_bytes: int  # uncompressed, as `buildah images` counts it


def build_image(
    context: Path,
    name: str,
    archive: Path,
    base: str,
    dockerfile: Path | None = None,
    build_args: dict[str, str] | None = None,
) -> tuple[float, int]:
    """`buildah bud` one Dockerfile into `name`, exported to `archive`; returns the build's
    seconds and the image's size."""
    started = time.monotonic()
    previous = image_id(name)
    pip_conf = archive.with_name("pip.conf")
    # The package proxy's certificate chain is trusted through the host's CA bundle only.
    pip_conf.write_text(f"[global]\ncert = {HOST_CA}\n")
    args = [f"--build-arg=BASE_IMAGE={base}"]
    args += [f"--build-arg={k}={v}" for k, v in (build_args or {}).items()]
    _run(
        *BUILDAH,
        "bud",
        *BUILD_FLAGS,
        f"--volume={HOST_CA}:{HOST_CA}:ro",
        f"--volume={pip_conf}:/etc/pip.conf:ro",
        *args,
        f"--file={dockerfile or context / 'Dockerfile'}",
        f"--tag={name}",
        str(context),
    )
    seconds = time.monotonic() - started
    if previous is not None and previous != image_id(name):  # our previous build, now untagged
        subprocess.run([*BUILDAH, "rmi", previous], capture_output=True, check=False)
    archive.unlink(missing_ok=True)
    _run(*BUILDAH, "push", name, f"oci-archive:{archive}:{name}")
    return seconds, image_size(name)


def image_size(name: str) -> int:
    """The image's uncompressed size in bytes (the sum of its layers)."""
    info = json.loads(_run(*BUILDAH, "inspect", "--type=image", name))
    manifest = json.loads(info.get("Manifest") or "{}")
    return sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))


def image_id(name: str) -> str | None:
    result = subprocess.run(
        [*BUILDAH, "inspect", "--type=image", "--format={{.FromImageID}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def environment_ok() -> bool:
    return os.geteuid() == 0 and not missing_build_tools()
