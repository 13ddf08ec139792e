"""Caches across gateways: three ``andromede serve`` on one PostgreSQL database (separate data
dirs standing in for hosts). A change made through gateway A reaches a gateway C that had the
old state cached within the bound each cache documents:

- an access key deleted: refused within ``key_cache_seconds``;
- a KMS key disabled: its objects refused within ``kms_cache_seconds``;
- a region added: usable as a LocationConstraint within ``placement_refresh_seconds`` (at once,
  in fact: an unknown LocationConstraint makes a gateway reload its registry);
- a site drained: no new data placed on it within ``placement_refresh_seconds``.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator

import pytest
from botocore.exceptions import ClientError

from support.encryption import operator, root_tenant, sse_kms
from support.postgres import create_database
from support.s3errors import error_of
from support.server import Server, running_server

pytestmark = pytest.mark.postgres

KEY_CACHE_S = 1.0
KMS_CACHE_S = 1.0
REFRESH_S = 1.0
MARGIN_S = 1.5  # the test's own pace (a boto3 call, a process switch), on a loaded machine


@pytest.fixture(scope="module")
def gateways(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    url = create_database(postgres_url, "caches_" + secrets.token_hex(4))
    env = {
        "ANDROMEDE_DATABASE_URL": url,
        "ANDROMEDE_KEY_CACHE_SECONDS": str(KEY_CACHE_S),
        "ANDROMEDE_KMS_CACHE_SECONDS": str(KMS_CACHE_S),
        "ANDROMEDE_PLACEMENT_REFRESH_SECONDS": str(REFRESH_S),
        "ANDROMEDE_DEFAULT_SITE_JURISDICTION": "FR",
    }
    root = tmp_path_factory.mktemp("caches")
    # The built-in keystore keeps the sealed keys in a directory: shared by the gateways here,
    # as a cluster would share it (or use a PKCS#11 or KMIP key manager instead).
    env["ANDROMEDE_KEYSTORE_DIR"] = str(root / "keystore")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_server(root / f"gw-{n}", **env)) for n in "abc"]


def _first_refusal(attempt: Callable[[], object], within: float) -> tuple[float, str]:
    """Call ``attempt`` until it raises ClientError: (seconds it took, the error code)."""
    start = time.monotonic()
    while True:
        try:
            attempt()
        except ClientError as exc:
            return time.monotonic() - start, str(exc.response["Error"]["Code"])
        assert time.monotonic() - start < within, "still served past the bound"
        time.sleep(0.05)


def _first_success(attempt: Callable[[], object], within: float) -> tuple[float, str | None]:
    """Call ``attempt`` until it succeeds: (seconds it took, the last error code seen)."""
    start, code = time.monotonic(), None
    while True:
        try:
            attempt()
        except ClientError as exc:
            code = str(exc.response["Error"]["Code"])
            assert time.monotonic() - start < within, f"still refused ({code}) past the bound"
            time.sleep(0.05)
            continue
        return time.monotonic() - start, code


def test_a_key_deleted_through_a_is_refused_by_c_within_the_bound(gateways: list[Server]) -> None:
    a, _, c = gateways
    _, access, secret = a.new_tenant()
    through_c = c.client(access, secret)
    through_c.list_buckets()  # C has the key cached now
    operator(a).request("DELETE", f"/v1/keys/{access}")
    took, code = _first_refusal(through_c.list_buckets, KEY_CACHE_S + MARGIN_S)
    assert code == "InvalidAccessKeyId"
    print(f"access key deleted through A: refused by C after {took:.2f} s")


def test_a_kms_key_disabled_through_a_is_refused_by_c_within_the_bound(
    gateways: list[Server],
) -> None:
    a, b, c = gateways
    tenant = root_tenant(a)
    key_id = str(operator(a).request("POST", "/v1/kms/keys", {"tenant": tenant})["key_id"])
    bucket = "kms-" + secrets.token_hex(4)
    s3_c = c.client(a.access_key, a.secret_key)
    b.client(a.access_key, a.secret_key).create_bucket(Bucket=bucket)
    s3_c.put_object(
        Bucket=bucket, Key="k", Body=b"sealed under the tenant's key", **sse_kms(key_id)
    )
    assert s3_c.get_object(Bucket=bucket, Key="k")["Body"].read()  # cached on C: state, DEK
    operator(a).request("POST", f"/v1/kms/keys/{key_id}/disable")

    def read() -> object:
        return s3_c.get_object(Bucket=bucket, Key="k")["Body"].read()

    took, code = _first_refusal(read, KMS_CACHE_S + MARGIN_S)
    assert code == "KMS.DisabledException"
    print(f"KMS key disabled through A: refused by C after {took:.2f} s")


def test_a_region_added_through_a_is_usable_on_c_within_the_bound(gateways: list[Server]) -> None:
    a, _, c = gateways
    s3_c = c.client(a.access_key, a.secret_key)
    region = "fr-" + secrets.token_hex(3)

    def create() -> None:
        s3_c.create_bucket(
            Bucket="rg-" + secrets.token_hex(4),
            CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
        )

    with pytest.raises(ClientError) as unknown:
        create()  # C has loaded its registry without it
    assert error_of(unknown)[0] == "InvalidLocationConstraint"
    policy = {"name": region, "jurisdictions": ["FR"], "redundancy": "replicas:1"}
    operator(a).request("POST", "/v1/regions", policy)
    # A LocationConstraint C does not know makes it reload its registry at once, so this is
    # usually immediate; the refresh interval is the bound either way.
    took, code = _first_success(create, REFRESH_S + MARGIN_S)
    assert code in (None, "InvalidLocationConstraint")
    print(f"region added through A: usable on C after {took:.2f} s")


def _sites_of(gateway: Server, bucket: str) -> dict[str, set[str]]:
    """Each object's sites, from the bucket's residency report."""
    report = operator(gateway).request("GET", f"/v1/residency/{bucket}")
    return {
        o["key"]: {shard["site"] for seg in o["segments"] for shard in seg["shards"]}
        for o in report["objects"]
    }


def test_a_site_drained_through_a_gets_no_new_data_from_c_within_the_bound(
    gateways: list[Server], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two sites (directories every gateway of this host reaches) under a one-copy region; the
    site C has been writing to is drained through A: C places nothing new there once its
    registry is refreshed."""
    a, _, c = gateways
    shared = tmp_path_factory.mktemp("shared-sites")
    tag = secrets.token_hex(3)
    names = [f"s1-{tag}", f"s2-{tag}"]
    for n, name in enumerate(names):
        site = {"name": name, "jurisdiction": "FR", "failure_domain": f"fd{n}",
                "path": str(shared / name)}  # fmt: skip
        operator(a).request("POST", "/v1/sites", site)
    region = f"two-{tag}"
    policy = {"name": region, "jurisdictions": ["FR"], "redundancy": "replicas:1"}
    operator(a).request("POST", "/v1/regions", policy)
    # The data dirs' own site is in FR too: only the two new sites are looked at below.
    s3_c = c.client(a.access_key, a.secret_key)
    bucket = "drain-" + tag
    s3_c.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
    )
    for n in range(8):
        s3_c.put_object(Bucket=bucket, Key=f"before/{n}", Body=b"x" * 100)
    used = set().union(*_sites_of(a, bucket).values()) & set(names)
    assert used, "C placed nothing on the two sites"
    drained = sorted(used)[0]
    operator(a).request("POST", f"/v1/sites/{drained}/drain")
    drained_at = time.monotonic()
    late: list[tuple[str, float]] = []
    n = 0
    while time.monotonic() - drained_at < REFRESH_S + MARGIN_S + 1.0:
        key = f"after/{n}"
        n += 1
        s3_c.put_object(Bucket=bucket, Key=key, Body=b"y" * 100)
        if drained in _sites_of(a, bucket)[key]:
            late.append((key, time.monotonic() - drained_at))
    assert all(at <= REFRESH_S + MARGIN_S for _, at in late), late
    last = max((at for _, at in late), default=0.0)
    print(f"site drained through A: C's last write there {last:.2f} s after the drain")
