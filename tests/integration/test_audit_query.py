"""``andromede admin audit``: query, export and public key against the real server, with two
tenants whose requests are recorded; a tenant's key reads only its own tenant's records."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from andromede.audit import format as fmt
from andromede.audit.keys import load_public_key
from support.audit import trail_entries, trail_records
from support.server import Server, running_server

ADMIN = "/_andromede/admin"
HI = b"hi"
GETS = ("GetObject",)
SECRET_MARKERS = ("Signature=", "X-Amz-Signature", "AWS4-HMAC-SHA256", "Credential=")


@dataclass
class Tenant:
    name: str
    access: str
    secret: str
    bucket: str
    s3: Any = None


@dataclass
class Sent:
    """A request a test made, and what its record must say."""

    request_id: str
    operation: str
    tenant: str
    access: str | None
    bucket: str
    key: str | None
    status: int
    error: str | None = None


@dataclass
class Scene:
    server: Server
    a: Tenant
    b: Tenant
    sent: list[Sent] = field(default_factory=list)

    def secrets(self) -> list[str]:
        return [self.a.secret, self.b.secret, self.server.secret_key]


def _call(call: Callable[[], Any]) -> tuple[str, int, str | None]:
    """A boto3 call's request id, HTTP status and error code, whether it succeeded or not."""
    try:
        meta = call()["ResponseMetadata"]
        error = None
    except botocore.exceptions.ClientError as exc:
        meta = exc.response["ResponseMetadata"]
        error = exc.response["Error"]["Code"]
    return meta["RequestId"], meta["HTTPStatusCode"], error


def _tenant(server: Server) -> Tenant:
    name, access, secret = server.new_tenant()
    tenant = Tenant(name, access, secret, f"{name}-bucket")
    tenant.s3 = server.client(access, secret)
    return tenant


def _requests(scene: Scene, who: Tenant, owner: Tenant) -> None:
    """A tenant's requests on ``owner``'s bucket (its own, or another's: refused)."""
    s3, bucket = who.s3, owner.bucket
    calls: list[tuple[str, str | None, Callable[[], Any]]] = []
    if who is owner:
        calls += [
            ("CreateBucket", None, lambda: s3.create_bucket(Bucket=bucket)),
            (
                "PutObject",
                "doc.txt",
                lambda: s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"hi"),
            ),
            ("GetObject", "doc.txt", lambda: s3.get_object(Bucket=bucket, Key="doc.txt")),
            ("GetObject", "missing", lambda: s3.get_object(Bucket=bucket, Key="missing")),
            ("ListObjectsV2", None, lambda: s3.list_objects_v2(Bucket=bucket)),
        ]
    else:
        calls += [("GetObject", "doc.txt", lambda: s3.get_object(Bucket=bucket, Key="doc.txt"))]
    for operation, key, call in calls:
        rid, status, error = _call(call)
        scene.sent.append(Sent(rid, operation, owner.name, who.access, bucket, key, status, error))


def _presigned_get(scene: Scene) -> None:
    a = scene.a
    url = a.s3.generate_presigned_url(
        "get_object", Params={"Bucket": a.bucket, "Key": "doc.txt"}, ExpiresIn=300
    )
    with urllib.request.urlopen(url, timeout=10) as response:
        rid = response.headers["x-amz-request-id"]
        assert response.read() == b"hi"
    scene.sent.append(Sent(rid, "GetObject", a.name, a.access, a.bucket, "doc.txt", 200))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    data = tmp_path_factory.mktemp("audit-query") / "data"
    with running_server(data, workers=2, ANDROMEDE_AUDIT_CHECKPOINT_INTERVAL_SECONDS="0.2") as srv:
        scene = Scene(srv, _tenant(srv), _tenant(srv))
        _requests(scene, scene.a, scene.a)
        _requests(scene, scene.b, scene.b)
        _requests(scene, scene.b, scene.a)  # B reaching for A's object: denied, A's record
        _presigned_get(scene)
        yield scene


def andromede(
    scene: Scene, *args: str, as_tenant: Tenant | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as the operator (credentials from the data dir) or as a tenant's key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROMEDE_", "AWS_"))}
    env["COLUMNS"] = "200"  # rich fits tables to the terminal's width
    if as_tenant is None:
        target = ["--data-dir", str(scene.server.data_dir)]
    else:
        env["ANDROMEDE_ACCESS_KEY"], env["ANDROMEDE_SECRET_KEY"] = (
            as_tenant.access,
            as_tenant.secret,
        )
        target = ["--endpoint", scene.server.endpoint]
    return subprocess.run(
        [sys.executable, "-m", "andromede", "admin", "audit", *args, *target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def query(scene: Scene, *args: str, as_tenant: Tenant | None = None) -> list[dict[str, Any]]:
    """Every record a query returns, following its pages."""
    records: list[dict[str, Any]] = []
    after = "0"
    while True:
        done = andromede(
            scene, "query", *args, "--limit", "1000", "--after-seq", after, "--json",
            as_tenant=as_tenant,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        page = json.loads(done.stdout)
        records += page["records"]
        if page["next_after_seq"] is None:
            return records
        after = str(page["next_after_seq"])


def s3_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of S3 requests: those the module made, fixed once the scene is set (the
    admin face keeps recording the queries themselves)."""
    return [r for r in records if r["face"] == "s3"]


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # Key-manager events (a tenant's default key made on its first write) carry the id of the
    # request that caused them: only requests are unique per id.
    records = [r for r in records if r["type"] == "request"]
    ids = [r["request_id"] for r in records]
    assert len(ids) == len(set(ids)), "a request recorded twice"
    return {r["request_id"]: r for r in records}


def test_every_request_is_recorded_once_with_its_fields(scene: Scene) -> None:
    records = by_id(query(scene))
    for sent in scene.sent:
        record = records[sent.request_id]
        assert record["type"] == "request"
        assert record["face"] == "s3"
        assert record["operation"] == sent.operation
        assert record["tenant"] == sent.tenant
        assert record["bucket"] == sent.bucket
        assert record["key"] == sent.key
        assert record["status"] == sent.status
        assert record["error"] == sent.error
        assert record["principal"]["kind"] == "key"
        assert record["principal"]["access_key_id"] == sent.access
        assert isinstance(record["seq"], int)
        assert record["time"].endswith("Z")
    put = records[next(s.request_id for s in scene.sent if s.operation == "PutObject")]
    assert put["bytes_in"] >= 2
    get = records[next(s.request_id for s in scene.sent if s.operation == "GetObject")]
    assert get["status"] == 200
    assert get["bytes_out"] == 2


def test_records_hold_no_secret_or_signature(scene: Scene) -> None:
    done = andromede(scene, "export")
    assert done.returncode == 0, done.stderr
    assert done.stdout
    for secret in [*scene.secrets(), *SECRET_MARKERS]:
        assert secret not in done.stdout


def _principal(r: dict[str, Any]) -> dict[str, Any]:
    principal: dict[str, Any] = r["principal"]
    return principal


FILTERS: list[tuple[str, Callable[[Scene], list[str]], Callable[[Scene, dict[str, Any]], bool]]] = [
    (
        "tenant",
        lambda s: ["--tenant", s.b.name],
        lambda s, r: s.b.name in (r["tenant"], _principal(r)["tenant"]),
    ),
    ("bucket", lambda s: ["--bucket", s.a.bucket], lambda s, r: r["bucket"] == s.a.bucket),
    (
        "principal key",
        lambda s: ["--principal", s.b.access],
        lambda s, r: _principal(r)["access_key_id"] == s.b.access,
    ),
    (
        "principal kind",
        lambda s: ["--principal", "operator"],
        lambda s, r: _principal(r)["kind"] == "operator",
    ),
    (
        "operation",
        lambda s: ["--operation", "GetObject"],
        lambda s, r: r["operation"] == "GetObject",
    ),
    ("success", lambda s: ["--outcome", "success"], lambda s, r: r["status"] < 400),
    ("failure", lambda s: ["--outcome", "failure"], lambda s, r: r["status"] >= 400),
    ("status", lambda s: ["--outcome", "404"], lambda s, r: r["status"] == 404),
    ("error", lambda s: ["--outcome", "AccessDenied"], lambda s, r: r["error"] == "AccessDenied"),
    (
        "combined",
        lambda s: ["--tenant", s.a.name, "--operation", "GetObject", "--outcome", "failure"],
        lambda s, r: (
            s.a.name in (r["tenant"], _principal(r)["tenant"])
            and r["operation"] == "GetObject"
            and r["status"] >= 400
        ),
    ),
]


@pytest.mark.parametrize(("name", "args", "keep"), FILTERS, ids=[f[0] for f in FILTERS])
def test_each_filter_returns_exactly_the_matching_records(
    scene: Scene,
    name: str,
    args: Callable[[Scene], list[str]],
    keep: Callable[[Scene, dict[str, Any]], bool],
) -> None:
    everything = s3_records(query(scene))
    found = query(scene, *args(scene))
    assert all(keep(scene, r) for r in found), name
    want = [r["request_id"] for r in everything if keep(scene, r)]
    assert [r["request_id"] for r in s3_records(found)] == want
    assert want or name == "principal kind"  # the operator made admin calls only


def test_since_and_until(scene: Scene) -> None:
    everything = s3_records(query(scene))
    middle = everything[len(everything) // 2]["time"]
    later = [r["request_id"] for r in everything if r["time"] >= middle]
    earlier = [r["request_id"] for r in everything if r["time"] < middle]
    assert later
    assert earlier
    assert [r["request_id"] for r in s3_records(query(scene, "--since", middle))] == later
    assert [r["request_id"] for r in s3_records(query(scene, "--until", middle))] == earlier
    assert s3_records(query(scene, "--since", "1h")) == everything
    assert query(scene, "--until", "1970-01-01T00:00:00Z") == []


def test_paging_with_after_seq(scene: Scene) -> None:
    everything = query(scene, "--tenant", scene.a.name)
    first = andromede(scene, "query", "--tenant", scene.a.name, "--limit", "2", "--json")
    page = json.loads(first.stdout)
    assert page["records"] == everything[:2]
    assert page["next_after_seq"] == everything[1]["seq"]
    second = andromede(
        scene, "query", "--tenant", scene.a.name, "--limit", "2", "--after-seq",
        str(page["next_after_seq"]), "--json",
    )  # fmt: skip
    assert json.loads(second.stdout)["records"] == everything[2:4]


def test_a_tenant_key_sees_only_its_tenant(scene: Scene) -> None:
    a, b = scene.a, scene.b
    own = query(scene, as_tenant=a)
    assert own
    assert all(a.name in (r["tenant"], _principal(r)["tenant"]) for r in own)
    ids = {r["request_id"] for r in own}
    for sent in scene.sent:
        # A's own requests, and B's refused attempt on A's object, but nothing else of B's.
        assert (sent.request_id in ids) == (sent.tenant == a.name)
    assert s3_records(own) == s3_records(query(scene, "--tenant", a.name))
    assert s3_records(query(scene, "--tenant", a.name, as_tenant=a)) == s3_records(own)
    # B sees its own attempt on A's bucket (its principal made it), not A's requests.
    theirs = {r["request_id"] for r in query(scene, as_tenant=b)}
    for sent in scene.sent:
        assert (sent.request_id in theirs) == (sent.access == b.access)


def test_a_tenant_key_asking_for_another_tenant_is_denied(scene: Scene) -> None:
    for args in (["query", "--tenant", scene.b.name], ["export", "--tenant", scene.b.name]):
        done = andromede(scene, *args, as_tenant=scene.a)
        assert done.returncode == 1
        assert done.stdout == ""
        assert "AccessDenied" in done.stderr


def test_the_operator_sees_every_tenant_and_its_own_actions(scene: Scene) -> None:
    records = query(scene)
    ids = {r["request_id"] for r in records}
    assert all(s.request_id in ids for s in scene.sent)
    created = [r for r in records if r["operation"] == "admin:CreateTenant"]
    assert len(created) >= 2
    assert all(_principal(r)["access_key_id"] == scene.server.access_key for r in created)


def test_an_operator_reading_a_tenant_trail_shows_in_that_trail(scene: Scene) -> None:
    before = {r["request_id"] for r in query(scene, as_tenant=scene.a)}
    query(scene, "--tenant", scene.a.name, "--bucket", "none-such")
    reads = [
        r
        for r in query(scene, "--operation", "admin:QueryAuditRecords", as_tenant=scene.a)
        if r["request_id"] not in before and _principal(r)["kind"] == "operator"
    ]
    assert len(reads) == 1
    assert reads[0]["tenant"] == scene.a.name
    assert reads[0]["status"] == 200


def test_export_streams_the_query_results_as_json_lines(scene: Scene, tmp_path: Path) -> None:
    queried = s3_records(query(scene, "--tenant", scene.a.name))
    done = andromede(scene, "export", "--tenant", scene.a.name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert s3_records(lines) == queried
    seqs = [r["seq"] for r in lines]
    assert seqs == sorted(seqs)
    out = tmp_path / "trail.jsonl"
    saved = andromede(scene, "export", "--tenant", scene.a.name, "--out", str(out))
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout == ""
    assert s3_records([json.loads(x) for x in out.read_text().splitlines()]) == queried
    assert not out.with_name(out.name + ".partial").exists()
    empty = andromede(scene, "export", "--bucket", "none-such")
    assert empty.returncode == 0
    assert empty.stdout == ""


def test_export_pages_through_more_than_one_page(scene: Scene) -> None:
    """More records than a page of the export (1000), all in order, none twice."""

    def heads(_: int) -> None:
        s3 = scene.server.client(scene.a.access, scene.a.secret)
        for _ in range(1100 // 10):
            s3.head_bucket(Bucket=scene.a.bucket)

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(heads, range(10)))
    done = andromede(scene, "export", "--operation", "HeadBucket")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 1100
    assert len({r["request_id"] for r in lines}) == 1100
    assert [r["seq"] for r in lines] == sorted(r["seq"] for r in lines)
    assert lines == query(scene, "--operation", "HeadBucket")


def test_public_key_verifies_the_trail_checkpoints(scene: Scene, tmp_path: Path) -> None:
    done = andromede(scene, "public-key", as_tenant=scene.a)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    out = tmp_path / "audit.pem"
    assert andromede(scene, "public-key", "--out", str(out)).returncode == 0
    assert out.read_text() == done.stdout
    public = load_public_key(out.read_bytes())
    checkpoints = [
        e for e in trail_entries(scene.server.data_dir / "audit") if e["type"] == "checkpoint"
    ]
    assert checkpoints, "the trail has a checkpoint (interval 0.2 s)"
    assert all(fmt.checkpoint_signature_ok(e, public) for e in checkpoints)
    other = Ed25519PrivateKey.generate().public_key()
    assert not fmt.checkpoint_signature_ok(checkpoints[0], other)


def test_query_results_are_the_records_in_the_trail(scene: Scene) -> None:
    stored = {r["request_id"]: r for r in trail_records(scene.server.data_dir / "audit")}
    for record in s3_records(query(scene)):
        entry = stored[record["request_id"]]
        assert record == {k: v for k, v in entry.items() if k != "prev"}


def test_table_output(scene: Scene) -> None:
    done = andromede(scene, "query", "--tenant", scene.a.name, "--operation", "CreateBucket")
    assert done.returncode == 0, done.stderr
    assert "CreateBucket" in done.stdout
    assert scene.a.bucket in done.stdout
    assert done.stderr == ""
    more = andromede(scene, "query", "--tenant", scene.a.name, "--limit", "1")
    assert "--after-seq" in more.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "InvalidArgument"),
        (["--outcome", "not a code"], "InvalidArgument"),
    ],
)
def test_bad_filters_are_refused(scene: Scene, args: list[str], message: str) -> None:
    done = andromede(scene, "query", *args, "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr


def _signed_get(scene: Scene, path: str, secret: str | None = None) -> httpx.Response:
    url = scene.server.endpoint + ADMIN + path
    creds = Credentials(scene.a.access, secret or scene.a.secret)
    request = AWSRequest(method="GET", url=url)
    S3SigV4Auth(creds, "s3", "us-east-1").add_auth(request)
    return httpx.get(url, headers=dict(request.headers.items()), timeout=30)


def test_http_api_shapes(scene: Scene) -> None:
    page = _signed_get(scene, "/v1/audit/records?limit=1")
    assert page.status_code == 200
    body = page.json()
    assert set(body) == {"records", "next_after_seq", "next_after"}
    assert body["next_after"] is None  # one chain: paged by seq
    assert body["next_after_seq"] == body["records"][0]["seq"]
    export = _signed_get(scene, "/v1/audit/export?operation=CreateBucket")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(x)["bucket"] for x in export.text.splitlines()] == [scene.a.bucket]
    key = _signed_get(scene, "/v1/audit/public-key")
    assert key.headers["content-type"].startswith("text/plain")
    assert _signed_get(scene, "/v1/audit/records?limit=1001").status_code == 422
    assert _signed_get(scene, "/v1/audit/records?after_seq=-1").status_code == 422
    denied = _signed_get(scene, "/v1/audit/records", secret="wrong" + secrets.token_hex(4))
    assert denied.status_code == 403
    unsigned = httpx.get(scene.server.endpoint + ADMIN + "/v1/audit/public-key", timeout=30)
    assert unsigned.status_code == 403
