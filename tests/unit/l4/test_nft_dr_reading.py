"""The DR table's reading budget (l4/dataplane/nftables.py): the whole netdev table (flow maps,
an element per connection) is listed within CT_SHARE of a CPU, the counters on every tick, and a
change of services or real servers forces a full listing. `nft` is replaced by a fake."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from halb.l4.dataplane import nftables
from halb.l4.dataplane.nftables import NftablesDataPlane
from halb.l4.model import Timeouts
from halb.l4.nft_rules import Pick, RuleDest, RuleService, Ruleset


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def dr(dests: int) -> Ruleset:
    svc = RuleService(1, "tcp", "198.18.0.100", 80,
                      tuple(RuleDest(i, f"198.18.0.{10 + i}", 80, device="eth0")
                            for i in range(1, dests + 1)),
                      Pick(slots=(1,)))
    return Ruleset("netdev", (svc,), Timeouts(), ("eth0",))


@pytest.fixture
def plane(monkeypatch: pytest.MonkeyPatch) -> tuple[NftablesDataPlane, list[str], FakeClock]:
    dp = NftablesDataPlane(nft="/bin/false")
    calls: list[str] = []
    clock = FakeClock()

    async def fake_list(family: str, what: str = "table") -> dict[str, Any]:
        calls.append(what)
        if what == "table":
            clock.t += 0.01  # a listing that takes 10 ms: due again 0.2 s later at 5 %
            return {"counter": [{"name": "n1_1", "packets": len(calls), "bytes": 0}],
                    "map": [{"name": "f1", "elem": []}]}
        return {"counter": [{"name": "n1_1", "packets": len(calls), "bytes": 0}]}

    monkeypatch.setattr(dp, "_list", fake_list)
    monkeypatch.setattr(nftables.time, "monotonic", clock)
    return dp, calls, clock


def test_full_listing_within_the_budget_counters_every_tick(
        plane: tuple[NftablesDataPlane, list[str], FakeClock]) -> None:
    dp, calls, clock = plane

    async def main() -> None:
        first = await dp._dr_listing()
        assert calls == ["table"] and first["map"][0]["name"] == "f1"
        clock.t += 0.1  # before the budget allows another full listing
        second = await dp._dr_listing()
        assert calls == ["table", "counters"]
        assert second["map"] == first["map"]  # the flows as last read
        assert second["counter"][0]["packets"] == 2  # the counters fresh
        clock.t += 0.2  # 0.3 s after a 10 ms listing: 3.3 % of a CPU, below CT_SHARE
        await dp._dr_listing()
        assert calls == ["table", "counters", "table"]

    asyncio.run(main())


def test_a_change_of_real_servers_forces_a_full_listing(
        plane: tuple[NftablesDataPlane, list[str], FakeClock],
        monkeypatch: pytest.MonkeyPatch) -> None:
    dp, calls, _ = plane
    monkeypatch.setattr(dp, "_run", lambda text: None)
    monkeypatch.setattr(dp, "rulesets", lambda table: {"ip": Ruleset("ip"), "netdev": rulesets[0]})
    dp._started = True
    rulesets = [dr(1)]

    async def main() -> None:
        dp.sync(object())  # type: ignore[arg-type]
        await dp._dr_listing()
        await dp._dr_listing()
        assert calls == ["table", "counters"]
        rulesets[0] = dr(1)  # the same members (a new pick would be the same): no full reading
        dp.sync(object())  # type: ignore[arg-type]
        await dp._dr_listing()
        assert calls[-1] == "counters"
        rulesets[0] = dr(2)  # a real server added
        dp.sync(object())  # type: ignore[arg-type]
        await dp._dr_listing()
        assert calls[-1] == "table"

    asyncio.run(main())
