"""state.json records and the state root's private directories, without a container."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isolate import ConfigError
from isolate.oci.state import ContainerState, StateDir, check_id, list_ids, proc_start_time, sweep


def record(**kw: object) -> ContainerState:
    base: dict[str, object] = dict(id="c1", bundle="/b", pid=-1, pid_start=0, created="now", config={})
    base.update(kw)
    return ContainerState(**base)  # type: ignore[arg-type]


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@given(st.text(min_size=1, max_size=20))
def test_a_private_directory_name_is_never_a_container_id(rest: str) -> None:
    with pytest.raises(ConfigError):
        check_id("~" + rest)


def test_the_owner_round_trips_and_older_records_have_none() -> None:
    me = {"pid": os.getpid(), "pid_start": proc_start_time(os.getpid()) or 0}
    assert ContainerState.from_json(record(owner=me).to_json()).owner == me
    assert ContainerState.from_json('{"id": "c1", "bundle": "/b", "pid": 5, "pid_start": 7, "created": "x", '
                                    '"config": {}}').owner is None


def test_status_while_creating_and_once_the_creator_died(tmp_path: Path) -> None:
    sd = StateDir(str(tmp_path), "c1")
    me = {"pid": os.getpid(), "pid_start": proc_start_time(os.getpid()) or 0}
    assert sd.status(record(owner=me)) == "creating"
    assert sd.status(record(owner={"pid": dead_pid(), "pid_start": 1})) == "stopped"
    # A reused pid is not the owner: its start time differs.
    assert sd.status(record(owner={"pid": os.getpid(), "pid_start": me["pid_start"] + 1})) == "stopped"
    assert sd.oci_state(record(owner=me))["pid"] == 0


def test_begin_is_atomic_and_says_what_to_do_with_a_dead_creators_container(tmp_path: Path) -> None:
    me = {"pid": os.getpid(), "pid_start": proc_start_time(os.getpid()) or 0}
    sd = StateDir(str(tmp_path), "c1")
    sd.begin(record(owner=me))
    sd.unlock()
    assert os.listdir(tmp_path) == ["c1"] and sd.read().owner == me
    again = StateDir(str(tmp_path), "c1")
    with pytest.raises(ConfigError, match=r"already exists$"):
        again.begin(record(owner=me))            # its creator (this process) is alive
    sd.write(record(owner={"pid": dead_pid(), "pid_start": 1}))
    with pytest.raises(ConfigError, match=r"that died: `delete --force c1` removes it"):
        again.begin(record(owner=me))
    assert os.listdir(tmp_path) == ["c1"]


def test_sweep_removes_only_the_dead_creators_directories(tmp_path: Path) -> None:
    mine = f"~{os.getpid()}.{proc_start_time(os.getpid())}.0001"
    reused = f"~{os.getpid()}.1.0002"
    dead = f"~{dead_pid()}.1.0003"
    for name in (mine, reused, dead, "c1"):
        (tmp_path / name).mkdir()
    (tmp_path / "c1" / "state.json").write_text(record().to_json())
    (tmp_path / dead / "state.json").write_text(record().to_json())
    assert list_ids(str(tmp_path)) == ["c1"]
    sweep(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted([mine, "c1"])
