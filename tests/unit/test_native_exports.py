"""The compiled core exports its module init only: cffi calls iso_* inside the module,
so nothing else of it is anyone's to link against or interpose (-fvisibility=hidden)."""

from __future__ import annotations

import ctypes

import pytest

from isolate import _native
from isolate._native import lib

dll = ctypes.CDLL(_native.__file__)


def test_the_module_init_is_exported() -> None:
    assert hasattr(dll, "PyInit__native")


@pytest.mark.parametrize("name", ["iso_spawn", "iso_release", "iso_helper_load", "iso_netns_new",
                                  "iso_clone", "iso_wire_write", "iso_helper_get",
                                  "iso_loopback_up", "iso_send_fd", "iso_clone3_vm"])
def test_the_c_functions_are_not(name: str) -> None:
    assert not hasattr(dll, name)


def test_cffi_still_reaches_them() -> None:
    assert lib.iso_setns(-1, 0) < 0
