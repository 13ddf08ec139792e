"""Background key jobs: re-wrapping DEKs after a rotation, destroying keys whose time is up.

Re-wrapping touches only manifests (the wrapped DEKs), never data: each object's DEK is
unwrapped under its old KEK version and wrapped under the current one, and the manifest is
swapped only if the object was not replaced meanwhile. Progress is saved on the key after
every page, so ``describe`` shows it (``scanned``: sealed blobs examined, ``rewrapped``: DEKs
moved to the new version); a restart simply scans again (what is done is skipped). Since other
gateways may wrap under the old version until their key cache expires, a re-wrap is done only
after a pass that began once that bound had passed since the rotation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from andromede.core.keys import KmsKey, RewrapProgress, Sealing
from andromede.core.models import Manifest, ObjectVersion
from andromede.ports import Clock, MetadataStore
from andromede.services.keys import Keys

log = logging.getLogger("andromede.keys")
PAGE = 200
# Added to the key-state cache bound before a re-wrap may call itself done (clock skew
# between gateways, a request that began just before its process saw the rotation).
SETTLE_MARGIN_S = 2.0


class KeyJobs:
    """One pass at a time; ``workers/loop.py`` runs them periodically, in one process per
    deployment (the one holding the job lease)."""

    def __init__(self, store: MetadataStore, keys: Keys, clock: Clock) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock

    async def run_once(self) -> None:
        """One pass of both jobs: due destructions, then pending re-wraps."""
        await self._keys.destroy_due()
        for key in await self._keys.keys_to_rewrap():
            await self.rewrap_key(key)

    async def rewrap_key(self, key: KmsKey) -> KmsKey:
        """Re-wrap every DEK under an older version of ``key``; returns the key when done."""
        assert key.rewrap is not None
        target = key.rewrap.target_version
        pass_started = self._clock.now()
        # ``rewrapped`` adds up over passes; ``scanned`` counts this pass.
        progress = RewrapProgress(
            target, rewrapped=key.rewrap.rewrapped, started=key.rewrap.started or pass_started
        )
        for bucket in await self._store.list_buckets(key.tenant):
            after: str | None = ""
            while after is not None:
                versions, after = await self._store.list_versions(bucket.name, after, PAGE)
                for version in versions:
                    sealed, changed = await self._rewrap_version(version, key, target)
                    progress = dataclasses.replace(
                        progress,
                        scanned=progress.scanned + sealed,
                        rewrapped=progress.rewrapped + changed,
                    )
                saved = await self._keys.save_progress(key, progress)
                if saved is None:
                    return key  # rotated again, disabled or destroyed: stop here
                key = saved
        progress = await self._rewrap_parts(key, target, progress)
        # Other gateway processes may have wrapped new DEKs under the old version for as long
        # as they cache key states: the job is done only with a pass that began after that.
        settled = key.rewrap.started if key.rewrap and key.rewrap.started else progress.started
        if settled is not None and pass_started < settled + dt.timedelta(
            seconds=self._keys.cache_seconds + SETTLE_MARGIN_S
        ):
            await self._keys.save_progress(key, progress)
            return key  # the next run makes another pass
        done = dataclasses.replace(progress, done=True, finished=self._clock.now())
        saved = await self._keys.save_progress(key, done)
        if saved is None:
            return key
        log.info("key %s: %d DEKs re-wrapped to version %d", key.key_id, done.rewrapped, target)
        await self._keys.record_failure(
            "kms:RewrapDone",
            key.tenant,
            key_id=key.key_id,
            version=str(target),
            rewrapped=str(done.rewrapped),
        )
        return saved

    async def _rewrap_sealing(
        self, sealing: Sealing, tenant: str, key: KmsKey, target: int
    ) -> Sealing | None:
        kek = sealing.kek
        if kek is None or kek.key_id != key.key_id or kek.version >= target:
            return None
        new_kek, wrapped = await self._keys.rewrap(
            tenant, kek, sealing.wrapped_dek, sealing.context, key
        )
        return dataclasses.replace(sealing, kek=new_kek, wrapped_dek=wrapped)

    async def _rewrap_version(
        self, version: ObjectVersion, key: KmsKey, target: int
    ) -> tuple[int, int]:
        """(sealed blobs examined, DEKs re-wrapped) for one object."""
        segments = list(version.manifest.segments)
        sealed = changed = 0
        for i, segment in enumerate(segments):
            if segment.sealing is None:
                continue
            sealed += 1
            sealing = await self._rewrap_sealing(segment.sealing, key.tenant, key, target)
            if sealing is not None:
                segments[i] = dataclasses.replace(segment, sealing=sealing)
                changed += 1
        if not changed:
            return sealed, 0
        manifest = Manifest(tuple(segments), version.manifest.format, version.encryption)
        swapped = await self._store.replace_manifest(
            version.bucket, version.key, version.version_id, manifest
        )
        return sealed, changed if swapped else 0

    async def _rewrap_parts(
        self, key: KmsKey, target: int, progress: RewrapProgress
    ) -> RewrapProgress:
        after: tuple[str, int] = ("", 0)
        while True:
            parts = await self._store.list_parts_after(after, PAGE)
            for part in parts:
                if part.sealing is None:
                    continue
                progress = dataclasses.replace(progress, scanned=progress.scanned + 1)
                sealing = await self._rewrap_sealing(part.sealing, key.tenant, key, target)
                if sealing is not None and await self._store.replace_part_sealing(
                    part.upload_id, part.part_number, part.blob.blob_id, sealing
                ):
                    progress = dataclasses.replace(progress, rewrapped=progress.rewrapped + 1)
            if len(parts) < PAGE:
                return progress
            after = (parts[-1].upload_id, parts[-1].part_number)
