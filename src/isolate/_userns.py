"""Whether this process runs in a user namespace other than the host's.

A runtime run by root of a user namespace (podman rootless runs its OCI
runtime so) may not make device nodes, mount procfs or sysfs for
namespaces it does not own, or set ``trusted.*`` xattrs, as in a container
with a user namespace of its own: ``Container`` and ``isolate-oci`` plan
for that (``RootContext.userns``).
"""

from __future__ import annotations

import functools

__all__ = ["in_user_namespace"]


@functools.lru_cache(maxsize=1)
def in_user_namespace() -> bool:
    """Whether this process is in a user namespace other than the initial one (runc's
    RunningInUserNS): the initial one maps every id to itself, ``0 0 4294967295``."""
    try:
        with open("/proc/self/uid_map") as f:
            fields = f.read().split()
    except FileNotFoundError:
        return False            # a kernel without user namespaces: the host's
    return fields != ["0", "0", "4294967295"]
