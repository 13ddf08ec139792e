"""Reading every gateway's chain at once, from the pool they mirror to (``mirror.py``).

A cluster's ``andromede admin audit query`` and ``export`` go through any gateway; each
gateway's chain is in the pool, so the records of all of them are read from there. The
gateway keeps a copy of each chain's segments under ``cache_dir`` (fetching only the bytes it
does not have yet, at most once per ``refresh_seconds``) and reads them with the same
:class:`~andromede.audit.reader.SegmentReader` as its own trail.

Order and paging: each chain is read in its own order (seq), and the chains are merged by
record time, so that a page is in time order across gateways while no chain's records are
ever reordered. Each record carries its ``chain``; the cursor of the next page is the last
seq taken from each chain (``core.audit.format_after``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Final

from andromede.audit.mirror import RadosMirror
from andromede.audit.reader import SegmentReader
from andromede.core.audit import AuditQuery

REFRESH_SECONDS: Final = 1.0


class ChainsReader:
    """An :class:`andromede.ports.AuditReader` over every chain of a mirror."""

    def __init__(
        self, mirror: RadosMirror, cache_dir: Path, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self._mirror = mirror
        self._cache = cache_dir
        self._refresh = refresh_seconds
        self._readers: dict[str, SegmentReader] = {}
        # Segments copied whole: one the pool lists a later segment after is sealed (the
        # writer mirrors a segment's last group before the next segment's first), so once
        # copied it is never asked for again.
        self._sealed: dict[str, set[str]] = {}
        self._synced_at = -1e9
        self._sync_lock = threading.Lock()

    async def query(self, query: AuditQuery) -> list[dict[str, object]]:
        """Records of every chain matching ``query``, after the cursor ``query.after_chains``,
        at most ``query.limit``, merged by time."""
        if query.limit <= 0:
            return []
        await asyncio.to_thread(self._sync)
        after = dict(query.after_chains)
        chains = sorted(self._readers)
        pages = await asyncio.gather(
            *(
                self._readers[c].query(dataclasses.replace(query, after_seq=after.get(c, 0)))
                for c in chains
            )
        )
        streams = [
            [(str(r.get("time", "")), chain, i, r) for i, r in enumerate(page)]
            for chain, page in zip(chains, pages, strict=True)
        ]
        out: list[dict[str, object]] = []
        for _, chain, _, record in heapq.merge(*streams, key=lambda item: item[:3]):
            out.append({**record, "chain": chain})
            if len(out) >= query.limit:
                break
        return out

    # --- the local copy ------------------------------------------------------------------------
    def _sync(self) -> None:
        """Fetch what the pool holds and the copy lacks (blocking; at most every
        ``refresh_seconds``)."""
        with self._sync_lock:
            if time.monotonic() - self._synced_at < self._refresh:
                return
            chains = self._mirror.chains()
            for chain, names in chains.items():
                directory = self._cache / chain
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                sealed = self._sealed.setdefault(chain, set())
                sealed &= set(names)  # retention removed the others
                for i, name in enumerate(names):
                    if name in sealed:
                        continue
                    self._fetch(chain, name, directory / name)
                    if i + 1 < len(names):
                        sealed.add(name)
                for stale in set(os.listdir(directory)) - set(names):
                    with contextlib.suppress(FileNotFoundError):
                        (directory / stale).unlink()  # removed by retention
                if chain not in self._readers:
                    self._readers[chain] = SegmentReader(directory)
            for gone in set(self._readers) - set(chains):
                del self._readers[gone]
                self._sealed.pop(gone, None)
                shutil.rmtree(self._cache / gone, ignore_errors=True)
            self._synced_at = time.monotonic()

    def _fetch(self, chain: str, name: str, path: Path) -> None:
        held = path.stat().st_size if path.exists() else 0
        size = self._mirror.size(chain, name)
        if size <= held:
            return
        data = self._mirror.read(chain, name, held, size - held)
        # A reader may be scanning this file: append whole lines only, never rewrite.
        with path.open("ab") as fh:
            fh.write(data)
