"""Proof of residency: a signed report of where every shard of a bucket's objects lives.

The report is canonical JSON (sorted keys, no spaces) whose ``signature`` is an Ed25519
signature over the same document without that field; ``andromede residency verify`` checks it
offline with the exported public key, and against the server when it can reach it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from andromede.auth.policy import authorize_bucket
from andromede.core import errors
from andromede.core.models import Principal
from andromede.core.placement import ANY_JURISDICTION, Redundancy, Region, Site
from andromede.core.residency import REPORT_FORMAT, REPORT_KIND, canonical
from andromede.ports import MetadataStore
from andromede.services.placement import Placement

_PAGE = 500
_UNKNOWN = "unknown"  # what a shard on a site no longer registered is placed in


@dataclass(frozen=True)
class ShardPlace:
    """Where one shard is, as the operator registered its site."""

    index: int
    site: str
    jurisdiction: str
    failure_domain: str
    provider: str


@dataclass(frozen=True)
class SegmentPlaces:
    """One blob of an object version and its shards."""

    blob: str
    size: int
    redundancy: Redundancy
    shards: tuple[ShardPlace, ...]


@dataclass(frozen=True)
class ObjectPlaces:
    """One object version and where its bytes are."""

    key: str
    version_id: str
    size: int
    etag: str
    segments: tuple[SegmentPlaces, ...]


@dataclass(frozen=True)
class JurisdictionTotal:
    """Shards in one jurisdiction, and the object bytes they carry."""

    shards: int = 0
    object_bytes: int = 0


@dataclass(frozen=True)
class ResidencyReport:
    """A bucket's residency report; :func:`report_document` is its signed form."""

    bucket: str
    tenant: str
    region: Region
    generated: str
    objects: tuple[ObjectPlaces, ...]
    totals: Mapping[str, JurisdictionTotal]  # by jurisdiction, in the order first met
    # every shard in an allowed jurisdiction, every blob over enough failure domains
    within_policy: bool
    public_key_sha256: str
    signature: str = ""  # base64 Ed25519 over canonical(report_document(...))


def report_document(report: ResidencyReport) -> dict[str, object]:
    """The report as the JSON document that is signed, served and verified offline."""
    region = report.region
    return {
        "kind": REPORT_KIND,
        "format": REPORT_FORMAT,
        "bucket": report.bucket,
        "tenant": report.tenant,
        "region": {
            "name": region.name,
            "jurisdictions": region.jurisdiction_list(),
            "redundancy": str(region.redundancy),
            "min_failure_domains": region.min_failure_domains,
        },
        "generated": report.generated,
        "objects": [_object_document(o) for o in report.objects],
        "totals": {
            code: {"shards": t.shards, "object_bytes": t.object_bytes}
            for code, t in report.totals.items()
        },
        "within_policy": report.within_policy,
        "public_key_sha256": report.public_key_sha256,
        "signature": report.signature,
    }


def _object_document(version: ObjectPlaces) -> dict[str, object]:
    return {
        "key": version.key,
        "version_id": version.version_id,
        "size": version.size,
        "etag": version.etag,
        "segments": [
            {
                "blob": segment.blob,
                "size": segment.size,
                "redundancy": str(segment.redundancy),
                "shards": [dataclasses.asdict(shard) for shard in segment.shards],
            }
            for segment in version.segments
        ],
    }


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
    def _shard(index: int, name: str, site: Site | None) -> ShardPlace:
        """One shard's entry: where it is, as the operator registered that site."""
        if site is None:
            return ShardPlace(index, name, _UNKNOWN, _UNKNOWN, _UNKNOWN)
        return ShardPlace(index, name, site.jurisdiction, site.failure_domain, site.provider)

    async def report(self, principal: Principal, bucket_name: str) -> ResidencyReport:
        """The bucket's signed report: operators, or the bucket's own tenant."""
        bucket = await self._store.get_bucket(bucket_name)
        if bucket is None:
            raise errors.NoSuchBucket(BucketName=bucket_name)
        if not principal.is_operator:
            authorize_bucket(principal, bucket)
        await self._placement.refresh(force=True)
        region = self._placement.region_of(bucket)
        sites = self._placement.sites
        objects: list[ObjectPlaces] = []
        totals: dict[str, JurisdictionTotal] = {}
        spread_ok = True
        after: str | None = ""
        while after is not None:
            page, after = await self._store.list_versions(bucket.name, after, _PAGE)
            for version in page:
                segments = []
                for segment in version.manifest.segments:
                    layout = segment.blob.layout
                    shards = tuple(
                        self._shard(index, name, sites.get(name))
                        for index, name in enumerate(layout.sites)
                    )
                    per_shard = -(-segment.size // layout.redundancy.k)
                    for shard in shards:
                        total = totals.get(shard.jurisdiction, JurisdictionTotal())
                        totals[shard.jurisdiction] = JurisdictionTotal(
                            total.shards + 1, total.object_bytes + per_shard
                        )
                    domains = {s.failure_domain for s in shards}
                    spread_ok &= len(domains) >= min(
                        region.min_failure_domains, layout.redundancy.shards
                    )
                    segments.append(
                        SegmentPlaces(segment.blob.blob_id, segment.size, layout.redundancy, shards)
                    )
                objects.append(
                    ObjectPlaces(
                        version.key,
                        version.version_id,
                        version.size,
                        version.etag,
                        tuple(segments),
                    )
                )
        allowed = region.jurisdiction_list()
        unsigned = ResidencyReport(
            bucket=bucket.name,
            tenant=bucket.tenant,
            region=region,
            generated=self._now(),
            objects=tuple(objects),
            totals=totals,
            within_policy=spread_ok
            and all(j in allowed or ANY_JURISDICTION in allowed for j in totals),
            public_key_sha256=hashlib.sha256(self.public_pem).hexdigest(),
        )
        signature = self._sign(canonical(report_document(unsigned)))
        return dataclasses.replace(unsigned, signature=base64.b64encode(signature).decode())
