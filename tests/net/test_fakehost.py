"""The fake host itself: what every network test stands on."""

from __future__ import annotations

from fakehost import HOST_IP, UPSTREAM_IP, FakeHost


def test_the_fake_host_reaches_its_upstream_and_nothing_of_the_machine(fakehost: FakeHost) -> None:
    r = fakehost.run(["busybox", "ping", "-c1", "-W2", UPSTREAM_IP])
    assert r.returncode == 0, r.stderr
    assert f"inet {HOST_IP}/24" in fakehost.ip("-o", "-4", "addr", "show", "up0")
    # Only its own interfaces: lo and the uplink.
    names = [line.split(": ")[1].split("@")[0] for line in fakehost.ip("-o", "link").splitlines()]
    assert sorted(names) == ["lo", "up0"]
