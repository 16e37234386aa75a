"""A ``Spec`` to a ``ContainerConfig``, listing what cannot be applied yet.

::

    spec, bundle = load_bundle(path)
    with spec_to_config(spec, bundle) as conv:
        print(conv.unsupported)          # e.g. ('hooks: not run yet', ...)
        with Container(conv.config, join=conv.join) as c:
            c.run()                      # the config's process.args

Nothing is dropped silently: every field that has an effect in the OCI
spec but no equivalent in ``Container`` yet is named in
``Conversion.unsupported`` (JSON path and why), so a caller can refuse the
config (``strict=True``) or warn.  Conversion opens the namespace files of
``linux.namespaces[].path`` (``Conversion.join``); ``Conversion.close()``
closes them.  ``process_spec`` is the one conversion of a ``process``
section: ``create`` and ``exec`` (and the hooks run inside) share it.
"""

from __future__ import annotations

import errno as _errno
import os
import warnings
from pathlib import Path

from .._record import dataclass, field
from ..config import ContainerConfig, ProcessSpec
from ..errors import ConfigError, UnsupportedError
from . import spec as S
from ._schema import show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from ..cgroup import Limits
    from ..config import RootSpec
    from ..idmap import IdMap
    from ..namespace import Namespace
    from ..seccomp import SeccompProfile
    from .apply import DeviceNode, Sysctl

__all__ = ["Conversion", "spec_to_config", "convert_bundle", "process_spec", "refuse_unapplied",
           "RUNTIME_APPLIED", "spec_to_container_options"]

# Mounts a RootFS makes itself (proc, sys, dev, devpts, shm): OCI configs list
# them, and they map to RootFS(proc=, sys=, dev=) and mount_options() rather than to binds.
_PROC = ("/proc", "proc")
_SYS = ("/sys", "sysfs")
_DEV = ("/dev", "tmpfs")
_DEV_SUBMOUNTS = {"/dev/pts": "devpts", "/dev/shm": "tmpfs"}
# mount(8) flag options as RootFS keywords; a later option overrides an earlier one.
_FLAGS = {"ro": ("readonly", True), "rw": ("readonly", False), "nosuid": ("nosuid", True),
          "suid": ("nosuid", False), "nodev": ("nodev", True), "dev": ("nodev", False),
          "noexec": ("noexec", True), "exec": ("noexec", False)}
_ATIMES = frozenset({"relatime", "noatime", "strictatime"})
# Options with nothing left to apply: what a bind is, private propagation (every
# mount of a container is private), devpts's newinstance and ptmxmode 0666 (always so).
_HARMLESS = frozenset({"bind", "rbind", "rprivate", "private", "newinstance", "ptmxmode=0666",
                       "ptmxmode=666"})
_SCMP = {"SCMP_ACT_ALLOW": "allow", "SCMP_ACT_ERRNO": "errno", "SCMP_ACT_KILL": "kill",
         "SCMP_ACT_KILL_PROCESS": "kill_process", "SCMP_ACT_KILL_THREAD": "kill_thread",
         "SCMP_ACT_TRAP": "trap", "SCMP_ACT_LOG": "log"}
_CMP = {"SCMP_CMP_NE": "ne", "SCMP_CMP_LT": "lt", "SCMP_CMP_LE": "le", "SCMP_CMP_EQ": "eq",
        "SCMP_CMP_GE": "ge", "SCMP_CMP_GT": "gt", "SCMP_CMP_MASKED_EQ": "masked_eq"}
_NATIVE_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "i686": "SCMP_ARCH_X86",
                "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}


@dataclass(slots=True)
class Conversion:
    """The result of ``spec_to_config``.

    ``config``: the ``ContainerConfig`` (its ``process.args`` the config's);
    ``join``: the namespaces opened for ``linux.namespaces[].path``, to give
    ``Container(config, join=...)``; ``args``: the process's argv;
    ``unsupported``: one line per field that is not applied (``"path: why"``).
    ``devices``, ``sysctl``, ``oom_score_adj`` and ``personality``: ``linux.devices``,
    ``linux.sysctl``, ``process.oomScoreAdj`` and ``linux.personality``'s domain
    (a personality(2) number) checked, which ``Container`` does not apply: the
    runtime does (``isolate.oci.apply``).
    Owns ``join``: ``close()`` (or ``with``) releases them.
    """

    config: ContainerConfig
    join: tuple[Namespace, ...]
    args: tuple[str, ...]
    unsupported: tuple[str, ...]
    devices: tuple[DeviceNode, ...] = ()
    sysctl: tuple[Sysctl, ...] = ()
    oom_score_adj: int | None = None
    personality: int | None = None
    _open: list[Namespace] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Close the namespace files opened for ``linux.namespaces[].path``; idempotent."""
        while self._open:
            self._open.pop().close()

    def __enter__(self) -> Conversion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def options(self) -> dict[str, Any]:
        """Deprecated: ``Container`` keyword options (``Container(self.config, join=self.join)``
        replaces ``Container(**self.options)``)."""
        warnings.warn("Conversion.options is deprecated: use Container(conv.config, join=conv.join)",
                      DeprecationWarning, stacklevel=2)
        from ..rootfs import RootFS

        c, p = self.config, self.config.process
        o: dict[str, Any] = dict(
            rootfs=RootFS.from_spec(c.root) if c.root is not None else None,
            namespaces=c.namespaces, net=c.net, join=self.join, hostname=c.hostname, env=p.env,
            cwd=p.cwd, user=p.user, group=p.group, groups=p.groups, capabilities=p.capabilities,
            capability_sets=p.capability_sets, no_new_privs=p.no_new_privs, seccomp=p.seccomp,
            rlimits=p.rlimits, umask=p.umask)
        for name in ("uid_map", "gid_map", "limits"):
            if getattr(c, name) is not None:
                o[name] = getattr(c, name)
        return o


class _Out:
    def __init__(self) -> None:
        self.unsupported: list[str] = []
        self.devices: tuple[DeviceNode, ...] = ()
        self.sysctl: tuple[Sysctl, ...] = ()

    def skip(self, path: str, why: str) -> None:
        self.unsupported.append(f"{path}: {why}")


def spec_to_config(spec: S.Spec, bundle: str | os.PathLike[str]) -> Conversion:
    """Map ``spec`` (from the bundle directory ``bundle``) onto a ``ContainerConfig``.

    Raises ``ConfigError`` (naming the JSON path) for values that are valid
    JSON but that the host cannot satisfy (a missing root directory, a
    namespace path that is not a namespace, a cpuset outside the host...).
    """
    out = _Out()
    owned: list[Namespace] = []
    try:
        config = _convert(spec, Path(os.path.abspath(os.fspath(bundle))), out, owned)
    except BaseException:
        for ns in owned:
            ns.close()
        raise
    oom = spec.process.oom_score_adj if spec.process is not None else None
    pers = spec.linux.personality if spec.linux is not None else None
    return Conversion(config=config, join=tuple(owned), args=tuple(config.process.args),  # type: ignore[arg-type]
                      unsupported=tuple(out.unsupported), devices=out.devices, sysctl=out.sysctl,
                      oom_score_adj=oom, personality=_personality(pers), _open=list(owned))


def spec_to_container_options(spec: S.Spec, bundle: str | os.PathLike[str]) -> Conversion:
    """Deprecated name of ``spec_to_config`` (its ``Conversion.options`` is deprecated too)."""
    warnings.warn("spec_to_container_options is deprecated: use spec_to_config", DeprecationWarning,
                  stacklevel=2)
    return spec_to_config(spec, bundle)


#: What isolate-oci applies itself rather than through the ``Container`` a
#: ``Conversion`` makes: the cgroup path (``runtime.create``), and the terminal and
#: its size (the console socket).
RUNTIME_APPLIED = ("linux.cgroupsPath:", "process.terminal:", "process.consoleSize:")


def refuse_unapplied(unsupported: tuple[str, ...] | list[str], what: str) -> None:
    """Raise ``UnsupportedError`` naming each field of ``unsupported`` the runtime does
    not apply itself (the spec: a runtime that cannot apply a property must fail)."""
    left = [line for line in unsupported if not line.startswith(RUNTIME_APPLIED)]
    if left:
        raise UnsupportedError(f"{what} asks for what isolate-oci cannot apply: " + "; ".join(left))


def convert_bundle(path: str | os.PathLike[str], *, strict: bool = False) -> Conversion:
    """The ``Conversion`` of the bundle at ``path`` (``<path>/config.json``).

    ``strict=True`` raises ``UnsupportedError`` listing every field that
    would not be applied.  The caller closes it (it holds the namespaces to join).
    """
    spec, bundle = S.load_bundle(path)
    conv = spec_to_config(spec, bundle)
    if strict and conv.unsupported:
        conv.close()
        raise UnsupportedError("config.json uses what isolate cannot apply yet: "
                               + "; ".join(conv.unsupported))
    return conv


def _convert(spec: S.Spec, bundle: Path, out: _Out, owned: list[Namespace]) -> ContainerConfig:
    linux = spec.linux or S.Linux()
    create, net, uid_map, gid_map = _namespaces(linux, out, owned)
    process = process_spec(spec.process, linux.seccomp, out)
    if process.groups and "user" in create and os.geteuid() != 0 and _own_ids(uid_map, gid_map):
        raise ConfigError(f"process.user.additionalGids: {show(list(process.groups))} cannot be set "
                          "without root in a user namespace that maps only the caller's own ids (the "
                          "kernel then denies setgroups); map ranges of /etc/subgid in linux.gidMappings")
    # hooks: run by the runtime (runtime.create, start, delete), not by Container.
    joined = {ns.type for ns in owned}
    rootfs = _rootfs(spec, linux, bundle, create, joined, out)
    limits = _resources(linux, out) if linux.resources is not None else None
    if linux.cgroups_path:
        out.skip("linux.cgroupsPath", f"not applied yet: {show(linux.cgroups_path)}")
    from .rootless import in_user_namespace

    # A user namespace of its own, or this runtime's (podman rootless): mknod is refused.
    userns = "user" in create or "user" in joined or in_user_namespace()
    from .apply import devices_of, sysctls_of

    out.devices = devices_of(linux.devices or (), rootfs is not None, userns)
    out.sysctl = sysctls_of(linux.sysctl or {}, create | joined)
    _refused(linux)
    # The hostname always given: a config without one keeps the name its uts namespace
    # starts with (the host's), as runc does, not Container's default for a named container.
    return ContainerConfig(rootfs=rootfs, process=process, namespaces=create, net=net,
                           uid_map=uid_map, gid_map=gid_map, limits=limits,
                           hostname=spec.hostname or None, domainname=spec.domainname or None)


def _own_ids(uid_map: tuple[IdMap, ...] | None, gid_map: tuple[IdMap, ...] | None) -> bool:
    """Whether the maps are the caller's ids alone, written without newuidmap/newgidmap."""
    return ((uid_map is None or (len(uid_map) == 1 and uid_map[0].outside == os.geteuid()))
            and (gid_map is None or (len(gid_map) == 1 and gid_map[0].outside == os.getegid())))


def _personality(pers: S.Personality | None) -> int | None:
    from .apply import PERSONALITY_DOMAINS

    return None if pers is None else PERSONALITY_DOMAINS[pers.domain]


def _refused(linux: S.Linux) -> None:
    """Refuse what isolate cannot apply here (the spec: a runtime that cannot apply
    a property fails), each with one line naming the field."""
    if linux.mount_label:
        # runc passes it as a context= mount option, which the kernel refuses
        # without SELinux (EINVAL); isolate applies no SELinux labels at all.
        raise UnsupportedError(f"linux.mountLabel: SELinux mount labels are not supported, got "
                               f"{show(linux.mount_label)}")
    pers = linux.personality
    if pers is not None and pers.flags:
        # runc 1.1 ignores linux.personality entirely; runc 1.2 and crun set the domain
        # with personality(2) (Conversion.personality, applied by the runtime) and runc
        # ignores the flags.  The spec's words (the runtime applies them) over silence.
        raise UnsupportedError(f"linux.personality.flags: personality flags are not supported, got "
                               f"{show(list(pers.flags))}")
    if linux.time_offsets:
        raise UnsupportedError(f"linux.timeOffsets: time namespace offsets are not supported, got "
                               f"{show(_json(linux.time_offsets))}")
    if linux.intel_rdt is not None:
        raise UnsupportedError(f"linux.intelRdt: Intel RDT (resctrl) is not supported, got "
                               f"{show(_json(linux.intel_rdt))}")


def _json(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


def _namespaces(linux: S.Linux, out: _Out, owned: list[Namespace]
                ) -> tuple[frozenset[str], Literal["none", "host"], tuple[IdMap, ...] | None,
                           tuple[IdMap, ...] | None]:
    """(the namespaces made, Container's ``net``, uid_map, gid_map); joined ones go to ``owned``."""
    create: set[str] = set()
    for i, entry in enumerate(linux.namespaces or ()):
        name = S.NAMESPACE_TYPES[entry.type]
        if entry.path is None:
            create.add(name)
            continue
        from ..namespace import Namespace as _Namespace

        try:
            handle = _Namespace.from_path(entry.path, type=name)
        except ConfigError as e:
            raise ConfigError(f"linux.namespaces[{i}].path: {e}") from None
        owned.append(handle)
        if name == "mnt" and _is_runtime_mnt(handle.fileno()):
            # The root is built in a joined mount namespace and replaces its root (pivot_root),
            # as runc does: never in the runtime's own, which is the host's.
            raise ConfigError(f"linux.namespaces[{i}].path: {show(entry.path)} is the runtime's own "
                              "mount namespace (or init's): the container's root would replace the host's")
    # Container's own switch for the network: "none" makes a namespace with lo up.
    net: Literal["none", "host"] = "none" if "net" in create else "host"
    uid_map = _idmaps(linux.uid_mappings) if linux.uid_mappings else None
    gid_map = _idmaps(linux.gid_mappings) if linux.gid_mappings else None
    return frozenset(create), net, uid_map, gid_map


def _is_runtime_mnt(fd: int) -> bool:
    """Whether the mount namespace open at ``fd`` is this process's or init's."""
    st = os.fstat(fd)
    for path in ("/proc/self/ns/mnt", "/proc/1/ns/mnt"):
        try:
            other = os.stat(path)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def _idmaps(maps: tuple[S.IdMapping, ...]) -> tuple[IdMap, ...]:
    from ..idmap import IdMap

    return tuple(IdMap(inside=m.container_id, outside=m.host_id, count=m.size) for m in maps)


def process_spec(proc: S.Process | None, seccomp: S.Seccomp | None, out: _Out | None = None,
                 *, extra_caps: tuple[str, ...] = (), umask: int | None = 0o022) -> ProcessSpec:
    """The ``ProcessSpec`` of an OCI ``process`` section with the config's ``linux.seccomp``.

    ``extra_caps`` (exec ``--cap``) are added to the bounding, effective and
    permitted sets; ``umask``: the one to set when ``process.user.umask`` is
    absent.  What is not applied is reported to ``out``.  Raises
    ``ConfigError`` for values the host cannot apply (an unknown capability).
    """
    out = out or _Out()
    profile = _seccomp(seccomp, out)
    if proc is None:
        out.skip("process", "absent: a container needs a process to start")
        return ProcessSpec(seccomp=profile)
    env: dict[str, str] = {}
    for entry in proc.env or ():
        k, _, v = entry.partition("=")
        env[k] = v
    user = proc.user or S.User(uid=0, gid=0)
    if user.umask is not None:
        if user.umask > 0o777:
            out.skip("process.user.umask", f"only permission bits are applied, got {oct(user.umask)}")
        umask = user.umask & 0o777
    caps, sets = _capabilities(proc.capabilities)
    if extra_caps:
        for name in ("bounding", "effective", "permitted"):
            sets[name] = sorted(set(sets.get(name, ())) | set(extra_caps))
    for key, value in (("process.terminal", proc.terminal), ("process.consoleSize", proc.console_size)):
        if value:
            out.skip(key, f"not applied yet: {show(_json(value))}")
    # No LSM here, and isolate applies none: refused, as runc does without them (it
    # refuses an SELinux label when SELinux is off, and fails writing an AppArmor
    # profile to /proc/self/attr/exec when AppArmor is off).
    if proc.apparmor_profile:
        raise UnsupportedError(f"process.apparmorProfile: AppArmor profiles are not supported, got "
                               f"{show(proc.apparmor_profile)}")
    if proc.selinux_label:
        raise UnsupportedError(f"process.selinuxLabel: SELinux labels are not supported, got "
                               f"{show(proc.selinux_label)}")
    # process.oomScoreAdj (the parser checks -1000..1000) is applied by the runtime (Conversion.oom_score_adj).
    # OCI: the process has exactly additionalGids as supplementary groups.  Without
    # root, or where setgroups is denied, none are set unless some are asked for (runc).
    from .rootless import may_setgroups

    groups = tuple(user.additional_gids or ()) if user.additional_gids or may_setgroups() else None
    return ProcessSpec(args=tuple(proc.args or ()), env=env, cwd=proc.cwd, user=user.uid,
                       group=user.gid, groups=groups, umask=umask,
                       capabilities=caps, capability_sets=sets,
                       no_new_privs=bool(proc.no_new_privileges),
                       rlimits={r.type.lower(): (r.soft, r.hard) for r in proc.rlimits or ()} or None,
                       seccomp=profile)


def _capabilities(caps: S.Capabilities | None) -> tuple[list[str], dict[str, list[str]]]:
    """The bounding set (``capabilities``) and the five sets exactly (``capability_sets``)."""
    if caps is None:
        # No process.capabilities: every set is empty (runc drops them all).
        return [], {}
    sets = {name: sorted(set(getattr(caps, name) or ())) for name in
            ("bounding", "effective", "permitted", "inheritable", "ambient")}
    # Container's single set (its chroot and default-seccomp logic) is the bounding set;
    # the process gets each of the five exactly.
    return sets["bounding"], sets


def _rootfs(spec: S.Spec, linux: S.Linux, bundle: Path, create: frozenset[str], joined: set[str],
            out: _Out) -> RootSpec | None:
    from ..rootfs import RootFS

    assert spec.root is not None
    root = spec.root_path(bundle)
    if "mnt" not in create and "mnt" not in joined:
        # No mount namespace: runc chroots into root.path.  It would make the config's mounts,
        # masks and read-only root in the runtime's own namespace, for every process there:
        # refused instead (runc refuses masked and read-only paths there too).
        for key, value in (("mounts", spec.mounts), ("linux.maskedPaths", linux.masked_paths),
                           ("linux.readonlyPaths", linux.readonly_paths),
                           ("root.readonly", spec.root.readonly)):
            if value:
                raise ConfigError(f"{key}: needs a mount namespace (linux.namespaces has no mount), "
                                  f"got {show(_json(value))}")
        if linux.rootfs_propagation not in (None, "", "private", "rprivate"):
            raise ConfigError(f"linux.rootfsPropagation: needs a mount namespace (linux.namespaces has "
                              f"no mount), got {show(linux.rootfs_propagation)}")
        try:
            return RootFS.as_is(root).spec
        except ConfigError as e:
            raise ConfigError(f"root.path: {e}") from None
    # A joined mount namespace (by path) gets the root built in it, as runc does: root.path
    # and the bind sources are found there, and its root becomes the container's.
    mounts = list(spec.mounts or ())
    kinds = {(m.destination, m.type) for m in mounts}
    proc = _PROC in kinds
    sys_ = _SYS in kinds or any(m.destination == "/sys" and "rbind" in (m.options or ()) for m in mounts)
    dev = _DEV in kinds
    try:
        # The config's own lists, exactly (runc): none when they are absent or empty.
        rootfs = RootFS.from_directory(root, readonly=bool(spec.root.readonly), proc=proc, sys=sys_,
                                       dev=dev, oci_masks=False, idmap=False)
    except ConfigError as e:
        raise ConfigError(f"root.path: {e}") from None
    for key, given, add in (("linux.maskedPaths", linux.masked_paths, rootfs.mask_paths),
                            ("linux.readonlyPaths", linux.readonly_paths, rootfs.readonly_paths)):
        for j, p in enumerate(given or ()):
            try:
                add(p)
            except ConfigError as e:
                raise ConfigError(f"{key}[{j}]: {e}") from None
    # linux.rootfsPropagation, set on the root once the container is in it.  runc 1.1.5 and
    # the spec part here: runc sets it on / before it binds the root and pivots, so the
    # container's / ends private whatever was asked (and runbindable fails its bind); the
    # spec says it "sets the rootfs's mount propagation", and runtime-tools checks it on /.
    # We follow the spec (as crun does).  Every mount of a new namespace is private from
    # the start (isolate makes it so before any mount): private and rprivate need nothing.
    prop = linux.rootfs_propagation or None
    if prop is not None and prop not in ("private", "rprivate"):
        try:
            rootfs.propagation(prop)
        except ConfigError:
            raise ConfigError(f"linux.rootfsPropagation: {show(prop)} is not a propagation type "
                              f"(shared, slave, private, unbindable, or those with an r before)") from None
    placed: set[str] = set()
    for i, m in enumerate(mounts):
        builtin = _mount(i, m, rootfs, bundle, out, proc=proc, sys_=sys_, dev=dev)
        if builtin in ("/dev/pts", "/dev/shm") and "/dev" not in placed:
            continue     # listed before /dev: made with it, on the directories it holds
        if builtin is not None and builtin not in placed:
            # In the config's order, as runc makes them (/proc, /sys and /dev included).
            rootfs.place(builtin)
            placed.add(builtin)
    return rootfs.spec


def _mount(i: int, m: S.Mount, rootfs: Any, bundle: Path, out: _Out, *, proc: bool, sys_: bool,
           dev: bool) -> str | None:
    """Add ``mounts[i]`` to ``rootfs``; returns the target of a mount the RootFS makes itself
    (/proc, /sys, /dev, /dev/pts, /dev/shm) to place, else None."""
    path = f"mounts[{i}]"
    options = list(m.options or ())
    for key, maps in (("uidMappings", m.uid_mappings), ("gidMappings", m.gid_mappings)):
        if maps:
            # An idmapped mount (mount_setattr MOUNT_ATTR_IDMAP, as crun makes it) needs a user
            # namespace holding the mapping; isolate has none to give: refused, never dropped.
            raise UnsupportedError(f"{path}.{key}: idmapped mounts are not supported, got "
                                   f"{show(_json(maps))}")
    # Flags absent from the options are off, as runc mounts them.
    kw: dict[str, Any] = {"readonly": False, "nosuid": False, "nodev": False, "noexec": False}
    data: dict[str, str] = {}
    extra: list[str] = []
    copy_up = False
    for o in options:
        if o in _FLAGS:
            kw[_FLAGS[o][0]] = _FLAGS[o][1]
        elif o in _ATIMES:
            kw["atime"] = o
        elif o in _HARMLESS:
            continue
        elif o == "tmpcopyup":
            copy_up = True     # a tmpfs's (below); reported on any other mount
        elif "=" in o and o.split("=", 1)[0] in ("size", "mode", "gid"):
            data[o.split("=", 1)[0]] = o.split("=", 1)[1]
        else:
            extra.append(o)

    def take(*keys: str) -> dict[str, Any]:
        """The data options ``keys`` as RootFS arguments; the others are reported."""
        got: dict[str, Any] = {}
        for k, v in data.items():
            if k not in keys:
                extra.append(f"{k}={v}")
            elif k == "size":
                got[k] = v
            else:
                try:
                    got[k] = int(v, 8) if k == "mode" else int(v)
                except ValueError:
                    raise ConfigError(f"{path}.options: bad {m.type} {k} {show(v)}") from None
        return got

    def no_atime() -> None:
        # Binds keep their source's atime flags; relatime is the usual one.
        atime = kw.pop("atime", None)
        if atime not in (None, "relatime"):
            extra.append(atime)

    builtin = None
    if (m.destination, m.type) == _PROC:
        builtin, args = "/proc", take()
    elif (m.destination, m.type) == _SYS or (m.destination == "/sys" and sys_):
        builtin, args = "/sys", take()
    elif (m.destination, m.type) == _DEV:
        builtin, args = "/dev", take("size", "mode")
    elif dev and m.type is not None and _DEV_SUBMOUNTS.get(m.destination) == m.type:
        # RootFS makes /dev/pts and /dev/shm with /dev.
        builtin, args = m.destination, take("mode", "gid") if m.type == "devpts" else take("size", "mode")
    is_bind = m.type == "bind" or "bind" in options or "rbind" in options
    try:
        if builtin is not None:
            rootfs.mount_options(builtin, **kw, **args)
        elif is_bind:
            if not m.source:
                raise ConfigError(f"{path}.source: a bind mount needs a source")
            src = m.source if m.source.startswith("/") else str(bundle / m.source)
            no_atime()
            take()
            rootfs.bind(src, m.destination, recursive="rbind" in options, **kw)
        elif m.type == "tmpfs":
            args = take("size", "mode")
            # The config's source, as runc mounts it (mountinfo shows it; runtime-tools checks it).
            # tmpcopyup (podman's --tmpfs and --read-only): the image's directory copied in.
            rootfs.tmpfs(m.destination, source=m.source or "tmpfs", copy_up=copy_up, **kw, **args)
            copy_up = False
        elif m.type == "mqueue":
            no_atime()
            take()
            rootfs.mqueue(m.destination, **kw)
        elif m.type in ("cgroup", "cgroup2"):
            no_atime()
            take()
            rootfs.cgroupfs(m.destination, **kw)
        else:
            out.skip(path, f"mounts of type {show(m.type)} are not supported yet "
                     f"(at {show(m.destination)})")
            return None
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(path) else f"{path}: {msg}") from None
    if copy_up:
        extra.append("tmpcopyup")
    if extra:
        where = f" on {m.destination}" if builtin is not None else ""
        out.skip(f"{path}.options", f"not applied{where}: {show(sorted(extra))}")
    return builtin


def _seccomp(sc: S.Seccomp | None, out: _Out) -> SeccompProfile | None:
    if sc is None:
        return None      # runc applies no filter without linux.seccomp
    from .._plans import profile_program
    from ..seccomp import ArgCmp, SeccompProfile, SyscallRule

    base = "linux.seccomp"
    default = _SCMP.get(sc.default_action)
    if default is None:
        raise UnsupportedError(f"{base}.defaultAction: {sc.default_action} is not supported "
                               f"(supported: {', '.join(sorted(_SCMP))})")
    # As runc: libseccomp adds each architecture to the filter (the native one is
    # always there), and a rule's syscall names are resolved on each.
    archs = []
    for i, name in enumerate(sc.architectures or ()):
        if not name.startswith("SCMP_ARCH_") or not name[10:].replace("_", "").isalnum():
            raise UnsupportedError(f"{base}.architectures[{i}]: unknown architecture {show(name)}")
        archs.append(name[10:].lower())
    for key, value in (("flags", sc.flags), ("listenerPath", sc.listener_path),
                       ("listenerMetadata", sc.listener_metadata)):
        if value:
            out.skip(f"{base}.{key}", f"not applied yet: {show(_json(value))}")
    rules = []
    for i, r in enumerate(sc.syscalls or ()):
        action = _SCMP.get(r.action)
        if action is None:
            # Dropping a rule could let through what it was meant to stop: refuse.
            raise UnsupportedError(f"{base}.syscalls[{i}].action: {r.action} is not supported "
                                   f"(supported: {', '.join(sorted(_SCMP))})")
        args = []
        for a in r.args or ():
            if a.op == "SCMP_CMP_MASKED_EQ":
                # OCI/runc: value is the mask, valueTwo the expected result.
                args.append(ArgCmp(index=a.index, op="masked_eq", mask=a.value, value=a.value_two or 0))
            else:
                args.append(ArgCmp(index=a.index, op=_CMP[a.op], value=a.value))
        rules.append(SyscallRule(names=r.names, action=action, errno=r.errno_ret or _errno.EPERM,
                                 args=tuple(args)))
    profile = SeccompProfile(default_action=default, default_errno=sc.default_errno_ret or _errno.EPERM,
                             rules=tuple(rules), architectures=tuple(dict.fromkeys(archs)))
    if archs:
        try:
            # An architecture libseccomp lacks: refused here, naming it.  The program is the
            # one the plan loads (compiled once per profile).
            profile_program(profile)
        except UnsupportedError as e:
            raise UnsupportedError(f"{base}.architectures: {e}") from None
    return profile


def _resources(linux: S.Linux, out: _Out) -> Limits | None:
    """``linux.resources`` as ``Limits``: each field applied as runc applies it, or refused.

    A field the host cannot apply raises ``UnsupportedError`` naming it (the
    spec: a runtime that cannot apply a property MUST fail), before anything
    is made.  Where runc and crun differ, the spec's words decide (see below).
    """
    from ..cgroup import _layout
    from ..cgroup.limits import (
        DEFAULT_DEVICES,
        DeviceRule,
        HugetlbLimit,
        IoThrottle,
        Limits,
        host_refusals,
    )

    res = linux.resources
    assert res is not None
    base = "linux.resources"
    kw: dict[str, Any] = {}
    where: dict[str, str] = {}      # Limits field -> the config's field, for errors
    value: Any      # the loops below walk fields of several types

    def refuse(path: str, why: str) -> UnsupportedError:
        return UnsupportedError(f"{base}.{path}: {why}")

    mem = res.memory
    if mem is not None:
        if mem.limit is not None and mem.limit > 0:
            kw["memory_max"] = mem.limit
        if mem.swap is not None and mem.swap > 0:
            # OCI swap is memory+swap (v1 memsw), whatever the cgroup version.
            kw["memory_memsw_max"] = mem.swap
        if mem.reservation is not None and mem.reservation > 0:
            # v1 memory.soft_limit_in_bytes, v2 memory.low (runc and crun); -1 and 0: none.
            kw["memory_low"], where["memory_low"] = mem.reservation, "memory.reservation"
        if mem.swappiness is not None:
            kw["memory_swappiness"], where["memory_swappiness"] = mem.swappiness, "memory.swappiness"
        if mem.disable_oom_killer:
            kw["memory_oom_kill_disable"] = True
            where["memory_oom_kill_disable"] = "memory.disableOOMKiller"
        for key, value in (("kernel", mem.kernel), ("kernelTCP", mem.kernel_tcp)):
            if value not in (None, 0):
                # Deprecated by the spec; runc 1.1 ignores both with this warning (and the
                # kernel has refused kmem limits since 6.1).  crun writes them on v1.
                warnings.warn(f"{base}.memory.{key}: kernel memory settings are ignored "
                              f"(deprecated), got {value}", stacklevel=2)
        if mem.use_hierarchy is False:
            raise refuse("memory.useHierarchy", "false cannot be applied: the kernel's v1 memory "
                         "controller is always hierarchical")
    cpu = res.cpu
    if cpu is not None:
        if cpu.shares:
            # Written as given on v1 (cpu.shares), converted only on v2 (cpu.weight), as
            # runc and crun do.  The kernel clamps to [2, 262144]; runc refuses outside it.
            if not 2 <= cpu.shares <= 262144:
                raise ConfigError(f"{base}.cpu.shares: must be between 2 and 262144, got {cpu.shares}")
            kw["cpu_shares"] = cpu.shares
        if cpu.quota is not None and cpu.quota > 0:
            kw["cpu_quota_us"] = cpu.quota
        if cpu.period:
            kw["cpu_period_us"] = cpu.period
        if cpu.cpus:
            kw["cpuset_cpus"] = cpu.cpus
        if cpu.mems:
            kw["cpuset_mems"] = cpu.mems
        if cpu.realtime_period:
            kw["cpu_rt_period_us"], where["cpu_rt_period_us"] = cpu.realtime_period, "cpu.realtimePeriod"
        if cpu.realtime_runtime:
            kw["cpu_rt_runtime_us"], where["cpu_rt_runtime_us"] = cpu.realtime_runtime, "cpu.realtimeRuntime"
        if cpu.idle is not None:
            # runc 1.1 writes cpu.idle on v2 only and drops it on v1; the spec says a
            # property that cannot be applied fails, so v1 gets it where the kernel has it.
            kw["cpu_idle"], where["cpu_idle"] = bool(cpu.idle), "cpu.idle"
        if cpu.burst is not None:
            # runc 1.1 ignores burst; crun writes cpu.max.burst (v2) / cpu.cfs_burst_us (v1).
            kw["cpu_burst_us"], where["cpu_burst_us"] = cpu.burst, "cpu.burst"
    if res.pids is not None and res.pids.limit is not None and res.pids.limit > 0:
        kw["pids_max"] = res.pids.limit
    bio = res.block_io
    if bio is not None:
        if bio.weight:
            # blkio.weight [10, 1000] onto io.weight [1, 10000], as runc converts.
            kw["io_weight"] = 1 + (bio.weight - 10) * 9999 // 990
        if bio.leaf_weight:
            # blkio.leaf_weight went with the CFQ scheduler (Linux 5.0): nothing writes it.
            raise refuse("blockIO.leafWeight", f"cannot be applied: no kernel since 5.0 has "
                         f"blkio.leaf_weight, got {bio.leaf_weight}")
        if bio.weight_device:
            raise refuse("blockIO.weightDevice", f"per-device weights are not supported, "
                         f"got {show(_json(bio.weight_device))}")
        per_dev: dict[tuple[int, int], dict[str, int]] = {}
        for attr, name in (("throttle_read_bps_device", "read_bps"), ("throttle_write_bps_device", "write_bps"),
                           ("throttle_read_iops_device", "read_iops"),
                           ("throttle_write_iops_device", "write_iops")):
            for t in getattr(bio, attr) or ():
                if t.rate > 0:      # 0 removes a limit (runc): nothing to set
                    per_dev.setdefault((t.major, t.minor), {})[name] = t.rate
        if per_dev:
            kw["io_throttle"] = tuple(IoThrottle(device=dev, **rates) for dev, rates in per_dev.items())
    if res.hugepage_limits:
        kw["hugetlb"] = tuple(HugetlbLimit(page_size=h.page_size, max=h.limit) for h in res.hugepage_limits)
    if res.devices is not None:
        rules = [DeviceRule(allow=d.allow, type=d.type or "a",
                            major=None if d.major in (None, -1) or (d.type or "a") == "a" else d.major,
                            minor=None if d.minor in (None, -1) or (d.type or "a") == "a" else d.minor,
                            access=d.access or "rwm") for d in res.devices]
        # runc appends the default devices (null, zero, tty, ...) after the config's
        # rules, so a config that only says "deny all" still has a usable /dev.
        kw["devices"] = tuple(rules) + DEFAULT_DEVICES
    net = res.network
    if net is not None:
        if net.class_id is not None:
            kw["net_cls_classid"], where["net_cls_classid"] = net.class_id, "network.classID"
        if net.priorities:
            kw["net_prio_ifpriomap"] = tuple((p.name, p.priority) for p in net.priorities)
            where["net_prio_ifpriomap"] = "network.priorities"
    if res.rdma:
        raise refuse("rdma", f"the rdma controller is not supported, got {show(_json(res.rdma))}")
    lay = _layout()
    if res.unified:
        # runc: unified is for a cgroup v2 host only ("cannot use unified on cgroup v1"),
        # hybrid included; its keys are validated as files of an available controller.
        if lay.kind != "v2":
            raise refuse("unified", f"needs a cgroup v2 host (this one is {lay.kind}), "
                         f"got {show(_json(res.unified))}")
        kw["unified"], where["unified"] = tuple(sorted(res.unified.items())), "unified"
    if not kw:
        return None
    try:
        limits = Limits(**kw)
    except ConfigError as e:
        msg = str(e)
        for name, path in where.items():
            if msg.startswith(f"Limits.{name}"):
                raise ConfigError(f"{base}.{path}: {msg}") from None
        raise ConfigError(f"{base}: {msg}") from None
    for name, why in host_refusals(limits, lay):
        raise refuse(where.get(name, name), why)
    return limits
