"""Every code block of README.md and docs/guides/*.md runs, in the order a reader meets them.

One test per page.  Its blocks run one after another, as a reader would type
them: ``python`` blocks in one namespace per page (a reader's session),
``sh``/``bash`` blocks with ``bash -e -o pipefail``, ``console`` blocks
command by command (``$ `` starts a command, a trailing backslash continues
it): each command must exit 0 and print exactly the output shown below it
(stdout and stderr together; a line ``...`` stands for any lines, ``...``
inside a line for any text).  Shell blocks run in the page's own temporary
directory, with the ``isolate`` and ``isolate-oci`` of the Python running the
tests first on PATH.  ``yaml``, ``json`` and ``toml`` blocks are parsed, and a
page that declares a Kubernetes RuntimeClass must also give the containerd
runtime its handler names, running isolate-oci, and a Pod that uses it.
``text`` blocks (diagrams, sample output) and MyST directives are not code.

A block that cannot run here (it changes the host's packages, needs a
cluster) has ``<!-- not run: <reason> -->`` on the line before it; those are
few and each gives its reason.  Every page runs under the leak check: no
mount, fd, child process or test cgroup may outlive it.
"""

from __future__ import annotations

import json
import linecache
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]
CODE = {"python", "console", "sh", "bash", "yaml", "json", "toml"}
NOT_CODE = {"text"}
#: At most this many blocks, over every page, may be left unrun.
MAX_NOT_RUN = 10
BLOCK_TIMEOUT = 120
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\S*)")
_NOT_RUN = re.compile(r"^<!--\s*not run\b:?(.*?)-->\s*$")
_SEP = "\x1e"


@dataclass
class Block:
    path: Path
    line: int          # the line of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None   # the reason given, or None when the block runs

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2)
        start = i
        body: list[str] = []
        i += 1
        close = re.compile(re.escape(fence[0]) + "{%d,}" % len(fence))
        while i < len(lines) and not close.fullmatch(lines[i].strip()):
            body.append(lines[i])
            i += 1
        i += 1
        mark = _NOT_RUN.match(lines[start - 1].strip()) if start > 0 else None
        out.append(Block(path, start + 1, lang, "\n".join(body) + "\n",
                         mark.group(1).strip() if mark else None))
    return out


def not_run_marks(path: Path) -> list[tuple[int, str]]:
    """Every ``<!-- not run ... -->`` line of a page, with its reason ('' when none)."""
    return [(n + 1, m.group(1).strip()) for n, line in enumerate(path.read_text().splitlines())
            if (m := _NOT_RUN.match(line.strip())) is not None]


# --- console blocks -------------------------------------------------------------

def console_commands(code: str) -> list[tuple[str, list[str]]]:
    """``$ cmd`` lines (with backslash continuations) and the output lines shown after each."""
    cmds: list[tuple[str, list[str]]] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise AssertionError(f"console block: output before any command: {line!r}")
        cmd = [line[2:]]
        while cmd[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd.append(lines[i].removeprefix("> "))
        i += 1
        expected: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        cmds.append(("\n".join(cmd), expected))
    return cmds


def _line_matches(pattern: str, line: str) -> bool:
    if "..." not in pattern:
        return pattern == line
    parts = [re.escape(p) for p in pattern.split("...")]
    return re.fullmatch(".*".join(parts), line) is not None


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` against ``actual`` line by line; a line ``...`` matches any lines (none too)."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(output_matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and _line_matches(head, actual[0]) and output_matches(rest, actual[1:])


def shell_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["PYTHON"] = sys.executable
    env.pop("PYTHONPATH", None)
    return env


def run_console(block: Block, cwd: Path) -> None:
    cmds = console_commands(block.code)
    script = ["exec 2>&1"]
    for cmd, _ in cmds:
        script += [cmd, f"printf '{_SEP}%d{_SEP}' \"$?\""]
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=shell_env(),
                       stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=BLOCK_TIMEOUT)
    pieces = r.stdout.decode(errors="replace").split(_SEP)
    assert len(pieces) >= 2 * len(cmds), f"{block.where()}: the block stopped early:\n{r.stdout!r}"
    for k, (cmd, expected) in enumerate(cmds):
        out, rc = pieces[2 * k], int(pieces[2 * k + 1])
        actual = out.splitlines()
        assert rc == 0, f"{block.where()}: `{cmd}` exited {rc}:\n{out}"
        assert output_matches(expected, actual), (
            f"{block.where()}: `{cmd}` printed\n{out}\ninstead of\n" + "\n".join(expected))


def run_python(block: Block, namespace: dict[str, object]) -> None:
    # Padded to the block's place in the page, and registered with linecache, so that a
    # traceback names the page's own line.
    name = str(block.path.relative_to(ROOT))
    source = "\n" * block.line + block.code
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    exec(compile(source, name, "exec"), namespace)


def run_sh(block: Block, cwd: Path) -> None:
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=cwd, env=shell_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       timeout=BLOCK_TIMEOUT)
    assert r.returncode == 0, (f"{block.where()}: exited {r.returncode}:\n"
                               f"{r.stdout.decode(errors='replace')}")


# --- data blocks -------------------------------------------------------------------

def parse_data(block: Block) -> list[object]:
    try:
        if block.lang == "yaml":
            return [d for d in yaml.safe_load_all(block.code) if d is not None]
        if block.lang == "json":
            return [json.loads(block.code)]
        return [tomllib.loads(block.code)]
    except Exception as e:
        raise AssertionError(f"{block.where()}: not valid {block.lang}: {e}") from None


def check_runtime_class(docs: list[object], where: str) -> None:
    """A RuntimeClass's handler is a containerd runtime that runs isolate-oci; a Pod uses it."""
    classes = [d for d in docs if isinstance(d, dict) and d.get("kind") == "RuntimeClass"]
    if not classes:
        return
    tomls = [d for d in docs if isinstance(d, dict) and "plugins" in d]
    assert tomls, f"{where}: a RuntimeClass but no containerd configuration"
    for rc in classes:
        assert rc.get("apiVersion") == "node.k8s.io/v1", f"{where}: RuntimeClass apiVersion {rc.get('apiVersion')!r}"
        handler, name = rc.get("handler"), rc["metadata"]["name"]
        runtimes = [t["plugins"]['io.containerd.grpc.v1.cri']["containerd"]["runtimes"] for t in tomls]
        found = [r[handler] for r in runtimes if handler in r]
        assert found, f"{where}: no containerd runtime named {handler!r} (the RuntimeClass's handler)"
        for rt in found:
            assert rt.get("runtime_type") == "io.containerd.runc.v2", f"{where}: runtime_type {rt!r}"
            binary = rt.get("options", {}).get("BinaryName", "")
            assert binary.startswith("/") and binary.endswith("/isolate-oci"), (
                f"{where}: BinaryName must be isolate-oci's absolute path, got {binary!r}")
        pods = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Pod"
                and d.get("spec", {}).get("runtimeClassName") == name]
        assert pods, f"{where}: no Pod with runtimeClassName: {name}"


# --- the tests -----------------------------------------------------------------------

@pytest.mark.root
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           no_leaks: None) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    data: list[object] = []
    ran = 0
    # In a fake host (tests/net/fakehost.py) with network state of its own: this thread,
    # and the shells and threads it starts, are in its network namespace, so the examples
    # that make networks, bridges and published ports touch none of the machine's.
    sys.path.insert(0, str(ROOT / "tests" / "net"))
    from fakehost import FakeHost

    from isolate import _spawn

    host = FakeHost(tmp_path / "net-state")
    monkeypatch.setenv("ISOLATE_NET_DIR", str(host.state))
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fake = os.open(f"/run/netns/{host.host}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _spawn.setns(fake, 0x40000000)          # CLONE_NEWNET
        ran = run_page(page, tmp_path, namespace, data)
    finally:
        _spawn.setns(home, 0x40000000)
        os.close(fake)
        os.close(home)
        from isolate.net import host as nethost

        nethost.close_all()            # its netlink sockets, which hold the fake host alive
        host.close()
        # What the plan cache keeps for the life of the process (a shared root's tmpfs, an
        # fd) is no example's leak: dropped before no_leaks looks, as conftest does per test.
        from isolate import _cache

        _cache.clear()
    check_runtime_class(data, str(page.relative_to(ROOT)))
    assert ran or page.name == "index.md", f"{page.relative_to(ROOT)}: no example runs"


def run_page(page: Path, tmp_path: Path, namespace: dict[str, object], data: list[object]) -> int:
    """Run a page's blocks in order; returns how many ran."""
    ran = 0
    for block in blocks(page):
        lang = block.lang
        assert lang, f"{block.where()}: a code block without a language"
        if lang.startswith("{") or lang in NOT_CODE:
            continue
        assert lang in CODE, f"{block.where()}: unknown language {lang!r}"
        if block.not_run is not None:
            continue
        ran += 1
        if lang == "python":
            run_python(block, namespace)
        elif lang == "console":
            run_console(block, tmp_path)
        elif lang in ("sh", "bash"):
            run_sh(block, tmp_path)
        else:
            data += parse_data(block)
    return ran


def test_not_run_marks_are_explained_and_few() -> None:
    marks = [(page, line, reason) for page in PAGES for line, reason in not_run_marks(page)]
    for page, line, reason in marks:
        assert len(reason) >= 10, f"{page.relative_to(ROOT)}:{line}: a not-run mark without its reason"
    placed = {(b.path, b.line - 1) for page in PAGES for b in blocks(page) if b.not_run is not None}
    for page, line, _ in marks:
        assert (page, line) in placed, f"{page.relative_to(ROOT)}:{line}: a not-run mark not right before a block"
    assert len(marks) <= MAX_NOT_RUN, f"{len(marks)} blocks are not run (at most {MAX_NOT_RUN})"


def test_guides_index_lists_every_guide() -> None:
    guides = ROOT / "docs" / "guides"
    index = (guides / "index.md").read_text()
    for page in guides.glob("*.md"):
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"index.md does not link to {page.name}"
            text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
            assert text.startswith("# ") and len(re.findall(r"^# ", text, re.M)) == 1, (
                f"{page.name}: one '# ' title, first")


def test_console_matching() -> None:
    """The output comparison itself: exact lines, ``...`` lines and ``...`` inside a line."""
    assert output_matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert output_matches(["a", "...", "b"], ["a", "b"])
    assert not output_matches(["a"], ["a", "b"])
    assert not output_matches([], ["x"])
    assert output_matches(['"pid": ...,'], ['"pid": 42,'])
    assert not output_matches(['"pid": 1,'], ['"pid": 42,'])
    assert console_commands("$ echo a \\\n> b\na b\n$ true\n") == [("echo a \\\nb", ["a b"]), ("true", [])]
