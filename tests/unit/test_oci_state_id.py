"""Container ids are checked as runc checks them, before anything is created."""

from __future__ import annotations

import pytest

from isolate import ConfigError
from isolate.oci.state import check_id


@pytest.mark.parametrize("cid", ["a", "box-1", "A.b_c+d", "0", "x" * 1024])
def test_runc_ids_are_accepted(cid: str) -> None:
    assert check_id(cid) == cid


@pytest.mark.parametrize("cid", ["", ".", "..", "c1\n", "a/b", "a b", "caf\u00e9", "\u0430", "x" * 1025])
def test_other_ids_are_refused_naming_the_id(cid: str) -> None:
    with pytest.raises(ConfigError, match="container id"):
        check_id(cid)
