"""The default seccomp profile refuses ioctl TIOCSTI and TIOCLINUX, whatever the high bits.

The kernel's ioctl takes its request as an ``unsigned int``: ``TIOCSTI | 1 << 32``
is TIOCSTI.  Both compilers' programs are run through the BPF interpreter of
``test_seccomp_compile``; the attack itself is in tests/security/test_defaults.py.
"""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_seccomp_compile import run_bpf

from isolate.seccomp import (OCI_DEFAULT_CAPS, REFUSED_IOCTLS, ArgCmp, SeccompProfile,
                             _low32_not_in, available)

pytestmark = [
    pytest.mark.skipif(not available(), reason="libseccomp.so.2 is not installed"),
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86-64"),
]

X86_64 = 0xC000003E
IOCTL = 16
ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
TCGETS, TIOCGWINSZ, FIONREAD = 0x5401, 0x5413, 0x541B


def holds(cmp: ArgCmp, args: tuple[int, ...]) -> bool:
    return args[cmp.index] & cmp.mask == cmp.value


@pytest.mark.parametrize("caps", [OCI_DEFAULT_CAPS, frozenset(), OCI_DEFAULT_CAPS | {"CAP_SYS_ADMIN"}],
                         ids=["oci", "none", "sys_admin"])
@pytest.mark.parametrize("compiler", ["ranges", "libseccomp"])
def test_default_profile_refuses_tiocsti_and_tioclinux_with_any_high_bits(caps: frozenset[str],
                                                                         compiler: str) -> None:
    assert REFUSED_IOCTLS == (TIOCSTI, TIOCLINUX)
    profile = SeccompProfile.default(caps)
    prog = profile._compile_ranges() if compiler == "ranges" else profile._compile_libseccomp()
    assert prog is not None
    for high in (0, 1, 0x80000000, 0xFFFFFFFF):
        for request in REFUSED_IOCTLS:
            assert run_bpf(prog, X86_64, IOCTL, (0, high << 32 | request)) == EPERM, hex(request)
        for request in (TCGETS, TIOCGWINSZ, FIONREAD, 0, 0xFFFFFFFF, TIOCSTI ^ 1, TIOCLINUX ^ 0x100):
            assert run_bpf(prog, X86_64, IOCTL, (3, high << 32 | request)) == ALLOW, hex(request)


def test_the_range_compiler_still_compiles_the_default_profile() -> None:
    # The ioctl check must not push the default profile onto libseccomp's slower program.
    prog = SeccompProfile.default(OCI_DEFAULT_CAPS)._compile_ranges()
    assert prog is not None and len(prog) // 8 < 256


@given(st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=3).filter(
           lambda vs: bin(max(vs) ^ min(vs)).count("1") <= 2),
       st.integers(0, 2**64 - 1))
def test_low32_not_in_holds_exactly_outside_the_values(values: list[int], arg: int) -> None:
    common = 0xFFFFFFFF
    for v in values:
        common &= ~(v ^ values[0])
    if bin(~common & 0xFFFFFFFF).count("1") > 4:
        return
    alternatives = _low32_not_in(values, 1)
    for probe in (arg, arg & ~0xFFFFFFFF | values[0], arg & ~0xFFFFFFFF | values[-1]):
        got = any(all(holds(c, (0, probe)) for c in alt) for alt in alternatives)
        assert got == (probe & 0xFFFFFFFF not in values), (hex(probe), [hex(v) for v in values])
