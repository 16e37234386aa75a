"""An unprivileged user for the rootless tests, made for the run and removed after it.

The tests that check what an ordinary user gets (issue 16) run as a user the
session makes with ``useradd``: its own uid and gid, subordinate id ranges in
/etc/subuid and /etc/subgid (useradd allocates them, as on any Debian host),
a home directory, and ``$XDG_RUNTIME_DIR`` at /run/user/<uid> as systemd-logind
would make it.  The user runs Debian's /usr/bin/python3 (pyenv's Pythons live
under /root, which other users cannot read) in a virtual environment that sees
the system's packages (``python3-cffi-backend``, ``python3-pytest``) and a copy
of the isolate this run imports, with the ``isolate`` and ``isolate-oci``
commands.  At the end every process of that user is killed (by pid: the uid is
the run's own), and the user, its group, its id ranges and its directories go.

A plain module, imported as ``rootless`` (see support.py for why not conftest).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEBIAN_PYTHON = "/usr/bin/python3"

_SCRIPT = """#!{python}
import sys
from isolate.cli.__main__ import script
sys.exit(script())
"""


def subid_lines(name: str, path: str) -> list[tuple[int, int]]:
    """The (start, count) ranges ``path`` gives ``name``."""
    out = []
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] == name:
                out.append((int(parts[1]), int(parts[2])))
    return out


def _drop_subid_lines(name: str, path: str) -> None:
    """Remove ``name``'s lines from /etc/subuid or /etc/subgid (userdel may leave them)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return
    kept = [line for line in text.splitlines(keepends=True) if line.split(":", 1)[0] != name]
    if len(kept) != len(text.splitlines()):
        Path(path).write_text("".join(kept))


def uid_pids(uid: int | Sequence[int]) -> list[int]:
    """Every process whose real uid is ``uid`` (or one of them)."""
    wanted = {uid} if isinstance(uid, int) else set(uid)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) in wanted:
                            pids.append(int(entry))
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


@dataclass
class RootlessUser:
    """An ordinary user of this run, and how to run commands as it."""

    name: str
    uid: int
    gid: int
    home: Path
    runtime_dir: Path
    venv: Path
    subuid: list[tuple[int, int]]
    subgid: list[tuple[int, int]]

    @property
    def python(self) -> str:
        """The user's Python (Debian's, in the run's virtual environment)."""
        return str(self.venv / "bin" / "python")

    @property
    def bin(self) -> Path:
        """Where ``isolate`` and ``isolate-oci`` are."""
        return self.venv / "bin"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A login-like environment: what a user's shell would have."""
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               "XDG_RUNTIME_DIR": str(self.runtime_dir), "LANG": "C.UTF-8", "SHELL": "/bin/sh"}
        env.update(extra or {})
        return env

    def command(self, argv: Sequence[str], *, cgroups: Sequence[str] = (),
                netns: str | None = None) -> list[str]:
        """``argv`` run as the user by setpriv, after moving into ``cgroups`` (directories
        holding a ``cgroup.procs``), as a login into a delegated cgroup would be; in the
        network namespace ``netns`` (a name of ``ip netns``: a fake host of tests/net),
        entered by root before the ids change, when given."""
        # The bounding set stays full, as after a login: a setuid newuidmap needs it.
        drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--inh-caps=-all", "--"]
        enter = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
        if not cgroups:
            return enter + drop + list(argv)
        moves = " && ".join(f"echo $$ > {Path(c, 'cgroup.procs')}" for c in cgroups)
        return enter + ["sh", "-c", f'{moves} && exec "$@"', "sh", *drop, *argv]

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None, timeout: float = 120,
            input: str | None = None, cgroups: Sequence[str] = (), netns: str | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the user (text output captured; a session of its own), in the
        network namespace ``netns`` when given (see ``command``)."""
        r = subprocess.run(self.command(argv, cgroups=cgroups, netns=netns), env=self.env(env),
                           cwd=str(cwd or self.home), capture_output=True, text=True,
                           input=input, timeout=timeout, start_new_session=True)
        if check and r.returncode != 0:
            raise AssertionError(f"{list(argv)} as {self.name} exited {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def python_run(self, code: str, **kw: object) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` as the user."""
        return self.run([self.python, "-c", code], **kw)  # type: ignore[arg-type]

    def kill_all(self) -> list[int]:
        """SIGKILL every process of the user (the uid is this run's own), and of its subordinate
        uids (its sandboxes'; the ranges are its own until it is removed); the pids killed."""
        killed: list[int] = []
        uids = [self.uid] + [u for start, count in self.subuid for u in range(start, start + count)]
        for _ in range(50):
            pids = uid_pids(uids)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)
        return sorted(set(killed))


def make_venv(where: Path) -> Path:
    """A virtual environment of Debian's Python holding this run's isolate."""
    import isolate

    venv = where / "venv"
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    shutil.copytree(os.path.dirname(isolate.__file__), Path(site, "isolate"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        # Its metadata too: the version and files the packaging tests read.
        dist = importlib.metadata.distribution("isolate-linux")
        info = Path(str(dist.locate_file(""))) / f"isolate_linux-{dist.version}.dist-info"
        if info.is_dir():
            shutil.copytree(info, Path(site, info.name))
    # Byte-compiled as pip installs it: the user cannot write __pycache__ there, and would
    # compile every module at each start.
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(Path(site, "isolate"))],
                   check=True, capture_output=True)
    script = venv / "bin" / "isolate"
    script.write_text(_SCRIPT.format(python=venv / "bin" / "python"))
    script.chmod(0o755)
    # isolate-oci is a C program: it runs the Python of the isolate script next to it.
    shutil.copy2(Path(sys.executable).parent / "isolate-oci", venv / "bin" / "isolate-oci")
    for d in [where, *where.parents]:
        if str(d) in ("/", "/tmp"):
            break
        d.chmod(d.stat().st_mode | 0o055)
    return venv


@contextlib.contextmanager
def rootless_user(prefix: str = "isot", *, subids: bool = True) -> Iterator[RootlessUser]:
    """Make the user, its ranges, home, runtime directory and environment; remove them after.

    ``subids=False``: a user without /etc/subuid and /etc/subgid ranges (any useradd gave
    it are removed), as on a host where nobody added them."""
    name = f"{prefix}{os.getpid()}"
    made = time.time()
    where = Path(tempfile.mkdtemp(prefix=f"isolate-rootless-{os.getpid()}-", dir="/tmp"))
    where.chmod(0o755)
    home = where / "home"
    subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                    "--user-group", "--no-log-init", name], check=True, capture_output=True)
    user: RootlessUser | None = None
    try:
        pw = pwd.getpwnam(name)
        for kind, flag in (("uid", "--add-subuids"), ("gid", "--add-subgids")):
            if not subids:
                _drop_subid_lines(name, f"/etc/sub{kind}")
            elif not subid_lines(name, f"/etc/sub{kind}"):
                # login.defs without SUB_UID_COUNT: give it a range past every other one.
                start = max([s + c for line in Path(f"/etc/sub{kind}").read_text().splitlines()
                             if len(p := line.split(":")) == 3
                             for s, c in [(int(p[1]), int(p[2]))]] + [100000])
                subprocess.run(["usermod", flag, f"{start}-{start + 65535}", name],
                               check=True, capture_output=True)
        home.mkdir()
        os.chown(home, pw.pw_uid, pw.pw_gid)
        home.chmod(0o700)
        runtime = Path(f"/run/user/{pw.pw_uid}")
        made_run_user = not runtime.parent.exists()
        runtime.parent.mkdir(mode=0o755, exist_ok=True)
        runtime.mkdir(mode=0o700)
        os.chown(runtime, pw.pw_uid, pw.pw_gid)
        user = RootlessUser(name=name, uid=pw.pw_uid, gid=pw.pw_gid, home=home, runtime_dir=runtime,
                            venv=make_venv(where), subuid=subid_lines(name, "/etc/subuid"),
                            subgid=subid_lines(name, "/etc/subgid"))
        yield user
    finally:
        if user is not None:
            user.kill_all()
        subprocess.run(["userdel", name], capture_output=True)
        with contextlib.suppress(KeyError):
            import grp

            grp.getgrnam(name)
            subprocess.run(["groupdel", name], capture_output=True)
        for path in ("/etc/subuid", "/etc/subgid"):
            _drop_subid_lines(name, path)
        if user is not None:
            shutil.rmtree(user.runtime_dir, ignore_errors=True)
            if made_run_user:
                with contextlib.suppress(OSError):
                    user.runtime_dir.parent.rmdir()
        shutil.rmtree(where, ignore_errors=True)
        if user is not None:
            # What the user's programs made in /tmp and /dev/shm (isolate's owner registry when
            # no XDG_RUNTIME_DIR is set, pytest's temporary directories, tempfile's, podman's
            # locks, which it never removes): the user was made for this run, so what its uid
            # made there since is the run's.
            for entry in [*os.scandir("/tmp"), *os.scandir("/dev/shm")]:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                owned = st.st_uid == user.uid and st.st_ctime >= made - 1
                if owned and entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                elif owned:
                    os.unlink(entry.path)


if __name__ == "__main__":
    # Try it by hand: python tests/rootless.py id
    sys.path.insert(0, str(Path(__file__).parent))
    with rootless_user() as u:
        r = u.run(sys.argv[1:] or ["id"])
        print(r.returncode, r.stdout, r.stderr, sep="\n")
