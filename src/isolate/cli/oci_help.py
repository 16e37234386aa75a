"""``isolate-oci``'s help: the formatter and the examples of each verb's ``--help``.

The parser (``oci.build_parser``) takes its epilogs from here; the texts
are kept apart from the flags so that both read well.

The examples work as written, as root, on a host with busybox-static:
tests/docs/test_cli_help.py runs EPILOG's walk-through in a temporary
directory (with a private ``--root``) and parses every verb's examples with
the real parser.
"""

from __future__ import annotations

from ._help import HelpFormatter

__all__ = ["EPILOG", "VERB_EPILOGS", "HelpFormatter"]

EPILOG = """\
examples (a container's life, from a bundle made of busybox):
  $ mkdir -p mybox/rootfs/bin && cp /bin/busybox mybox/rootfs/bin/sh
  $ isolate-oci spec --bundle mybox
  # no terminal, and a command that keeps running
  $ sed -i 's/"terminal": true/"terminal": false/' mybox/config.json
  $ sed -i 's/"sh"$/"sh", "-c", "sleep 600"/' mybox/config.json
  $ isolate-oci create --bundle mybox mybox
  $ isolate-oci start mybox
  $ isolate-oci state mybox
  $ isolate-oci exec mybox sh -c 'echo hello from $(hostname)'
  $ isolate-oci ps mybox
  $ isolate-oci pause mybox
  $ isolate-oci resume mybox
  $ isolate-oci update --memory 268435456 --pids-limit 100 mybox
  $ isolate-oci events --stats mybox
  $ isolate-oci list
  $ isolate-oci kill mybox KILL
  $ isolate-oci delete --force mybox

'isolate-oci COMMAND --help' shows each command's options and examples.
containerd's runc shim (io.containerd.runc.v2) runs it when the shim's
BinaryName option is its path; podman, when --runtime is.
"""

_UNSUPPORTED = """\
  # fails (exit status 1): isolate has no checkpoint/restore (no CRIU)
"""

VERB_EPILOGS = {
    "checkpoint": f"""\
examples:
{_UNSUPPORTED}  $ isolate-oci checkpoint --image-path mybox.ckpt mybox
""",
    "create": """\
examples:
  # a container from the bundle directory mybox, its process not yet started
  $ isolate-oci create --bundle mybox mybox
  # as containerd does: the process's pid written to a file
  $ isolate-oci create --bundle mybox --pid-file mybox.pid mybox
""",
    "delete": """\
examples:
  # a stopped container
  $ isolate-oci delete mybox
  # a container in any state: a running one is killed first
  $ isolate-oci delete --force mybox
""",
    "events": """\
examples:
  # one line of statistics (cpu, memory, pids, blkio) as JSON
  $ isolate-oci events --stats mybox
  # statistics every 10 seconds until the container stops
  $ isolate-oci events --interval 10s mybox
""",
    "exec": """\
examples:
  $ isolate-oci exec mybox sh -c 'echo hello from $(hostname)'
  $ isolate-oci exec --env GREETING=hi --cwd /bin mybox sh -c 'echo $GREETING'
  # in the background, its pid written to a file
  $ isolate-oci exec --detach --pid-file sleeper.pid mybox sh -c 'sleep 60'
""",
    "features": """\
examples:
  # what this runtime supports, as JSON (namespaces, capabilities, mounts...)
  $ isolate-oci features
""",
    "kill": """\
examples:
  # SIGTERM, the default
  $ isolate-oci kill mybox
  $ isolate-oci kill mybox KILL
  # every process of the container, not only its first
  $ isolate-oci kill --all mybox SIGKILL
""",
    "list": """\
examples:
  $ isolate-oci list
  $ isolate-oci list --format json
  # the containers' ids only
  $ isolate-oci list --quiet
""",
    "pause": """\
examples:
  # freeze every process of the container (resume thaws them)
  $ isolate-oci pause mybox
""",
    "ps": """\
examples:
  $ isolate-oci ps mybox
  # the pids as JSON
  $ isolate-oci ps --format json mybox
  # ps's own options after --
  $ isolate-oci ps mybox -- -o pid,comm
""",
    "restore": f"""\
examples:
{_UNSUPPORTED}  $ isolate-oci restore --image-path mybox.ckpt --bundle mybox mybox
""",
    "resume": """\
examples:
  # thaw a paused container
  $ isolate-oci resume mybox
""",
    "run": """\
examples:
  # create and start; wait for the container's process and exit with its status
  $ isolate-oci run --bundle mybox mybox
  # create and start, and return at once
  $ isolate-oci run --detach --bundle mybox mybox
""",
    "spec": """\
examples:
  # a default config.json in the bundle directory mybox (never overwritten)
  $ isolate-oci spec --bundle mybox
  # one for a container run by a user without privileges
  $ isolate-oci spec --rootless --bundle mybox
""",
    "start": """\
examples:
  # run the process of a container made by create
  $ isolate-oci start mybox
""",
    "state": """\
examples:
  # the container's id, status, pid and bundle, as JSON
  $ isolate-oci state mybox
""",
    "update": """\
examples:
  # memory limit in bytes (256 MiB), and at most 100 processes
  $ isolate-oci update --memory 268435456 --pids-limit 100 mybox
  # half a CPU
  $ isolate-oci update --cpu-quota 50000 --cpu-period 100000 mybox
""",
}
