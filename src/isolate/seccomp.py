"""Seccomp profiles compiled to BPF, with libseccomp bound with cffi at run time.

libseccomp2 is on every mainstream distribution, so it is loaded with
``FFI().dlopen("libseccomp.so.2")`` (cffi ABI mode) when a profile is first
compiled, not linked at build time.  Without it, asking for seccomp raises
``UnsupportedError``.  On x86-64, profiles of the usual shape (Docker's
default among them) are laid out here as a binary search over runs of
syscall numbers, libseccomp only naming the syscalls: the kernel walks a new
filter once per syscall number when loading it, and that program is about
half as long and a third shallower as libseccomp's (a load: ~120 us instead
of ~220 us); any other profile is compiled by libseccomp.  The compiled program (``SeccompProfile.compile()``,
bytes of ``struct sock_filter``) goes into the spawn plan; the child loads
it as its last step before execve.

``SeccompProfile.default()`` has the semantics of Docker's default profile:
everything not on an allow-list fails with EPERM; namespace and mount
syscalls, module loading, kexec, bpf, keyrings and the like are allowed only
when the matching capability is kept; clone may not create namespaces and
clone3 reports ENOSYS (so libc falls back to clone, whose flags the filter
can see).  Unlike Docker's, it also refuses ioctl TIOCSTI and TIOCLINUX,
with which a process holding a terminal types into its input.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
import termios
import threading

from ._record import dataclass
from .errors import ConfigError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, ClassVar

__all__ = ["SeccompProfile", "SyscallRule", "ArgCmp", "available", "architecture_known", "ACTIONS",
           "OCI_DEFAULT_CAPS", "REFUSED_IOCTLS"]

#: Action names a profile may use.
ACTIONS = frozenset({"allow", "errno", "kill", "kill_process", "kill_thread", "trap", "log"})
_CMP_OPS = {"ne": 1, "lt": 2, "le": 3, "eq": 4, "ge": 5, "gt": 6, "masked_eq": 7}

#: The OCI runtime spec's default capability set (runc, crun, Docker).
OCI_DEFAULT_CAPS = frozenset({
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
})

_SCMP_FLTATR_ACT_BADARCH = 2
_SCMP_FLTATR_CTL_NNP = 3
_SCMP_FLTATR_CTL_OPTIMIZE = 8

_lib: Any = None
_ffi: Any = None
_lock = threading.Lock()


def _load() -> tuple[Any, Any]:
    global _lib, _ffi
    with _lock:
        if _lib is None:
            # Out-of-line ABI mode: the declarations were parsed at build time
            # (csrc/build_seccomp_ffi.py), so no C parser runs at import.
            from ._seccomp_ffi import ffi

            try:
                lib = ffi.dlopen("libseccomp.so.2")
            except OSError as e:
                raise UnsupportedError(
                    f"seccomp needs libseccomp ({e}): install it (apt-get install libseccomp2, "
                    "dnf install libseccomp) or pass seccomp=None") from None
            _ffi, _lib = ffi, lib
    return _ffi, _lib


def available() -> bool:
    """Whether libseccomp can be loaded here."""
    try:
        _load()
        return True
    except UnsupportedError:
        return False


def architecture_known(name: str) -> bool:
    """Whether libseccomp here can filter architecture ``name`` (its name: ``"x86"``, ``"x32"``)."""
    _, lib = _load()
    return bool(lib.seccomp_arch_resolve_name(name.encode()))


def _action(name: str, err: int) -> int:
    return {
        "allow": 0x7FFF0000,
        "errno": 0x00050000 | (err & 0xFFFF),
        "kill": 0x80000000,
        "kill_process": 0x80000000,
        "kill_thread": 0x00000000,
        "trap": 0x00030000,
        "log": 0x7FFC0000,
    }[name]


def _check_action(action: object, err: object, what: str) -> None:
    if action not in ACTIONS:
        raise ConfigError(f"{what}: unknown seccomp action {action!r} (known: {', '.join(sorted(ACTIONS))})")
    if not isinstance(err, int) or isinstance(err, bool) or not 0 < err < 4096:
        raise ConfigError(f"{what}: errno must be from 1 to 4095, got {err!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ArgCmp:
    """A condition on syscall argument ``index``: ``op`` is ne lt le eq ge gt masked_eq.

    ``masked_eq`` means ``(arg & mask) == value``.
    """

    index: int
    op: str
    value: int
    mask: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or not 0 <= self.index <= 5:
            raise ConfigError(f"ArgCmp.index must be 0 to 5, got {self.index!r}")
        if self.op not in _CMP_OPS:
            raise ConfigError(f"ArgCmp.op must be one of {', '.join(_CMP_OPS)}, got {self.op!r}")
        for name in ("value", "mask"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v < 2**64:
                raise ConfigError(f"ArgCmp.{name} must be an unsigned 64-bit integer, got {v!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SyscallRule:
    """``action`` for the syscalls ``names`` (when every ``args`` condition holds)."""

    names: tuple[str, ...]
    action: str = "allow"
    errno: int = _errno.EPERM
    args: tuple[ArgCmp, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or not self.names:
            raise ConfigError(f"SyscallRule.names must be a non-empty tuple of names, got {self.names!r}")
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "args", tuple(self.args))
        for n in self.names:
            if not isinstance(n, str) or not n.replace("_", "").isalnum():
                raise ConfigError(f"SyscallRule.names: {n!r} is not a syscall name")
        _check_action(self.action, self.errno, "SyscallRule.action")
        for a in self.args:
            if not isinstance(a, ArgCmp):
                raise ConfigError(f"SyscallRule.args must hold ArgCmp, got {a!r}")


# Docker's default allow-list (moby profiles/seccomp/default.json), without
# the syscalls that depend on a capability (below) or on arguments.
_ALLOW = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid
getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel
io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat
mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl
msgget msgrcv msgsnd msync munlock munlockall munmap nanosleep newfstatat _newselect open openat
openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll
ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom
recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64
send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid
setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid
setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown
sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
arch_prctl modify_ldt ptrace process_vm_readv process_vm_writev
""".split()

# Syscalls Docker allows only with a capability.
_BY_CAP = {
    "CAP_SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie
        mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
        sethostname setns syslog umount umount2 unshare""".split(),
    "CAP_SYS_BOOT": ["reboot"],
    "CAP_SYS_CHROOT": ["chroot"],
    "CAP_SYS_MODULE": ["delete_module", "init_module", "finit_module"],
    "CAP_SYS_PACCT": ["acct"],
    "CAP_SYS_PTRACE": ["kcmp", "pidfd_getfd", "process_madvise"],
    "CAP_SYS_RAWIO": ["iopl", "ioperm"],
    "CAP_SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_settime64"],
    "CAP_SYS_TTY_CONFIG": ["vhangup"],
    "CAP_SYS_NICE": ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    "CAP_SYSLOG": ["syslog"],
    "CAP_BPF": ["bpf"],
    "CAP_PERFMON": ["perf_event_open"],
    "CAP_DAC_READ_SEARCH": ["open_by_handle_at"],
}

# Syscalls newer than some libseccomp releases know, by x86-64 number.
_X86_64_NEW = {
    "close_range": 436, "openat2": 437, "pidfd_getfd": 438, "faccessat2": 439,
    "process_madvise": 440, "epoll_pwait2": 441, "mount_setattr": 442, "quotactl_fd": 443,
    "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
    "memfd_secret": 447, "process_mrelease": 448, "futex_waitv": 449,
    "set_mempolicy_home_node": 450, "cachestat": 451, "fchmodat2": 452, "map_shadow_stack": 453,
    "futex_wake": 454, "futex_wait": 455, "futex_requeue": 456,
}

#: ioctl requests the default profile refuses (EPERM), whatever the process's
#: capabilities: TIOCSTI pushes bytes into a terminal's input queue, so a
#: sandbox holding the caller's terminal types commands into the caller's
#: shell (bubblewrap's CVE-2017-5226); TIOCLINUX's selection paste does the
#: same on a virtual console.  (Values of this architecture, from termios.)
REFUSED_IOCTLS = (getattr(termios, "TIOCSTI", 0x5412), getattr(termios, "TIOCLINUX", 0x541C))


def _low32_not_in(values: Sequence[int], index: int) -> tuple[tuple[ArgCmp, ...], ...]:
    """Alternatives, one masked_eq each, of which one holds exactly when the low 32 bits
    of argument ``index`` are none of ``values``.

    The high 32 bits are never compared: the kernel truncates an ``unsigned
    int`` argument (ioctl's request), so ``TIOCSTI | 1 << 32`` is TIOCSTI.
    Seccomp compares 64-bit arguments and has no "masked not equal": a value
    differs from all of ``values`` when one of the bits they share differs
    (one alternative per such bit), or else when the bits they do not share
    form none of them (one alternative per other pattern).
    """
    full = 0xFFFFFFFF
    common = full
    for v in values:
        common &= ~(v ^ values[0])
    base = values[0] & common
    free = [b for b in range(32) if not common >> b & 1]
    if len(free) > 4:
        raise ValueError(f"values too far apart for a short filter: {[hex(v) for v in values]}")
    out = [(ArgCmp(index=index, op="masked_eq", mask=1 << b, value=~base & (1 << b)),)
           for b in range(32) if common >> b & 1]
    for pattern in range(1 << len(free)):
        v = base | sum((pattern >> i & 1) << b for i, b in enumerate(free))
        if v not in values:
            out.append((ArgCmp(index=index, op="masked_eq", mask=full, value=v),))
    return tuple(out)


# clone(2) flags that create namespaces (CLONE_NEWNS ... CLONE_NEWCGROUP, CLONE_NEWTIME).
_CLONE_NS_MASK = 0x7E020000 | 0x80


def _caps(caps: Iterable[str] | None) -> frozenset[str]:
    out = set()
    for c in caps or ():
        c = c.upper()
        out.add(c if c.startswith("CAP_") else "CAP_" + c)
    return frozenset(out)


def _resolve(lib: Any, name: str) -> int:
    """The syscall number of ``name`` on this architecture, or -1 (not a syscall here)."""
    nr = int(lib.seccomp_syscall_resolve_name(name.encode()))
    if nr < 0:
        nr = _X86_64_NEW.get(name, -1) if os.uname().machine == "x86_64" else -1
    return nr


# Classic BPF, as seccomp reads it (linux/filter.h, linux/seccomp.h).
_LD_ABS = 0x20                 # BPF_LD | BPF_W | BPF_ABS
_JEQ, _JGE, _JA, _JSET = 0x15, 0x35, 0x05, 0x45
_AND = 0x54                    # BPF_ALU | BPF_AND | BPF_K
_RET = 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_RET_KILL_THREAD = 0x00000000


class _Asm:
    """Classic BPF with forward labels: jumps are resolved to 8-bit offsets at the end."""

    def __init__(self) -> None:
        self.insns: list[tuple[int, Any, Any, int]] = []
        self.labels: dict[object, int] = {}

    def op(self, code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        self.insns.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: object) -> None:
        self.labels[name] = len(self.insns)

    def bytes(self) -> bytes:
        out = bytearray()
        for i, (code, jt, jf, k) in enumerate(self.insns):
            offs = []
            for target in (jt, jf):
                # An int is a relative offset already; anything else names a label.
                off = target if isinstance(target, int) else self.labels[target] - i - 1
                if not 0 <= off <= 255:
                    raise OverflowError("jump too far for classic BPF")
                offs.append(off)
            if code == _JA:    # BPF_JA takes its offset in k
                k, offs = offs[0], [0, 0]
            out += struct.pack("=HBBI", code, offs[0], offs[1], k)
        return bytes(out)


def _emit_alternatives(a: _Asm, nr: int, action: int, default: int,
                       alternatives: tuple[tuple[ArgCmp, ...], ...]) -> None:
    """``action`` if every condition of one of ``alternatives`` holds, else ``default``.

    A word of an argument is loaded only when the accumulator does not hold
    it already; a condition on one bit of the low word is one BPF_JSET; a
    masked_eq that leaves the high word out (mask and value 0 there) does
    not look at it.  (The default profile's ioctl check is 35 alternatives
    of one bit each: about 70 instructions instead of 250.)
    """
    acc: object = None                  # (offset) the accumulator holds unmodified, or None

    def load(off: int) -> None:
        nonlocal acc
        if acc != off:
            a.op(_LD_ABS, off)
            acc = off

    for i, cmps in enumerate(alternatives):
        fail: object = ("alt", nr, i + 1)
        at_fail: set[object] = set()    # what the accumulator holds at each jump to ``fail``

        def jump_fail(code: int, k: int, jt: object, jf: object) -> None:
            at_fail.add(acc)
            a.op(code, k, jt, jf)

        for j, c in enumerate(cmps):
            lo_off = _OFF_ARGS + 8 * c.index      # little-endian: low word first
            v_hi, v_lo = c.value >> 32, c.value & 0xFFFFFFFF
            m_hi, m_lo = c.mask >> 32, c.mask & 0xFFFFFFFF
            if c.op == "ne":
                ok: object = ("ok", nr, i, j)
                load(lo_off + 4)
                a.op(_JEQ, v_hi, 0, ok)
                load(lo_off)
                jump_fail(_JEQ, v_lo, fail, 0)
                a.label(ok)
                acc = None      # reached with either word
                continue
            masked = c.op == "masked_eq"
            if not (masked and m_hi == 0 and v_hi == 0):
                load(lo_off + 4)
                if masked and m_hi != 0xFFFFFFFF:
                    a.op(_AND, m_hi)
                    acc = None
                jump_fail(_JEQ, v_hi, 0, fail)
            if masked and m_lo == 0 and v_lo == 0:
                continue
            load(lo_off)
            if masked and m_lo & (m_lo - 1) == 0 and v_lo in (0, m_lo):
                # One bit: BPF_JSET jumps when it is set.
                if v_lo:
                    jump_fail(_JSET, m_lo, 0, fail)
                else:
                    jump_fail(_JSET, m_lo, fail, 0)
                continue
            if masked and m_lo != 0xFFFFFFFF:
                a.op(_AND, m_lo)
                acc = None
            jump_fail(_JEQ, v_lo, 0, fail)
        a.op(_RET, action)
        a.label(fail)
        # The RET above never falls through: the accumulator is what every jump left.
        acc = at_fail.pop() if len(at_fail) == 1 else None
    a.op(_RET, default)


def _range_program(default: int, leaves: dict[int, tuple[int, tuple[tuple[ArgCmp, ...], ...]]]
                   ) -> bytes | None:
    """A seccomp program equivalent to libseccomp's for ``leaves`` (nr -> (action, OR of AND of
    conditions)), with its x86-64 preamble, as a binary search over runs of syscall numbers.

    The kernel runs a new filter once per syscall number when loading it (to
    fill its allow cache); a linear program costs that walk its whole length
    per number, libseccomp's tree over single numbers about 40 steps, this
    one about 10: the load takes a fraction of the time.
    """
    # Runs of consecutive numbers with the same unconditional verdict; a
    # syscall with conditions is a run of its own.
    runs: list[tuple[int, object]] = []      # (first nr, action or ("cond", nr))
    for nr in range(max(leaves, default=-1) + 2):   # the last run: every higher number
        action, alternatives = leaves.get(nr, (default, ()))
        v: object = ("cond", nr) if alternatives else action
        if not runs or runs[-1][1] != v or alternatives:
            runs.append((nr, v))
    a = _Asm()
    a.op(_LD_ABS, _OFF_ARCH)
    a.op(_JEQ, _AUDIT_ARCH_X86_64, 0, "kill")
    a.op(_LD_ABS, _OFF_NR)
    # x32 syscalls (nr with bit 30) are another ABI: killed, as libseccomp does; -1 goes on.
    a.op(_JGE, _X32_SYSCALL_BIT, 0, "tree")
    a.op(_JEQ, 0xFFFFFFFF, "tree", "kill")
    a.label("kill")
    a.op(_RET, _RET_KILL_THREAD)
    a.label("tree")
    conds: list[int] = []
    rets: set[int] = set()
    n = [0]

    def tree(lo: int, hi: int) -> object | None:
        """Emit the search over runs[lo:hi] (nr already in the accumulator); a single
        run emits nothing and gives the label to jump to instead: one shared return
        per verdict, which keeps the program (and the kernel's JIT of it) short."""
        if hi - lo == 1:
            v = runs[lo][1]
            if isinstance(v, tuple):
                conds.append(v[1])
                return ("cond", v[1])
            rets.add(v)    # type: ignore[arg-type]
            return ("ret", v)
        mid = (lo + hi) // 2
        n[0] += 1
        node = len(a.insns)
        a.op(_JGE, runs[mid][0])
        left = tree(lo, mid)
        right: object = ("node", n[0])
        if left is not None:
            right_first = len(a.insns) == node + 1      # the right side follows the node
        else:
            right_first = False
        if not right_first:
            a.label(right)
        sub = tree(mid, hi)
        jt: object = sub if sub is not None else (0 if right_first else right)
        jf: object = left if left is not None else 0
        a.insns[node] = (_JGE, jt, jf, runs[mid][0] & 0xFFFFFFFF)
        return None

    top = tree(0, len(runs))
    if top is not None:
        a.op(_JA, 0, top, 0)
    for nr in conds:
        action, alternatives = leaves[nr]
        a.label(("cond", nr))
        _emit_alternatives(a, nr, action, default, alternatives)
    for v in sorted(rets):
        a.label(("ret", v))
        a.op(_RET, v)
    try:
        return a.bytes()
    except OverflowError:
        return None


#: The syscalls that give a file a mode, and which argument holds it.
_MODE_ARG = {"chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2, "mknod": 1, "mknodat": 2,
             "creat": 1, "open": 2, "openat": 3}
#: open and openat: the argument holding the flags, for those that create nothing.
_OPEN_FLAGS_ARG = {"open": 1, "openat": 2}
_S_ISUID_ISGID = 0o6000
# O_CREAT, and O_TMPFILE's own bit (__O_TMPFILE; O_TMPFILE adds O_DIRECTORY).
_CREATING = os.O_CREAT | 0o20000000


def _no_setid_rules() -> list[SyscallRule]:
    """Rules allowing the ``_MODE_ARG`` syscalls only with a mode free of S_ISUID and
    S_ISGID (open and openat also when they create nothing), and refusing openat2 with
    ENOSYS (see ``SeccompProfile.default``)."""
    rules = [SyscallRule(names=(name,), args=(ArgCmp(index=index, op="masked_eq", mask=_S_ISUID_ISGID,
                                                      value=0),))
             for name, index in _MODE_ARG.items()]
    rules += [SyscallRule(names=(name,), args=(ArgCmp(index=index, op="masked_eq", mask=_CREATING,
                                                      value=0),))
              for name, index in _OPEN_FLAGS_ARG.items()]
    rules.append(SyscallRule(names=("openat2",), action="errno", errno=_errno.ENOSYS))
    return rules


@dataclass(frozen=True, slots=True, kw_only=True)
class SeccompProfile:
    """A seccomp filter: ``default_action`` for any syscall no rule matches.

    Actions: ``allow``, ``errno`` (fail with ``errno``), ``kill`` (the whole
    process), ``kill_thread``, ``trap`` (SIGSYS), ``log``.  ``architectures``:
    libseccomp's names of architectures filtered besides the native one (``"x86"``,
    ``"x32"`` on x86-64): their syscalls get the same rules, by name, as
    libseccomp adds them; a syscall of any other architecture kills the thread.
    """

    _cache_hash: ClassVar[bool] = True

    default_action: str = "errno"
    default_errno: int = _errno.EPERM
    rules: tuple[SyscallRule, ...] = ()
    architectures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_action(self.default_action, self.default_errno, "SeccompProfile.default_action")
        object.__setattr__(self, "rules", tuple(self.rules))
        if isinstance(self.architectures, str):
            raise ConfigError(f"SeccompProfile.architectures must be a tuple of names, got {self.architectures!r}")
        object.__setattr__(self, "architectures", tuple(self.architectures))
        for a in self.architectures:
            if not isinstance(a, str) or not a.replace("_", "").isalnum():
                raise ConfigError(f"SeccompProfile.architectures: {a!r} is not an architecture name")
        for r in self.rules:
            if not isinstance(r, SyscallRule):
                raise ConfigError(f"SeccompProfile.rules must hold SyscallRule, got {r!r}")

    @classmethod
    def default(cls, capabilities: Iterable[str] | None = OCI_DEFAULT_CAPS, *,
                setid_files: bool = True) -> SeccompProfile:
        """Docker's default profile for a process keeping ``capabilities``.

        One addition: ioctl TIOCSTI and TIOCLINUX fail with EPERM (see
        ``REFUSED_IOCTLS``); Docker leaves that to the process's own session.

        ``setid_files=False`` (a container whose root is not host root gets
        it): no file can be given the setuid or setgid bit.  chmod, fchmod,
        fchmodat, fchmodat2, mknod and mknodat with S_ISUID or S_ISGID in
        their mode, and open, openat and creat creating a file (O_CREAT,
        O_TMPFILE) with them, fail with EPERM; openat2, whose mode the
        filter cannot read, fails with ENOSYS, so that callers fall back to
        openat.  (mkdir and mkdirat drop those bits themselves.)
        """
        caps = _caps(capabilities)
        names = list(_ALLOW)
        for cap, calls in _BY_CAP.items():
            if cap in caps:
                names += calls
        if not setid_files:
            names = [n for n in names if n not in _MODE_ARG and n != "openat2"]
        rules = [SyscallRule(names=tuple(dict.fromkeys(names)))]
        if not setid_files:
            rules += _no_setid_rules()
        # ioctl, but never TIOCSTI or TIOCLINUX (see REFUSED_IOCTLS).
        rules += [SyscallRule(names=("ioctl",), args=alt) for alt in _low32_not_in(REFUSED_IOCTLS, 1)]
        if "CAP_SYS_ADMIN" not in caps:
            rules.append(SyscallRule(names=("clone",), args=(
                ArgCmp(index=0, op="masked_eq", mask=_CLONE_NS_MASK, value=0),)))
            rules.append(SyscallRule(names=("clone3",), action="errno", errno=_errno.ENOSYS))
        for persona in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF):
            rules.append(SyscallRule(names=("personality",),
                                     args=(ArgCmp(index=0, op="eq", value=persona),)))
        # Every address family but AF_VSOCK (40), as Docker.
        rules.append(SyscallRule(names=("socket",), args=(ArgCmp(index=0, op="ne", value=40),)))
        return cls(rules=tuple(rules))

    def compile(self) -> bytes:
        """The filter as a classic-BPF program (``struct sock_filter[]`` bytes).

        On x86-64 a profile whose rules the range compiler below can express
        (every rule but arg-free ones has one action per syscall and eq, ne or
        masked_eq conditions; Docker's default is such a profile) is compiled
        here, with libseccomp only naming the syscalls; anything else is
        compiled by libseccomp.  Both give the same verdict for every
        (arch, nr, args): ``tests/unit/test_seccomp_compile.py`` checks it.
        """
        prog = self._compile_ranges()
        return prog if prog is not None else self._compile_libseccomp()

    def _by_nr(self) -> dict[int, list[tuple[int, tuple[ArgCmp, ...]]]]:
        """Every (action, args) the rules give each syscall number of this architecture."""
        _, lib = _load()
        default = _action(self.default_action, self.default_errno)
        out: dict[int, list[tuple[int, tuple[ArgCmp, ...]]]] = {}
        for rule in self.rules:
            action = _action(rule.action, rule.errno)
            if action == default:
                continue
            for name in rule.names:
                nr = _resolve(lib, name)
                if nr >= 0:
                    out.setdefault(nr, []).append((action, rule.args))
        return out

    def _compile_ranges(self) -> bytes | None:
        if os.uname().machine != "x86_64" or set(self.architectures) - {"x86_64"}:
            return None
        default = _action(self.default_action, self.default_errno)
        leaves: dict[int, tuple[int, tuple[tuple[ArgCmp, ...], ...]]] = {}
        for nr, entries in self._by_nr().items():
            uncond = {a for a, args in entries if not args}
            cond = [(a, args) for a, args in entries if args]
            actions = uncond | {a for a, _ in cond}
            if len(actions) != 1 or any(c.op not in ("eq", "ne", "masked_eq")
                                        for _, args in cond for c in args):
                return None       # libseccomp's precedence rules: leave those to it
            action = actions.pop()
            # An unconditional rule makes the conditions moot (libseccomp does the same).
            leaves[nr] = (action, () if uncond else tuple(args for _, args in cond))
        return _range_program(default, leaves)

    def _compile_libseccomp(self) -> bytes:
        ffi, lib = _load()
        default = _action(self.default_action, self.default_errno)
        ctx = lib.seccomp_init(default)
        if ctx == ffi.NULL:
            raise UnsupportedError("seccomp_init failed: libseccomp does not support this architecture")
        try:
            # The plan sets no_new_privs itself; the program is only exported here.
            lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0)
            # A binary tree over syscall numbers (libseccomp 2.5): loading runs the
            # program once per syscall number to fill the kernel's allow cache, so a
            # shallow program loads in about half the time of a linear one.  Older
            # libseccomp refuses the attribute and keeps the linear program.
            lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, 2)
            for arch in self.architectures:
                token = int(lib.seccomp_arch_resolve_name(arch.encode()))
                rc = lib.seccomp_arch_add(ctx, token) if token else -_errno.EINVAL
                if rc < 0 and rc != -_errno.EEXIST:      # EEXIST: the native one
                    raise UnsupportedError(f"seccomp architecture {arch!r} is not supported by libseccomp "
                                           f"here: {os.strerror(-rc)}")
            for rule in self.rules:
                action = _action(rule.action, rule.errno)
                if action == default:
                    continue
                cmps = ffi.new("struct scmp_arg_cmp[]", max(1, len(rule.args)))
                for i, a in enumerate(rule.args):
                    cmps[i].arg = a.index
                    cmps[i].op = _CMP_OPS[a.op]
                    if a.op == "masked_eq":
                        cmps[i].datum_a, cmps[i].datum_b = a.mask, a.value
                    else:
                        cmps[i].datum_a, cmps[i].datum_b = a.value, 0
                for name in rule.names:
                    nr = _resolve(lib, name)
                    if nr < 0:
                        continue     # not a syscall on this architecture
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(rule.args), cmps)
                    if rc < 0 and rc not in (-_errno.EEXIST, -_errno.EACCES):
                        raise ConfigError(f"seccomp rule for {name!r} rejected by libseccomp: "
                                          f"{os.strerror(-rc)}")
            fd = os.memfd_create("isolate-seccomp", os.MFD_CLOEXEC)
            try:
                rc = lib.seccomp_export_bpf(ctx, fd)
                if rc < 0:
                    raise OSError(-rc, f"seccomp_export_bpf: {os.strerror(-rc)}")
                size = os.fstat(fd).st_size
                return os.pread(fd, size, 0)
            finally:
                os.close(fd)
        finally:
            lib.seccomp_release(ctx)


# --- programs kept between processes ----------------------------------------------------

#: A directory where compiled programs are kept for the other processes of this user that
#: set the same (``isolate-oci``'s warm planner sets its own, which it removes when it
#: ends: ``isolate.oci.warm``); None: each program is compiled in each process.
program_dir: str | None = None

#: The longest program the kernel loads (BPF_MAXINSNS), in bytes.
_MAX_PROGRAM = 4096 * 8


def compiled(profile: SeccompProfile) -> bytes:
    """``profile.compile()``, read from ``program_dir`` when a process before this one
    compiled the same profile there (and written there when none did).

    A file is taken only if it is a regular file of this user's, no one else may
    write, and of a program's size; anything else is compiled again.
    """
    if program_dir is None:
        return profile.compile()
    import hashlib

    name = hashlib.sha256(repr(profile).encode()).hexdigest()
    try:
        dfd = os.open(program_dir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return profile.compile()
    try:
        kept = _read_program(dfd, name)
        if kept is not None:
            return kept
        prog = profile.compile()
        _write_program(dfd, name, prog)
        return prog
    finally:
        os.close(dfd)


def _read_program(dfd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170022 != 0o100000 or st.st_uid != os.geteuid()
                or not 0 < st.st_size <= _MAX_PROGRAM or st.st_size % 8):
            return None
        data = os.read(fd, _MAX_PROGRAM + 1)
        return data if len(data) == st.st_size else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _write_program(dfd: int, name: str, prog: bytes) -> None:
    """``prog`` as ``name`` in ``dfd``, whole or not at all (best effort)."""
    tmp = f".{name}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dfd)
        try:
            if os.write(fd, prog) != len(prog):
                raise OSError("short write")
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
