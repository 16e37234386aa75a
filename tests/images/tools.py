"""skopeo, umoci and podman run by the tests and benchmarks without touching the host's state.

Run as root, containers/image (skopeo, podman) writes a blob-info cache in
/var/lib/containers/cache whatever its options, and ``podman system reset``
deletes the networks of its network directory (the host's
/etc/containers/networks by default).  ``private_cache`` runs a command with a
tmpfs of its own on /var/lib/containers; ``PrivatePodman`` is podman with a
store, configuration, network directory and HOME of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def private_cache(argv: list[str]) -> list[str]:
    """``argv`` (skopeo, podman pull) in a mount namespace of its own with a tmpfs on /var/lib/containers:
    containers/image run as root keeps a blob-info cache in /var/lib/containers/cache
    (whatever the options), which the host's podman and skopeo read; the tests leave it be."""
    target = "/var/lib/containers" if os.path.isdir("/var/lib/containers") else "/var/lib"
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            f'mount -t tmpfs -o size=16m,mode=0700 isolate-test {target} && exec "$@"', "sh", *argv]


def tool_env(home: Path) -> dict[str, str]:
    """The environment of skopeo, umoci and podman: their HOME, config and temporary
    files in the test's directory."""
    for d in ("home", "tmp"):
        (home / d).mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(home / "home"), "XDG_CONFIG_HOME": str(home / "home/.config"),
            "XDG_DATA_HOME": str(home / "home/.local/share"), "TMPDIR": str(home / "tmp")}


def run_tool(argv: list[str], env: dict[str, str], *, timeout: float = 120) -> str:
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


class PrivatePodman:
    """podman with a store, configuration and HOME of its own under ``root``."""

    def __init__(self, root: Path, *, driver: str = "overlay") -> None:
        exe = shutil.which("podman")
        if exe is None:
            raise RuntimeError("podman is missing: apt-get install it (.ci/packages.txt)")
        self.exe = exe
        self.driver = driver
        self.root = root
        self.env = tool_env(root)
        for d in ("storage", "run", "libpod-tmp", "volumes", "networks"):
            (root / d).mkdir()
        conf = root / "containers.conf"
        conf.write_text(f'[engine]\nevents_logger = "none"\nvolume_path = "{root}/volumes"\n'
                        f'tmp_dir = "{root}/libpod-tmp"\n'
                        f'[network]\nnetwork_config_dir = "{root}/networks"\n')
        storage = root / "storage.conf"
        storage.write_text(f'[storage]\ndriver = "{driver}"\ngraphroot = "{root}/storage"\n'
                           f'runroot = "{root}/run"\n')
        self.env.update(CONTAINERS_CONF=str(conf), CONTAINERS_STORAGE_CONF=str(storage))
        self.mounted: list[str] = []

    def __call__(self, *args: str) -> str:
        """``podman ARGS`` on this store; a copy (pull, push, save, load) in a mount namespace
        of its own (``private_cache``: it writes the blob-info cache; what it stores are files,
        while an ``image mount`` must stay in this one)."""
        wrap = private_cache if args[:1] in (("pull",), ("push",), ("save",), ("load",)) else list
        return run_tool(wrap([self.exe, "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                     "--storage-driver", self.driver, "--events-backend", "none",
                     "--tmpdir", str(self.root / "libpod-tmp"), "--volumepath", str(self.root / "volumes"),
                     "--network-config-dir", str(self.root / "networks"), *args]), self.env)

    def mount(self, ref: str) -> Path:
        """``podman pull`` and ``podman image mount`` of ``ref``: the merged tree (read-only)."""
        self("pull", "-q", "--tls-verify=false", ref)
        path = Path(self("image", "mount", ref).strip())
        self.mounted.append(ref)
        return path

    def close(self) -> None:
        """Unmount what was mounted, reset the store, remove the directory (whatever failed)."""
        try:
            for ref in self.mounted:
                try:
                    self("image", "unmount", "--force", ref)
                except AssertionError:
                    pass
            self("system", "reset", "--force")
        finally:
            # A mount podman left (it failed, or was killed): ours, under our directory.
            prefix = str(self.root) + "/"
            with open("/proc/self/mountinfo") as f:
                mine = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
            for target in sorted(mine, key=len, reverse=True):
                subprocess.run(["umount", target], capture_output=True, check=False)
            shutil.rmtree(self.root, ignore_errors=True)


def need(tool: str) -> str:
    path = shutil.which(tool) or (tool if os.path.exists(tool) else None)
    if path is None:
        raise RuntimeError(f"{tool} is missing: apt-get install it (.ci/packages.txt)")
    return path
