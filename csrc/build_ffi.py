"""The cffi builder: compiles the parent's side of csrc/ into the private module ``isolate._native``.

Out-of-line API mode: the C compiler checks every declaration in ``api.h``
against the real definitions, and constants below come from the kernel
headers at build time instead of being copied by hand.
"""

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

# Constants the Python layer needs, read from the system headers at build time.
CONSTANT_NAMES = [
    # clone(2) namespace flags
    "CLONE_NEWNS", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWUSER", "CLONE_NEWPID",
    "CLONE_NEWNET", "CLONE_NEWCGROUP", "CLONE_NEWTIME",
    # mount(2)
    "MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_SYNCHRONOUS", "MS_REMOUNT",
    "MS_MANDLOCK", "MS_DIRSYNC", "MS_NOATIME", "MS_NODIRATIME", "MS_BIND", "MS_MOVE",
    "MS_REC", "MS_SILENT", "MS_UNBINDABLE", "MS_PRIVATE", "MS_SLAVE", "MS_SHARED",
    "MS_RELATIME", "MS_STRICTATIME", "MS_LAZYTIME",
    # mount_setattr(2)
    "MOUNT_ATTR_RDONLY", "MOUNT_ATTR_NOSUID", "MOUNT_ATTR_NODEV", "MOUNT_ATTR_NOEXEC",
    "MOUNT_ATTR_NOATIME", "MOUNT_ATTR_STRICTATIME", "MOUNT_ATTR_NODIRATIME",
    # open(2), execveat(2)
    "O_CREAT", "O_TRUNC", "O_APPEND", "O_EXCL", "AT_EMPTY_PATH",
    # file types for mknod(2)
    "S_IFCHR", "S_IFBLK", "S_IFIFO", "S_IFREG",
    # seccomp(2)
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    # capabilities(7), numbered as in linux/capability.h
    "_LINUX_CAPABILITY_VERSION_3",
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

CONSTANTS = "".join(f"static const uint64_t {name};\n" for name in CONSTANT_NAMES)

ffibuilder = FFI()
ffibuilder.cdef((HERE / "api.h").read_text() + CONSTANTS)
ffibuilder.set_source(
    "isolate._native",
    '#include "isolate.h"\n',
    # The child program's sources (init.c, child.c, ops_*.c, nolibc.c) are
    # build_child.py's: they never run in this process.
    sources=[f"csrc/{name}" for name in ("spawn.c", "clone.c", "wire.c", "helper.c", "host.c",
                                         "bpf.c", "net.c")],
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    # Hidden: the module exports PyInit__native only (cffi calls iso_* inside it).
    # ISOLATE_WERROR=1 (.ci/run) makes every warning an error.
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-O2", "-fvisibility=hidden"]
    + (["-Werror"] if os.environ.get("ISOLATE_WERROR") == "1" else []),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
