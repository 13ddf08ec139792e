"""Proof of residency: a signed report of where every shard of a bucket's objects lives.

The report is canonical JSON (sorted keys, no spaces) whose ``signature`` is an Ed25519
signature over the same document without that field; ``andromede residency verify`` checks it
offline with the exported public key, and against the server when it can reach it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from andromede.auth.policy import authorize_bucket
from andromede.core import errors
from andromede.core.models import Principal
from andromede.core.placement import ANY_JURISDICTION, Site
from andromede.core.residency import REPORT_FORMAT, REPORT_KIND, canonical
from andromede.ports import MetadataStore
from andromede.services.placement import Placement

_PAGE = 500


class Residency:
    """Builds signed residency reports."""

    def __init__(
        self,
        store: MetadataStore,
        placement: Placement,
        sign: Callable[[bytes], bytes],
        public_pem: bytes,
        now: Callable[[], str],
    ) -> None:
        self._store = store
        self._placement = placement
        self._sign = sign
        self.public_pem = public_pem
        self._now = now

    @staticmethod
    def _shard(index: int, name: str, site: Site | None) -> dict[str, Any]:
        """One shard's entry: where it is, as the operator registered that site."""
        return {
            "index": index,
            "site": name,
            "jurisdiction": site.jurisdiction if site else "unknown",
            "failure_domain": site.failure_domain if site else "unknown",
            "provider": site.provider if site else "unknown",
        }

    async def report(self, principal: Principal, bucket_name: str) -> dict[str, Any]:
        """The bucket's report: operators, or the bucket's own tenant."""
        bucket = await self._store.get_bucket(bucket_name)
        if bucket is None:
            raise errors.NoSuchBucket(BucketName=bucket_name)
        if not principal.is_operator:
            authorize_bucket(principal, bucket)
        await self._placement.refresh(force=True)
        region = self._placement.region_of(bucket)
        sites = self._placement.sites
        objects: list[dict[str, Any]] = []
        totals: dict[str, dict[str, int]] = {}
        spread_ok = True
        after = ""
        while True:
            page = await self._store.list_versions(bucket.name, after, _PAGE)
            for version in page:
                segments = []
                for segment in version.manifest.segments:
                    layout = segment.blob.layout
                    shards = [
                        self._shard(index, name, sites.get(name))
                        for index, name in enumerate(layout.sites)
                    ]
                    per_shard = -(-segment.size // layout.redundancy.k)
                    for shard in shards:
                        total = totals.setdefault(
                            shard["jurisdiction"], {"shards": 0, "object_bytes": 0}
                        )
                        total["shards"] += 1
                        total["object_bytes"] += per_shard
                    domains = {s["failure_domain"] for s in shards}
                    spread_ok &= len(domains) >= min(
                        region.min_failure_domains, layout.redundancy.shards
                    )
                    segments.append(
                        {
                            "blob": segment.blob.blob_id,
                            "size": segment.size,
                            "redundancy": str(layout.redundancy),
                            "shards": shards,
                        }
                    )
                objects.append(
                    {
                        "key": version.key,
                        "version_id": version.version_id,
                        "size": version.size,
                        "etag": version.etag,
                        "segments": segments,
                    }
                )
            if len(page) < _PAGE:
                break
            after = page[-1].key
        allowed = region.jurisdiction_list()
        document: dict[str, Any] = {
            "kind": REPORT_KIND,
            "format": REPORT_FORMAT,
            "bucket": bucket.name,
            "tenant": bucket.tenant,
            "region": {
                "name": region.name,
                "jurisdictions": allowed,
                "redundancy": str(region.redundancy),
                "min_failure_domains": region.min_failure_domains,
            },
            "generated": self._now(),
            "objects": objects,
            "totals": totals,
            # every shard in an allowed jurisdiction, every blob over enough failure domains
            "within_policy": spread_ok
            and all(j in allowed or ANY_JURISDICTION in allowed for j in totals),
            "public_key_sha256": hashlib.sha256(self.public_pem).hexdigest(),
        }
        document["signature"] = base64.b64encode(self._sign(canonical(document))).decode()
        return document
