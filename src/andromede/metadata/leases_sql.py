"""The metadata store's part in job leases (``core/leases.py``): take, renew, release, list.

A mixin of :class:`andromede.metadata.sql.SqlMetadataStore`, with its rules: each public method
is one transaction. On PostgreSQL the lease row is locked (``FOR UPDATE``) before it is judged;
on SQLite write transactions are serialised already (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from andromede.core.leases import Lease
from andromede.metadata import schema as t
from andromede.metadata.engines import Row, Transactions, all_rows, first, insert_if_absent

__all__ = ["LeasesMixin"]


def _lease(row: Row) -> Lease:
    return Lease(row.job, row.holder, int(row.epoch), row.expires)


class LeasesMixin:
    """Job lease methods of the metadata store; needs the store's ``_tx``."""

    _tx: Transactions

    async def take_lease(
        self,
        job: str,
        holder: str,
        now: dt.datetime,
        term: dt.timedelta,
        take_from: str | None = None,
    ) -> Lease | None:
        """Take ``job``'s lease for ``holder`` until ``now + term`` if it is free, expired,
        already ``holder``'s (renewed then, same epoch) or ``take_from``'s (a holder the caller
        knows to be dead); None while another holder's lease runs. Taking it from someone else,
        or after it expired, moves to the next epoch."""
        j = t.job_leases
        expires = now + term

        async def op(conn: AsyncConnection) -> Lease | None:
            for _ in range(2):  # a row another process inserted meanwhile: judge it instead
                query = sa.select(j).where(j.c.job == job).with_for_update()
                row = await first(conn, query)
                if row is None:
                    values = {"job": job, "holder": holder, "epoch": 1, "expires": expires}
                    if await insert_if_absent(conn, j, {**values, "acquired": now}, [j.c.job]):
                        return Lease(job, holder, 1, expires)
                    continue
                current = _lease(row)
                others = current.holder not in (holder, take_from)
                if others and now < current.expires:
                    return None
                epoch = current.epoch if current.held_by(holder, now) else current.epoch + 1
                changes: dict[str, object] = {"holder": holder, "epoch": epoch, "expires": expires}
                if epoch != current.epoch:
                    changes["acquired"] = now
                await conn.execute(j.update().where(j.c.job == job).values(**changes))
                return Lease(job, holder, epoch, expires)
            return None

        return await self._tx.write(op)

    async def renew_lease(self, lease: Lease, now: dt.datetime, term: dt.timedelta) -> Lease | None:
        """Extend ``lease`` to ``now + term``; None when it is no longer its holder's (another
        took it over: the epoch moved). A lease that ran out but that nobody took is renewed:
        nobody else ran the job meanwhile."""
        j = t.job_leases
        expires = now + term
        stmt = (
            j.update()
            .where(j.c.job == lease.job, j.c.holder == lease.holder, j.c.epoch == lease.epoch)
            .values(expires=expires)
            .returning(j.c.job)
        )

        async def op(conn: AsyncConnection) -> bool:
            return await first(conn, stmt) is not None

        renewed = await self._tx.write(op)
        return Lease(lease.job, lease.holder, lease.epoch, expires) if renewed else None

    async def release_lease(self, lease: Lease, now: dt.datetime) -> None:
        """Give ``lease`` up (it expires now), so that another process may take it at once; a
        no-op when it is no longer its holder's."""
        j = t.job_leases

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(
                j.update()
                .where(j.c.job == lease.job, j.c.holder == lease.holder, j.c.epoch == lease.epoch)
                .values(expires=now)
            )

        await self._tx.write(op)

    async def list_leases(self) -> list[Lease]:
        """Every job's lease, by job name (expired ones included: their expiry says so)."""
        j = t.job_leases
        rows = await self._tx.read(lambda conn: all_rows(conn, sa.select(j).order_by(j.c.job)))
        return [_lease(row) for row in rows]
