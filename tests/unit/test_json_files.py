"""The JSON files and output of isolate-oci: what runc writes, and what earlier isolates wrote and read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isolate.cli.oci import main
from isolate.oci.state import ContainerState

# state.json of this record as isolate-oci has written it since state.json had an owner:
# one line, ASCII only, the fields in their order.  A newer isolate-oci must read the
# containers an older one left, and the other way round.
STATE = ContainerState(id="c1", bundle="/b\u00e9", pid=42, pid_start=1234,
                       created="2026-01-02T03:04:05.000000006Z",
                       config={"ociVersion": "1.2.0", "n": 1.5, "z": None},
                       cgroup={"name": "c1", "paths": {"": "/sys/fs/cgroup/c1"}},
                       annotations={"k": "v"}, owner={"pid": 7, "start": 8})
STATE_JSON = ('{"id": "c1", "bundle": "/b\\u00e9", "pid": 42, "pid_start": 1234, '
              '"created": "2026-01-02T03:04:05.000000006Z", '
              '"config": {"ociVersion": "1.2.0", "n": 1.5, "z": null}, "rootfs": "", '
              '"cgroup": {"name": "c1", "paths": {"": "/sys/fs/cgroup/c1"}}, "started": false, '
              '"annotations": {"k": "v"}, "owner": {"pid": 7, "start": 8}}')


def test_state_json_is_the_same_text_as_before_and_reads_back() -> None:
    assert STATE.to_json() == STATE_JSON
    assert ContainerState.from_json(STATE_JSON) == STATE
    # A field a newer isolate-oci adds is ignored, not an error.
    newer = json.dumps({**json.loads(STATE_JSON), "added_later": [1]})
    assert ContainerState.from_json(newer) == STATE


def test_bad_state_json_is_a_value_error() -> None:
    for text in ("", '{"id": "c1"', '{"id": "c1"} x'):
        with pytest.raises(ValueError):
            ContainerState.from_json(text)


def test_spec_writes_config_json_as_runc_spec_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # runc spec: json.MarshalIndent(spec, "", "\t"), no newline at the end.
    assert main(["spec", "--bundle", str(tmp_path)]) == 0
    text = (tmp_path / "config.json").read_text()
    assert text.startswith('{\n\t"ociVersion": "1.2.0",\n\t"process": {\n\t\t')
    assert text == json.dumps(json.loads(text), indent="\t")


def test_features_prints_json_indented_as_runc_features(capsys: pytest.CaptureFixture[str]) -> None:
    # runc features: an encoder with SetIndent("", "    ").
    assert main(["features"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('{\n    "ociVersionMin": "1.0.0",\n    "ociVersionMax": "1.2.0",\n')
    assert out == json.dumps(json.loads(out), indent=4) + "\n"
