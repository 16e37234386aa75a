"""``isolate-oci`` argument parsing: runc's command lines, spec and features, errors in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from isolate.cli.oci import VERBS, main
from isolate.oci import parse
from isolate.oci.features import default_spec

# Command lines as containerd's runc shim (go-runc), conmon and people write them.
COMMAND_LINES = [
    ["--root", "/run/containerd/runc/k8s.io", "--log", "{log}", "--log-format", "json", "create",
     "--bundle", "/b", "--pid-file", "/b/init.pid", "--console-socket", "/tmp/s.sock", "c1"],
    ["--systemd-cgroup=false", "create", "-b", "/b", "--no-pivot", "--no-new-keyring", "--preserve-fds", "2", "c1"],
    ["start", "c1"],
    ["state", "c1"],
    ["kill", "c1", "SIGTERM"],
    ["kill", "--all", "c1", "9"],
    ["delete", "--force", "c1"],
    ["run", "--detach", "--bundle", "/b", "--keep", "c1"],
    ["exec", "--process", "/tmp/p.json", "--detach", "--pid-file", "/tmp/p.pid", "--console-socket", "/s", "c1"],
    ["exec", "-t", "--cwd", "/", "-e", "A=1", "-e", "B=2", "-u", "0:0", "--cap", "CAP_KILL", "c1", "sh", "-c", "x"],
    ["ps", "--format", "json", "c1"],
    ["ps", "c1", "-ef"],
    ["pause", "c1"],
    ["resume", "c1"],
    ["list"],
    ["list", "--format", "json", "-q"],
    ["events", "--stats", "c1"],
    ["events", "--interval", "2s", "c1"],
    ["update", "--resources", "-", "c1"],
    ["update", "--memory", "1000000", "--pids-limit", "10", "c1"],
    ["checkpoint", "--image-path", "/i", "--leave-running", "c1"],
    ["restore", "--image-path", "/i", "-b", "/b", "-d", "c1"],
    ["-root", "/r", "-debug", "-log", "{log}", "--rootless", "state", "c1"],
    ["--debug=false", "--systemd-cgroup=0", "start", "c1"],
    ["--rootless", "false", "state", "c1"],
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def expected_error(verb: str, argv: list[str]) -> str | None:
    """What each verb says with no such container (and no such bundle); None: success."""
    if verb in ("create", "run"):
        return f"{verb}: bundle '/b': cannot read config.json: No such file or directory"
    if verb in ("checkpoint", "restore"):
        return f"{verb}: not supported (no checkpoint/restore in isolate)"
    if verb == "list" or (verb == "delete" and "--force" in argv):
        return None                 # nothing to list; force-deleting nothing is done
    return f"{verb}: container 'c1' does not exist"


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=lambda a: " ".join(a)[:40])
def test_runc_command_lines_parse_and_fail_in_one_line(argv: list[str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.json"
    argv = [a.format(log=log) for a in argv]
    if "--root" not in argv and "-root" not in argv:
        argv = ["--root", str(tmp_path / "state"), *argv]
    else:
        i = argv.index("--root") if "--root" in argv else argv.index("-root")
        argv[i + 1] = str(tmp_path / "state")
    verb = next(a for a in argv if a in VERBS)
    rc, out, err = run(argv, capsys)
    message = expected_error(verb, argv)
    if message is None:
        assert (rc, err) == (0, "")
        return
    assert (rc, out) == (1, "")
    assert err.splitlines() == [f"isolate-oci: {message}"]
    if "--log" in argv:       # containerd reads the error from the JSON log
        entry = json.loads(log.read_text().splitlines()[-1])
        assert entry["level"] == "error" and entry["msg"] == message
    assert not (tmp_path / "state").exists() or not os.listdir(tmp_path / "state")


def test_every_runc_verb_is_known() -> None:
    assert set(VERBS) == {"checkpoint", "create", "delete", "events", "exec", "features", "kill", "list",
                          "pause", "ps", "restore", "resume", "run", "spec", "start", "state", "update"}


@pytest.mark.parametrize("argv, message", [
    (["create"], "the following arguments are required: container_id"),
    (["create", "--bogus", "c1"], "unrecognized arguments: --bogus"),
    (["--log-format", "xml", "state", "c1"], "argument --log-format: invalid choice: 'xml'"),
    (["--rootless=maybe", "state", "c1"], "argument --rootless: invalid choice: 'maybe'"),
    (["create", "--preserve-fds", "-1", "c1"], "argument --preserve-fds: expected a non-negative number"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_usage_is_one_line_and_status_1(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(argv, capsys)
    assert rc == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"isolate-oci: {message}"), err


def test_systemd_cgroup_driver_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["--systemd-cgroup", "create", "--bundle", "/b", "c1"], capsys)
    assert rc == 1 and len(err.splitlines()) == 1
    assert "--systemd-cgroup: the systemd cgroup driver is not supported" in err
    rc, out, _ = run(["--systemd-cgroup", "features"], capsys)   # irrelevant to features
    assert rc == 0 and json.loads(out)["linux"]["cgroup"]["systemd"] is False


def test_text_log_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    run(["--log", str(log), "--root", str(tmp_path), "start", "c1"], capsys)
    assert log.read_text().endswith('level=error msg="start: container \'c1\' does not exist"\n')


@pytest.mark.parametrize("rootless", [False, True])
def test_spec_writes_a_valid_default_config(rootless: bool, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["spec", "--bundle", str(tmp_path), *(["--rootless"] if rootless else [])], capsys)
    assert (rc, out, err) == (0, "", "")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data == default_spec(rootless=rootless)
    spec = parse(data)
    assert spec.linux is not None and (spec.linux.namespace("user") is not None) is rootless
    if rootless:
        assert data["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]


def test_spec_defaults_to_the_current_directory_and_never_overwrites(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["spec"], capsys)[0] == 0
    (tmp_path / "config.json").write_text("{mine}")
    rc, _, err = run(["spec"], capsys)
    assert rc == 1 and err == "isolate-oci: spec: ./config.json exists; remove it first\n"
    assert (tmp_path / "config.json").read_text() == "{mine}"
    rc, _, err = run(["spec", "-b", str(tmp_path / "nope")], capsys)
    assert rc == 1 and "is not a directory" in err


def test_features(capsys: pytest.CaptureFixture[str]) -> None:
    from isolate._plan import CAPABILITIES

    rc, out, _ = run(["features"], capsys)
    assert rc == 0
    f = json.loads(out)
    assert (f["ociVersionMin"], f["ociVersionMax"]) == ("1.0.0", "1.2.0")
    lx = f["linux"]
    assert lx["namespaces"] == ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"]
    assert set(lx["capabilities"]) == set(CAPABILITIES) and "CAP_SYS_ADMIN" in lx["capabilities"]
    assert lx["cgroup"] == {"v1": True, "v2": True, "systemd": False, "systemdUser": False}
    assert lx["apparmor"] == {"enabled": False} and lx["selinux"] == {"enabled": False}
    assert lx["intelRdt"] == {"enabled": False}       # linux.intelRdt is refused
    assert "SCMP_ACT_NOTIFY" not in lx["seccomp"]["actions"]
    if lx["seccomp"]["enabled"]:
        assert "SCMP_ACT_ERRNO" in lx["seccomp"]["actions"] and "SCMP_CMP_MASKED_EQ" in lx["seccomp"]["operators"]
    # All six run (runtime.create, start, delete), listed in runc's order.
    assert f["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                          "poststop"]
    if lx["seccomp"]["enabled"]:
        # linux.seccomp.architectures is applied: libseccomp adds each to the filter.
        assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"} <= set(lx["seccomp"]["archs"])
    assert set(f["mountOptions"]) <= {"bind", "rbind", "ro", "rw"}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["--version"], capsys)
    assert rc == 0 and out.splitlines()[1] == "spec: 1.2.0"


# As containerd's shim, conmon and people write them, with what each flag becomes.
PARSED = [
    (["run", "--bundle", "/b", "c1"], dict(verb="run", bundle="/b", container_id="c1", detach=False)),
    (["--root", "/r", "run", "--bundle=/b", "--pid-file", "/p", "-d", "--keep", "--no-subreaper", "c1"],
     dict(root="/r", bundle="/b", pid_file="/p", detach=True, keep=True, no_subreaper=True, container_id="c1")),
    (["--log", "/l", "--log-format=json", "--debug", "create", "-b", "/b", "--preserve-fds", "3", "c1"],
     dict(log="/l", log_format="json", debug=True, verb="create", bundle="/b", preserve_fds=3)),
    (["create", "c1", "--console-socket", "/s", "--no-pivot", "--no-new-keyring", "--preserve-fds=0"],
     dict(container_id="c1", console_socket="/s", no_pivot=True, no_new_keyring=True, preserve_fds=0)),
    (["--rootless", "false", "state", "c1"], dict(rootless="false", verb="state", container_id="c1")),
    (["-root", "/r", "-debug", "--rootless", "start", "c1"], dict(root="/r", debug=True, rootless="true")),
    (["--debug=false", "--systemd-cgroup=true", "delete", "-f", "c1"],
     dict(debug=False, systemd_cgroup=True, force=True)),
    (["kill", "c1"], dict(signal=None, all=False)), (["kill", "c1", "9", "-a"], dict(signal="9", all=True)),
    # A global flag's value that names a verb.
    (["--root", "run", "run", "c1"], dict(root="run", verb="run")),
    (["--root", "start", "run", "c1"], dict(root="start", verb="run", container_id="c1")),
    (["--root=/r", "--criu", "/c", "state", "c1"], dict(root="/r", criu="/c")),
    # Repeated flags add up; everything after exec's container id is the command, its flags too.
    (["exec", "-e", "A=1", "--env=B=2", "--cap", "CAP_KILL", "-c", "CAP_CHOWN", "c1", "ls", "-l", "--root", "x"],
     dict(env=["A=1", "B=2"], cap=["CAP_KILL", "CAP_CHOWN"], container_id="c1", command=["ls", "-l", "--root", "x"],
          root=None)),
    (["ps", "c1", "--", "-o", "pid"], dict(container_id="c1", ps_args=["-o", "pid"])),
    (["update", "--memory", "1000000", "--pids-limit=10", "c1"], dict(memory="1000000", pids_limit=10)),
]


@pytest.mark.parametrize("argv, expected", PARSED, ids=lambda a: " ".join(a)[:40] if isinstance(a, list) else "")
def test_runc_command_lines_parse_to_their_values(argv: list[str], expected: dict[str, object]) -> None:
    from isolate.cli.oci import parse_args

    args = vars(parse_args(argv))
    assert {k: args[k] for k in expected} == expected


def test_a_command_parsed_alone_is_what_the_whole_parser_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the verb's subcommand is built; the parser of every verb agrees with it, and so does
    # the one the warm planner keeps for its workers.
    from isolate.cli import oci

    alone = [oci.parse_args(argv) for argv, _ in PARSED]
    assert alone == [oci.build_parser().parse_args(oci._normalize(argv)) for argv, _ in PARSED]
    monkeypatch.setattr(oci, "_kept", None)
    oci.keep_parser()
    assert oci._kept is not None
    assert [oci.parse_args(argv) for argv, _ in PARSED] == alone


def test_the_state_verb_imports_nothing_heavy() -> None:
    # Without a planner, runtimes' callers (conmon, containerd's shim) run `state` most:
    # start-up is its cost.  signal builds enums; typing, subprocess and pathlib are large;
    # none of them is needed to read a state.
    import subprocess
    import sys

    code = ("import sys, isolate.cli.oci, isolate.cli.oci_verbs\n"
            "isolate.cli.oci.parse_args(['state', 'c1'])\n"
            "print(sorted(m for m in ('signal', 'typing', 'subprocess', 'pathlib', 'threading') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_a_plain_bundle_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    # Without a planner, each isolate-oci call pays for its imports: the code for ports (with
    # typing), joined namespaces and a rootless network's files is loaded only by the configs
    # that have them.
    import subprocess
    import sys

    code = ("import os, sys\n"
            "import isolate.container\n"
            "from isolate.cli.oci import main\n"
            "from isolate.oci.convert import convert_bundle\n"
            f"main(['spec', '--bundle', {str(tmp_path)!r}])\n"
            f"os.mkdir({str(tmp_path / 'rootfs')!r})\n"
            f"convert_bundle({str(tmp_path)!r}).close()\n"
            "print(sorted(m for m in ('isolate.net.ports', 'typing', 'isolate.namespace', 'tempfile') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
