"""What a ``ContainerConfig`` means on this host, resolved once per ``Container``.

``Container`` options become a ``ContainerConfig`` (``config_from_options``);
``Resolved`` then holds what follows from it and from what the caller joins:
the namespaces the container makes, its user as its own /etc/passwd says,
the capabilities it keeps (the OCI set loses CAP_SYS_CHROOT under chroot and
CAP_MKNOD without a user namespace or device rules), its id maps, its
``Isolation`` and the ``ProcessSpec`` each of its processes starts from.
Nothing here starts a process.
"""

from __future__ import annotations

import os

from . import _cache, _plans
from ._io import DEVNULL, PIPE, STDOUT
from ._planner import implied_namespaces, isolation, rootless_maps
from ._record import replace
from ._userdb import Identity, resolve, rootfs_db
from ._validate import FrozenMap, container_path
from .config import ContainerConfig, ProcessSpec, check_net
from .config import host_root_for as config_host_root_for
from .errors import ConfigError
from .idmap import IdMap
from .rootfs import RootFS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import IO, Any, TypeAlias

    from ._idalloc import Lease
    from .process import NamespaceLike

    Stdio: TypeAlias = "None | int | IO[Any]"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_ID_RANGE = 4294967295          # the whole uid space except (uid_t)-1
#: ``userns="identity"``: every id to itself (immutable, so shared).
IDENTITY_MAP = (IdMap(inside=0, outside=0, count=MAX_ID_RANGE),)


def _identity(maps: Sequence[IdMap] | None) -> bool:
    """Whether ``maps`` (None: none given) map every id to itself."""
    return maps is None or all(m.inside == m.outside for m in maps)


def _maps_to(maps: Sequence[IdMap] | None, inside: int, outside: int) -> bool:
    """Whether ``maps`` map ``inside`` to ``outside`` (None: the identity map's)."""
    if maps is None:
        return inside == outside
    return any(m.inside <= inside < m.inside + m.count and m.outside + inside - m.inside == outside
               for m in maps)


def guarded_profile(capabilities: frozenset[str] | None) -> Any:
    """The default seccomp profile for ``capabilities`` (None: all) without setuid/setgid
    files (``SeccompProfile.default(..., setid_files=False)``), one object per set."""
    from .seccomp import SeccompProfile

    return _cache.memo(("seccomp profile", "no setid files", capabilities),
                       lambda: SeccompProfile.default(capabilities, setid_files=False))


def default_maps(config: ContainerConfig, namespaces: frozenset[str]
                 ) -> tuple[tuple[IdMap, ...] | None, tuple[IdMap, ...] | None, Lease | None]:
    """The uid and gid maps of a container (``config.userns`` for those not given), and
    the block of ids held for it (``userns="auto"`` as root: release it at close)."""
    uid_map, gid_map = config.uid_map, config.gid_map
    if "user" not in namespaces or (uid_map is not None and gid_map is not None):
        return uid_map, gid_map, None  # type: ignore[return-value]
    from . import _idalloc

    euid, mode = os.geteuid(), config.userns
    lease = None
    if mode == "identity":
        if euid != 0:
            raise ConfigError("userns='identity' maps every host id to itself: it needs root "
                              "(give uid_map/gid_map, or userns='auto' or 'keep-id')")
        umap = gmap = IDENTITY_MAP
    elif mode == "keep-id":
        umap = (IdMap(inside=euid, outside=euid),)
        gmap = (IdMap(inside=os.getegid(), outside=os.getegid()),)
    elif not _idalloc.host_root():
        # An ordinary user, or root of a user namespace (unshare -r): spawn's default.
        return uid_map, gid_map, None  # type: ignore[return-value]
    else:
        lease = _idalloc.allocate()
        umap = (IdMap(inside=0, outside=lease.block.uid, count=_idalloc.BLOCK),)
        gmap = (IdMap(inside=0, outside=lease.block.gid, count=_idalloc.BLOCK),)
    return (umap if uid_map is None else uid_map,   # type: ignore[return-value]
            gmap if gid_map is None else gid_map, lease)


def host_root_for(user: Any, group: Any, groups: Any) -> tuple[RootFS, Identity | None]:
    """``RootFS.host()`` for a container's ``user`` (see ``config.host_root_for``)."""
    spec, ident = config_host_root_for(user, group, groups)
    return RootFS.from_spec(spec), ident


def effective_namespaces(config_ns: frozenset[str], join: Sequence[NamespaceLike],
                         has_root: bool) -> frozenset[str]:
    """The namespaces a container makes: ``config_ns`` less those it joins (checked)."""
    ns = set(config_ns)
    for item in join:
        t = getattr(item, "type", None)
        from ._plan import NSTYPES

        if t not in NSTYPES or not hasattr(item, "fileno"):
            raise ConfigError(f"join: {item!r} is not an open namespace")
        ns.discard(t)
        if "user" in ns and t not in ("user", "net"):
            # The joined namespace belongs to another user namespace, in which a
            # process born in a new user namespace holds no capability (setns: EPERM).
            # A network namespace is entered by the parent before the clone, so it
            # combines with a new user namespace (its lo must already be up).
            raise ConfigError(f"join: joining a {t} namespace needs 'user' left out of namespaces")
    # A root is built in the mount namespace the container has: a new one or, as runc
    # does, one it joins (whose root it then replaces for every process there).
    if has_root and "mnt" not in ns and not any(getattr(j, "type", None) == "mnt" for j in join):
        raise ConfigError("a rootfs needs the 'mnt' namespace (made, or joined)")
    return frozenset(ns)


def process_umask() -> int:
    """This process's umask, read without changing it (Linux 4.7+), else by setting it back."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def console_path(stdout: Stdio) -> bytes | None:
    """The terminal stdout is (bound on /dev/console), or None."""
    fd = 1 if stdout is None else (stdout if isinstance(stdout, int) else
                                   (stdout.fileno() if hasattr(stdout, "fileno") else -1))
    if not isinstance(fd, int) or fd < 0 or fd in (PIPE, DEVNULL, STDOUT):
        return None
    try:
        return os.fsencode(os.ttyname(fd)) if os.isatty(fd) else None
    except OSError:
        return None


def shifted_image(rootfs: RootFS | None) -> bool:
    """Whether ``rootfs`` is an image root (``RootFS.from_image``) of a store whose layers
    (any of them) keep their owners shifted into the caller's subordinate ids
    (``Store.is_shifted``): a container of it without root maps those ids."""
    image = getattr(rootfs, "image", None)
    if image is None or rootfs is None or not rootfs.spec.layers:
        return False
    store = image.store
    return any(store.is_shifted(d) for d in image.config.diff_ids)


class Resolved:
    """A container's settings as they apply here (see the module's doc)."""

    def __init__(self, config: ContainerConfig, rootfs: RootFS | None, join: Sequence[NamespaceLike],
                 group_limits: object, identity: Identity | None = None, resolved: bool = False) -> None:
        proc = config.process
        self.config = config
        self.rootfs = rootfs
        if not resolved and (proc.user is not None or proc.group is not None or proc.groups is not None):
            identity = resolve(rootfs_db(rootfs), proc.user, proc.group, proc.groups)
        self.identity = identity
        self.join = list(join)
        built = rootfs is not None and not rootfs.spec.in_place
        euid = os.geteuid()
        types = tuple(getattr(j, "type") for j in self.join)
        self.namespaces = implied_namespaces(
            effective_namespaces(frozenset(config.namespaces), self.join, built), types, euid)
        uid_map, gid_map, self.lease = default_maps(config, self.namespaces)
        if (self.lease is None and config.userns == "keep-id" and euid != 0 and identity is None
                and "user" in self.namespaces):
            # keep-id runs the container as the caller's own id (podman's keep-id).
            identity = self.identity = Identity(uid=euid, gid=os.getegid(), groups=(), home=None)
        if "user" in self.namespaces and euid != 0 and uid_map is None and gid_map is None:
            # Without root, a user other than root inside takes the caller's subordinate ids.
            ranges = rootless_maps(None if identity is None else identity.uid,
                                   None if identity is None else identity.gid, proc.groups, euid,
                                   os.getegid())
            if ranges is None and shifted_image(rootfs):
                # An image whose layers' owners are shifted into the caller's subordinate
                # ids: the same maps show them as the image has them, whatever the user.
                from .idmap import subid_maps

                umaps, gmaps = subid_maps(uid=euid, gid=os.getegid())
                ranges = tuple(umaps), tuple(gmaps)
            if ranges is not None:
                uid_map, gid_map = ranges
        self.uid_map, self.gid_map = uid_map, gid_map
        # A root caller whose container's root is not host root (its user namespace does not
        # map 0 to 0): the host binds are idmapped mounts (``isolate._idmount``), through
        # which container root may write as host root, so no file may become setuid or
        # setgid, nor get file capabilities (``guarded_profile``, and no CAP_SETFCAP).  A
        # caller without root needs no guard: nothing inside writes as host root.
        self.setid_guard = euid == 0 and "user" in self.namespaces and not _maps_to(uid_map, 0, 0)
        self.idmapped = (euid == 0 and "user" in self.namespaces
                         and not (_identity(uid_map) and _identity(gid_map)))
        try:
            self._resolve_rest(config, rootfs, proc, group_limits, euid)
        except BaseException:
            self.release(processes_gone=True)
            raise

    def release(self, *, processes_gone: bool) -> None:
        """Give back the block of ids ``userns="auto"`` took (see ``_idalloc.Lease``)."""
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release(processes_gone=processes_gone)

    def _resolve_rest(self, config: ContainerConfig, rootfs: RootFS | None, proc: ProcessSpec,
                      group_limits: object, euid: int) -> None:
        uid_map, gid_map = self.uid_map, self.gid_map
        types = tuple(getattr(j, "type") for j in self.join)
        pivot = config.pivot_root
        if pivot is None:
            pivot = not _plans.root_is_initramfs()
        self.root_mode = "none" if rootfs is None else (
            "pivot_root" if pivot and not rootfs.spec.in_place else "chroot")
        caps = proc.capabilities
        if caps == "default":
            from .seccomp import OCI_DEFAULT_CAPS

            caps = OCI_DEFAULT_CAPS
            if self.root_mode == "chroot":
                # Under chroot the host tree still exists below the root, and chroot(2)
                # itself is the way out (chroot a subdirectory, then '..' past the root).
                caps = caps - {"CAP_SYS_CHROOT"}
            if self.setid_guard:
                # A file capability written through an idmapped bind of a root-owned
                # directory would count on the host (a v3 xattr whose root is host uid 0).
                caps = caps - {"CAP_SETFCAP"}
            if "user" not in self.namespaces and getattr(group_limits, "devices", None) is None:
                # Outside a user namespace a device node made with mknod opens the
                # host's device (a disk, /dev/mem), and without device rules in its
                # cgroup nothing stops it, as runc's device cgroup would.
                caps = caps - {"CAP_MKNOD"}
        self.capabilities: frozenset[str] | None = caps  # type: ignore[assignment]
        # No process of the container can ever remount anything: without
        # CAP_SYS_ADMIN in its bounding set (and in no user namespace, where
        # the root would be its own), so a read-only root may be shared.
        self.root_unmountable = (proc.capability_sets is None and self.capabilities is not None
                                 and "CAP_SYS_ADMIN" not in self.capabilities
                                 and "user" not in self.namespaces and euid == 0)
        self.stage = _plans.stage_path(config.stage, rootfs is not None)
        if rootfs is None:
            self.cwd = os.fsencode(proc.cwd if proc.cwd is not None else "/")
        else:
            cwd = proc.cwd if proc.cwd is not None else "/"
            self.cwd = b"." if cwd == "/" else container_path(cwd, "cwd")
        self.isolation = isolation(namespaces=self.namespaces, join=types, uid_map=uid_map,
                                   gid_map=gid_map, hostname=config.hostname,
                                   domainname=config.domainname)
        # What every process of the container changes in ``config.process`` (see ``spec``).
        self._changes = {"cwd": None, "capabilities": self.capabilities, **self._credentials(None)}
        if proc.seccomp == "default" and self.setid_guard:
            self._changes["seccomp"] = guarded_profile(self.capabilities)
        self._key = (self.identity, frozenset(self._changes.items()))

    def _held_maps(self) -> bool:
        """Whether the id maps go through newuidmap/newgidmap (which allow setgroups)."""
        if "user" not in self.namespaces:
            return False
        umaps, gmaps = self.uid_map, self.gid_map
        return bool(umaps is not None and (len(umaps) > 1 or umaps[0].outside != os.geteuid())
                    or gmaps is not None and (len(gmaps) > 1 or gmaps[0].outside != os.getegid()))

    def _credentials(self, user: int | str | None) -> dict[str, Any]:
        """``user``, ``group`` and ``groups`` of a process: ``user`` (None: the container's)
        as the container's /etc/passwd and /etc/group say (see ``isolate._userdb``)."""
        proc = self.config.process
        ident = self.identity
        if user is not None:
            ident = resolve(rootfs_db(self.rootfs), user, proc.group, proc.groups)
        # A caller without root in a new user namespace of its own ids cannot set groups
        # (the kernel denies setgroups there, CVE-2014-8989), unless it asked for some.
        settable = os.geteuid() == 0 or proc.groups is not None or self._held_maps()
        if ident is None:
            # Root of the container's own user namespace, for a process that joins it as
            # well (exec): the caller's host uid may be one its map leaves out (userns="auto").
            root = 0 if "user" in self.namespaces else None
            return {"user": root, "group": None, "groups": () if settable else None}
        return {"user": ident.uid, "group": ident.gid, "groups": ident.groups if settable else None}

    def default_env(self) -> Mapping[str, str]:
        """PATH, HOME (root's /root, else /) and the caller's TERM (one object per value)."""
        home = "/root" if self.identity is None or self.identity.uid == 0 else "/"
        term = os.environ.get("TERM")

        def make() -> Mapping[str, str]:
            out = {"PATH": DEFAULT_PATH, "HOME": home}
            if term is not None:
                out["TERM"] = term
            env: Any = ProcessSpec(env=out).env     # checked once: a replace() does not again
            return env  # type: ignore[no-any-return]

        return _cache.memo(("default env", home, term), make)

    def spec(self, argv: Sequence[Any], *, env: Mapping[str, str] | None, user: int | str | None = None,
             tty: bool = False, new_session: bool | None = None) -> ProcessSpec:
        """The ``ProcessSpec`` of one of the container's processes (one object for equal
        arguments: the plan cache then compares it by identity)."""
        if user is not None:
            # Looked up in the container's /etc/passwd each time, as it may have changed.
            return self._spec(argv, env=env, user=user, tty=tty, new_session=new_session)
        try:
            key = ("container process", self.config.process, self._key, tuple(argv),
                   os.environ.get("TERM") if env is None else _frozen_env(env), bool(tty),
                   new_session)
            hash(key)
        except TypeError:
            return self._spec(argv, env=env, user=user, tty=tty, new_session=new_session)
        return _cache.memo(key, lambda: self._spec(argv, env=env, user=user, tty=tty,
                                                   new_session=new_session))

    def _spec(self, argv: Sequence[Any], *, env: Mapping[str, str] | None, user: int | str | None,
              tty: bool, new_session: bool | None) -> ProcessSpec:
        base = self.config.process
        changes: dict[str, Any] = {**self._changes, "args": argv}
        if env is not None:
            changes["env"] = env
        elif base.env is None:
            changes["env"] = self.default_env()
        if user is not None:
            changes.update(self._credentials(user))
        if tty:
            changes["tty"] = True
        if new_session is not None and new_session != base.new_session:
            changes["new_session"] = new_session
        return replace(base, **changes)


def _frozen_env(env: Mapping[str, str]) -> object:
    """``env`` as a key: a FrozenMap as it is, a dict as its items (in order: envp keeps it)."""
    if isinstance(env, FrozenMap):
        return env
    return ("items", tuple(env.items()))


def image_defaults(config: Any, *, env: Mapping[str, str] | None, cwd: str, user: int | str | None,
                   group: int | str | None, make_cwd: bool
                   ) -> tuple[tuple[str, ...], Mapping[str, str] | None, str, int | str | None,
                              int | str | None, bool]:
    """A ``Container``'s options with an image's config (``ImageConfig``) filling what the
    caller left unsaid, as docker and podman do: args are Entrypoint + Cmd; the image's Env
    under the caller's ``env`` (or under PATH, HOME and TERM when none is given);
    WorkingDir for a ``cwd`` of ``/`` (made when the image lacks it); User (``name``,
    ``uid``, ``name:group``) when no ``user`` is given."""
    args = tuple(config.entrypoint or ()) + tuple(config.cmd or ())
    if user is None and config.user:
        name, _, grp = config.user.partition(":")
        user = int(name) if name.isdigit() else name
        if group is None and grp:
            group = int(grp) if grp.isdigit() else grp
    image_env: dict[str, str] = {}
    for item in config.env or ():
        k, sep, v = item.partition("=")
        if sep and k:
            image_env[k] = v
    if env is None:
        home = "/root" if user in (None, 0, "root") else "/"
        base = {"PATH": DEFAULT_PATH, "HOME": home}
        term = os.environ.get("TERM")
        if term is not None:
            base["TERM"] = term
        env = {**base, **image_env}
    else:
        env = {**image_env, **env}
    if cwd == "/" and config.working_dir:
        cwd, make_cwd = config.working_dir, True
    return args, env, cwd, user, group, make_cwd


def config_from_options(*, rootfs: RootFS | None | str, namespaces: object, net: object,
                        userns: object, uid_map: Sequence[IdMap] | None,
                        gid_map: Sequence[IdMap] | None, limits: object, name: str | None, hostname: object, env: Mapping[str, str] | None,
                        cwd: str, user: int | str | None, group: int | str | None,
                        groups: Sequence[int | str] | None, capabilities: object,
                        capability_sets: object, no_new_privs: bool, seccomp: object, rlimits: object,
                        umask: int | None, die_with_parent: bool, pivot_root: bool | None, stage: str,
                        make_cwd: bool, new_session: bool,
                        join: list[NamespaceLike], publish: object = (),
                        dns: object = None) -> tuple[ContainerConfig, RootFS | None, Identity | None]:
    """``Container``'s keyword options as a ``ContainerConfig``, the ``RootFS`` to build on,
    and the user's identity (``join`` gains ``net`` when that is a namespace)."""
    ident: Identity | None = None
    if isinstance(rootfs, str):
        if rootfs != "host":
            raise ConfigError(f"rootfs must be a RootFS, 'host' or None, got {rootfs!r}")
        rootfs, ident = host_root_for(user, group, groups)
    elif rootfs is not None and not isinstance(rootfs, RootFS):
        raise ConfigError(f"rootfs must be a RootFS, 'host' or None, got {rootfs!r}")
    args: Sequence[str] = ()
    image = getattr(rootfs, "image", None)
    if image is not None:
        args, env, cwd, user, group, make_cwd = image_defaults(
            image.config, env=env, cwd=cwd, user=user, group=group, make_cwd=make_cwd)
    if ident is None and (user is not None or group is not None or groups is not None):
        ident = resolve(rootfs_db(rootfs), user, group, groups)
    if isinstance(namespaces, str):
        raise ConfigError(f"namespaces must be a collection of names, got {namespaces!r}")
    if not isinstance(net, str) and getattr(net, "type", None) == "net" and hasattr(net, "fileno"):
        join.append(net)     # type: ignore[arg-type]  # e.g. a PooledNetns: joined instead of created
        net = "none"
    net = check_net(net)
    ns = set(namespaces)  # type: ignore[call-overload]
    if net == "host":
        ns.discard("net")
    # Joined types are not made; the hostname's default follows the namespaces made.
    made = effective_namespaces(frozenset(ns), join, rootfs is not None and not rootfs.spec.in_place)
    process = ProcessSpec(args=args, env=env, cwd=cwd, user=user, group=group, groups=groups,
                          capabilities=capabilities,  # type: ignore[arg-type]
                          capability_sets=capability_sets,  # type: ignore[arg-type]
                          no_new_privs=no_new_privs, seccomp=seccomp,  # type: ignore[arg-type]
                          rlimits=rlimits,  # type: ignore[arg-type]
                          umask=umask, die_with_parent=die_with_parent, new_session=new_session)
    if hostname is not None and not isinstance(hostname, str):
        raise ConfigError(f"hostname must be a string or None, got {hostname!r}")
    config = ContainerConfig(rootfs=rootfs.spec if rootfs is not None else None, process=process,
                             namespaces=made, net=net, userns=userns,  # type: ignore[arg-type]
                             publish=publish, dns=dns,  # type: ignore[arg-type]
                             uid_map=uid_map, gid_map=gid_map,
                             limits=limits, name=name, hostname=hostname,  # type: ignore[arg-type]
                             pivot_root=pivot_root, stage=stage, make_cwd=make_cwd)
    return config, rootfs, ident
