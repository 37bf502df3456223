"""Bearer tokens of the REST API: only hashes kept, idle and absolute expiry (in process)."""

from __future__ import annotations

from cardiotwin.api import TokenRegistry


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_tokens_expire_when_idle_or_old_and_are_kept_only_as_hashes():
    clock = Clock()
    reg = TokenRegistry(idle_s=60, max_age_s=300, clock=clock)
    tok = reg.issue("alice")
    assert len(tok) >= 40 and reg.actor(tok) == "alice"
    assert tok not in repr(vars(reg)) and reg.actor("forged") is None
    for _ in range(4):  # used every 50 s: alive until the absolute limit
        clock.t += 50
        assert reg.actor(tok) == "alice"
    clock.t += 101  # 301 s after issue
    assert reg.actor(tok) is None
    idle = reg.issue("bob")
    clock.t += 61
    assert reg.actor(idle) is None
