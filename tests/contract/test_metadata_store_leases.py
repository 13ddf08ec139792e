"""Job leases, on SQLite and PostgreSQL: one holder at a time, taken over only once expired,
fenced by the epoch."""

from __future__ import annotations

import asyncio
import datetime as dt

from andromede.metadata.sql import SqlMetadataStore, open_store
from support.metadata import GRACE, T0

TERM = dt.timedelta(seconds=30)


async def test_one_holder_at_a_time_until_the_lease_expires(store: SqlMetadataStore) -> None:
    a = await store.take_lease("sweep", "gw-a", T0, TERM)
    assert a is not None
    assert (a.holder, a.epoch) == ("gw-a", 1)
    assert await store.take_lease("sweep", "gw-b", T0 + TERM / 2, TERM) is None
    # Another job is another lease.
    other = await store.take_lease("repair", "gw-b", T0, TERM)
    assert other is not None
    assert other.holder == "gw-b"
    # The holder taking it again renews it, same epoch.
    again = await store.take_lease("sweep", "gw-a", T0 + TERM / 2, TERM)
    assert again is not None
    assert again.epoch == 1
    assert again.expires == T0 + TERM / 2 + TERM
    # Expired: the next taker gets it, with the next epoch.
    b = await store.take_lease("sweep", "gw-b", again.expires, TERM)
    assert b is not None
    assert (b.holder, b.epoch) == ("gw-b", 2)
    leases = await store.list_leases()
    assert [(x.job, x.holder, x.epoch) for x in leases] == [
        ("repair", "gw-b", 1),
        ("sweep", "gw-b", 2),
    ]


async def test_a_renewal_or_release_after_a_takeover_is_refused(store: SqlMetadataStore) -> None:
    a = await store.take_lease("scrub", "gw-a", T0, TERM)
    assert a is not None
    renewed = await store.renew_lease(a, T0 + TERM / 3, TERM)
    assert renewed is not None
    assert renewed.expires == T0 + TERM / 3 + TERM
    b = await store.take_lease("scrub", "gw-b", renewed.expires, TERM)
    assert b is not None
    assert b.epoch == 2
    # gw-a comes back from a pause: its epoch is stale, it renews and releases nothing.
    assert await store.renew_lease(renewed, renewed.expires, TERM) is None
    await store.release_lease(renewed, renewed.expires)
    (lease,) = await store.list_leases()
    assert (lease.holder, lease.epoch, lease.expires) == ("gw-b", 2, b.expires)


async def test_a_released_lease_is_free_at_once(store: SqlMetadataStore) -> None:
    a = await store.take_lease("rewrap", "gw-a", T0, TERM)
    assert a is not None
    await store.release_lease(a, T0 + dt.timedelta(seconds=1))
    b = await store.take_lease("rewrap", "gw-b", T0 + dt.timedelta(seconds=1), TERM)
    assert b is not None
    assert (b.holder, b.epoch) == ("gw-b", 2)


async def test_a_lease_that_ran_out_untaken_is_renewed(store: SqlMetadataStore) -> None:
    """Nobody took it meanwhile, so nobody else ran the job: the holder keeps its epoch."""
    a = await store.take_lease("drain", "gw-a", T0, TERM)
    assert a is not None
    late = await store.renew_lease(a, T0 + 2 * TERM, TERM)
    assert late is not None
    assert late.epoch == 1


async def test_racing_takers_from_several_connections_get_one_lease(database_url: str) -> None:
    """Eight stores (eight connection pools, as eight gateways) race for one free lease."""
    stores = [await open_store(database_url, garbage_grace=GRACE) for _ in range(8)]
    try:
        won = await asyncio.gather(
            *(s.take_lease("orphans", f"gw-{n}", T0, TERM) for n, s in enumerate(stores))
        )
        holders = [lease.holder for lease in won if lease is not None]
        assert len(holders) == 1
        (lease,) = await stores[0].list_leases()
        assert (lease.holder, lease.epoch) == (holders[0], 1)
    finally:
        for s in stores:
            await s.close()


async def test_a_holder_known_dead_is_taken_from_at_once(store: SqlMetadataStore) -> None:
    dead = await store.take_lease("sweep", "host:41:dead", T0, TERM)
    assert dead is not None
    # Naming another holder as dead takes nothing.
    assert await store.take_lease("sweep", "host:42:b", T0, TERM, take_from="host:40:x") is None
    taken = await store.take_lease("sweep", "host:42:b", T0, TERM, take_from="host:41:dead")
    assert taken is not None
    assert (taken.holder, taken.epoch) == ("host:42:b", 2)
