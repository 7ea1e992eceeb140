"""The Linux root filesystem AgentBench OS tasks run in: Debian packages, built once with mmdebstrap, cached.

The official harness runs every task in a Docker image `FROM ubuntu` with the packages that
`data/os_interaction/res/dockerfiles/default` installs through apt, recommended packages included (a compiler
among them). Here the same package set comes from Debian (`RELEASE`, minbase + `PACKAGES` + their recommends),
since Debian's archive and keyring are what a Debian host has. Of Ubuntu jammy's required packages (its base image)
Debian's minbase lacks only procps, added, and libraries named differently.

The tree is owned by the caller's subordinate ids (`/etc/subuid`, `/etc/subgid`): the sandbox
(`os_sandbox.py`) maps that range to uids 0..65535 inside, so the tree's root is the sandbox's root and tasks
that add users and chown files work, while no sandbox process is root, or the caller, on the host.

    python -m arm_ray.benchmarks.rootfs build      # ~1 min and ~750 MB from deb.debian.org; scripts/setup.sh runs it
    python -m arm_ray.benchmarks.rootfs path       # where the current one is, or why there is none

Cached under `$ARM_RAY_ROOTFS_DIR` (default `/var/tmp/arm-ray-rootfs-<uid>`: the sandbox's root, an unprivileged
host uid, must be able to walk to it, which a home directory of mode 700 forbids), one directory per package set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from arm_ray.errors import ConfigError

RELEASE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# data/os_interaction/res/dockerfiles/default, the image every official task uses; and procps (ps, top), which the
# `ubuntu` image has (Priority: required on Ubuntu, not on Debian) and the tasks' examples call
PACKAGES = ("python3", "python3-pip", "git", "vim", "curl", "wget", "unzip", "zip", "tree", "procps")
IDS = 65536  # uids and gids mapped into the sandbox: 0..65535 (nobody is 65534)
FORMAT = 1  # bump when the way a tree is built changes
TOOLS_HINT = "apt-get install -y mmdebstrap uidmap (scripts/setup.sh does)"


@dataclass(frozen=True)
class Spec:
    release: str = RELEASE
    packages: tuple[str, ...] = PACKAGES
    mirror: str = MIRROR

    @property
    def name(self) -> str:
        key = json.dumps([FORMAT, self.release, sorted(self.packages)]).encode()
        return f"agentbench-os-{self.release}-{hashlib.sha256(key).hexdigest()[:10]}"


def cache_root() -> Path:
    return Path(os.environ.get("ARM_RAY_ROOTFS_DIR") or f"/var/tmp/arm-ray-rootfs-{os.getuid()}")


def sub_ids() -> tuple[int, int]:
    """(first uid, first gid) of the caller's subordinate ranges, each at least `IDS` long."""
    user = pwd.getpwuid(os.getuid()).pw_name
    firsts = []
    for kind in ("uid", "gid"):
        path = Path(f"/etc/sub{kind}")
        found = None
        if path.is_file():
            for line in path.read_text().splitlines():
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user, str(os.getuid())) and int(parts[2]) >= IDS:
                    found = int(parts[1])
                    break
        if found is None:
            raise ConfigError(f"{path} gives user {user} no range of {IDS} subordinate {kind}s; the OS sandbox "
                              f"maps its users to one. Add one, e.g. `usermod --add-sub{kind}s 100000-165535 {user}` "
                              f"(scripts/setup.sh does for root)")
        firsts.append(found)
    return firsts[0], firsts[1]


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise ConfigError(f"`{name}` not found: the AgentBench OS sandbox needs it; {TOOLS_HINT}")
    return path


def mapped(uid: int, gid: int) -> list[str]:
    """The command prefix that runs as root of a user namespace whose ids 0..65535 are the host's uid.. / gid.."""
    _tool("newuidmap")
    return [_tool("unshare"), "--user", f"--map-users={uid},0,{IDS}", f"--map-groups={gid},0,{IDS}",
            "--setuid", "0", "--setgid", "0"]


def _reachable(path: Path) -> None:
    """Every directory above the tree must let others pass (the sandbox's root is another host uid)."""
    for d in [path, *path.parents]:
        if d.exists() and not os.stat(d).st_mode & 0o001:
            raise ConfigError(f"{d} (mode {oct(os.stat(d).st_mode & 0o777)}) cannot be passed by other users, so the "
                              f"sandbox cannot reach the root filesystem under it; set ARM_RAY_ROOTFS_DIR to a place "
                              f"every user can pass (the default is /var/tmp/arm-ray-rootfs-<uid>)")


def locate(spec: Spec = Spec(), root: Path | None = None) -> Path:
    """The built tree's directory for `spec` (it holds `rootfs/`, `mnt/`, `manifest.json`), or how to build it."""
    home = (root or cache_root()) / spec.name
    if not (home / "manifest.json").is_file():
        raise ConfigError(f"no AgentBench OS root filesystem at {home}; build it once (about 1 min and 750 MB, from "
                          f"{spec.mirror}): python -m arm_ray.benchmarks.rootfs build (scripts/setup.sh does)")
    return check_tree(home)


def tree(rootfs_dir: str | None) -> Path:
    """A suite's tree: its option `rootfs_dir` (checked), else the one cached for this user."""
    return locate() if rootfs_dir is None else check_tree(Path(rootfs_dir), "options.rootfs_dir: ")


def check_tree(home: Path, where: str = "") -> Path:
    """`home` if it is a built tree this user's sandbox can use, else a ConfigError saying why."""
    try:
        built = json.loads((home / "manifest.json").read_text())
        ids = built["uid"], built["gid"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{where}{home} is not a tree built by `python -m arm_ray.benchmarks.rootfs build` "
                          f"({type(e).__name__}: {e})") from None
    if ids != sub_ids():
        raise ConfigError(f"{where}{home} was built for subordinate ids {ids[0]}/{ids[1]}, but this user's are "
                          f"{'/'.join(map(str, sub_ids()))}; rebuild it: python -m arm_ray.benchmarks.rootfs build "
                          f"--force")
    _reachable(home)
    return home


def _run_logged(argv: list[str], label: str, log) -> None:
    """Run a build step, its output lines shown as progress with the time since it began."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    tail = []
    for line in p.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        if line.startswith(("I:", "E:", "W:")):
            log(f"  [{label} {time.monotonic() - t0:5.1f} s] {line}")
    if p.wait() != 0:
        raise ConfigError(f"{label} failed (exit {p.returncode}): " + "\n".join(tail))


def remove(path: Path, uid: int, gid: int) -> None:
    """Remove a tree owned by the subordinate ids (the caller may not own its files)."""
    if path.exists():
        subprocess.run([*mapped(uid, gid), "rm", "-rf", "--", str(path)], capture_output=True, check=False)
        shutil.rmtree(path, ignore_errors=True)  # what the mapped root could not (files the caller owns)


def build(spec: Spec = Spec(), root: Path | None = None, force: bool = False, log=print) -> Path:
    """Build the tree once (`force`: again); returns its directory."""
    root = root or cache_root()
    home = root / spec.name
    if (home / "manifest.json").is_file() and not force:
        log(f"rootfs: {home} is built (use --force to rebuild)")
        return locate(spec, root)
    mmdebstrap, uid, gid = _tool("mmdebstrap"), *sub_ids()
    root.mkdir(parents=True, exist_ok=True)
    _reachable(root)
    work = root / f".{spec.name}.partial-{os.getpid()}"
    remove(work, uid, gid)
    work.mkdir()
    work.chmod(0o777)  # the mapped root creates the tree inside
    t0 = time.monotonic()
    try:
        log(f"rootfs: 1/2 Debian {spec.release} minbase + {', '.join(spec.packages)} (with recommends) from "
            f"{spec.mirror}")
        tar = work / "rootfs.tar"
        _run_logged([mmdebstrap, "--variant=minbase", "--aptopt=APT::Install-Recommends \"true\"",
                     f"--include={','.join(spec.packages)}", spec.release, str(tar), spec.mirror], "mmdebstrap", log)
        log(f"rootfs: 2/2 unpacking into subordinate ids {uid}/{gid} ({tar.stat().st_size / 2**20:.0f} MiB)")
        # device nodes cannot be made in a user namespace: the sandbox mounts its own /dev
        unpack = 'mkdir "$1" && tar --numeric-owner --xattrs --xattrs-include="*" --exclude="./dev/*" -xpf "$2" -C "$1"'
        p = subprocess.run([*mapped(uid, gid), "sh", "-c", unpack, "sh", str(work / "rootfs"), str(tar)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise ConfigError(f"unpacking the root filesystem failed (exit {p.returncode}): {p.stderr.strip()[-800:]}")
        tar.unlink()
        (work / "mnt").mkdir()  # where each sandbox mounts its own throwaway tmpfs (in its own mount namespace)
        work.chmod(0o755)
        manifest = {**asdict(spec), "uid": uid, "gid": gid, "format": FORMAT,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "seconds": round(time.monotonic() - t0, 1)}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if home.exists():
            remove(home, uid, gid)
        work.rename(home)
    finally:
        remove(work, uid, gid)
    size = subprocess.run(["du", "-sm", str(home / "rootfs")], capture_output=True, text=True).stdout.split()[:1]
    log(f"rootfs: built {home} in {time.monotonic() - t0:.0f} s ({size[0] if size else '?'} MiB)")
    return home


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m arm_ray.benchmarks.rootfs", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["build", "path"])
    ap.add_argument("--release", default=RELEASE)
    ap.add_argument("--mirror", default=MIRROR)
    ap.add_argument("--force", action="store_true", help="build again even if this package set is built")
    a = ap.parse_args(argv)
    spec = Spec(a.release, PACKAGES, a.mirror)
    try:
        if a.command == "build":
            build(spec, force=a.force)
        else:
            print(locate(spec))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
