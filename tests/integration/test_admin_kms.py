"""``andromede admin kms`` against a real server: a tenant key's life cycle, who may manage
which keys, the errors a client sees, and the admin API's HTTP surface for keys."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from support.server import Server, running_server

ADMIN = "/_andromede/admin"
REGION = "us-east-1"


@dataclass(frozen=True)
class TenantKey:
    """A tenant and one of its (non-operator) access keys."""

    tenant: str
    access: str
    secret: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("admin-kms") / "data") as srv:
        yield srv


@pytest.fixture
def tenant(server: Server) -> TenantKey:
    """A fresh tenant with a key of its own."""
    return TenantKey(*server.new_tenant())


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any Andromède or AWS settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROMEDE_", "AWS_"))}
    env.update(extra)
    return env


def andromede(
    server: Server, *args: str, as_tenant: TenantKey | None = None, stdin: Any = None
) -> subprocess.CompletedProcess[str]:
    """``andromede ARGS``: as the operator (credentials from the data dir), or with a tenant's
    key from the environment; stdin is not a terminal unless ``stdin`` is one."""
    if as_tenant is None:
        target, env = ["--data-dir", str(server.data_dir)], clean_env()
    else:
        target = ["--endpoint", server.endpoint]
        env = clean_env(
            ANDROMEDE_ACCESS_KEY=as_tenant.access, ANDROMEDE_SECRET_KEY=as_tenant.secret
        )
    return subprocess.run(
        [sys.executable, "-m", "andromede", *args, *target],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def kms(
    server: Server, *args: str, as_tenant: TenantKey | None = None, stdin: Any = None
) -> subprocess.CompletedProcess[str]:
    """``andromede admin kms ARGS``."""
    return andromede(server, "admin", "kms", *args, as_tenant=as_tenant, stdin=stdin)


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a successful ``--json`` command printed."""
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def refused(result: subprocess.CompletedProcess[str], code: str) -> str:
    """Assert the command failed with ``code``, printing nothing on stdout; the message."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert code in result.stderr, result.stderr
    return result.stderr


def http(
    server: Server,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    who: TenantKey | None = None,
) -> httpx.Response:
    """A signed admin API request (the operator's, or a tenant key's)."""
    url = server.endpoint + ADMIN + path
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"content-type": "application/json"} if body is not None else {}
    creds = (
        Credentials(who.access, who.secret)
        if who
        else Credentials(server.access_key, server.secret_key)
    )
    request = AWSRequest(method=method, url=url, data=data, headers=headers)
    S3SigV4Auth(creds, "s3", REGION).add_auth(request)
    return httpx.request(
        method, url, content=data, headers=dict(request.headers.items()), timeout=30
    )


def create(server: Server, tenant: TenantKey, description: str = "") -> dict[str, Any]:
    """A new key of ``tenant``, made by the operator."""
    key: dict[str, Any] = ok(
        kms(server, "create", "--tenant", tenant.tenant, "--description", description, "--json")
    )
    return key


def same_key(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same key, its times compared to the millisecond (what the metadata store keeps)."""

    def when(text: str) -> dt.datetime:
        t = dt.datetime.fromisoformat(text)
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    def ms(key: dict[str, Any]) -> dict[str, Any]:
        versions = [{**v, "created": when(v["created"])} for v in key["versions"]]
        return {**key, "created": when(key["created"]), "versions": versions}

    return ms(a) == ms(b)


def around(when: str, expected: dt.datetime) -> bool:
    return abs(dt.datetime.fromisoformat(when) - expected) < dt.timedelta(minutes=10)


def test_a_key_s_life_cycle(server: Server, tenant: TenantKey) -> None:
    created = kms(server, "create", "--tenant", tenant.tenant, "--description", "ci", "--json")
    assert "handle" not in created.stdout  # the key manager's reference never leaves
    key = ok(created)
    key_id = key["key_id"]
    assert uuid.UUID(key_id)
    assert key["arn"] == f"arn:aws:kms:{REGION}:{tenant.tenant}:key/{key_id}"
    assert key["tenant"] == tenant.tenant
    assert key["description"] == "ci"
    assert key["state"] == "Enabled"
    assert key["alias"] is None
    assert key["manager"]
    assert key["current_version"] == 1
    assert [v["number"] for v in key["versions"]] == [1]
    assert key["deletion_date"] is None
    assert key["rewrap"] is None
    assert around(key["created"], dt.datetime.now(dt.UTC))

    assert same_key(ok(kms(server, "describe", key_id, "--json")), key)

    rotated = ok(kms(server, "rotate", key_id, "--json"))
    assert rotated["current_version"] == 2
    assert [v["number"] for v in rotated["versions"]] == [1, 2]
    assert rotated["rewrap"]["target_version"] == 2
    assert rotated["state"] == "Enabled"

    assert ok(kms(server, "disable", key_id, "--json"))["state"] == "Disabled"
    assert ok(kms(server, "enable", key_id, "--json"))["state"] == "Enabled"

    pending = ok(kms(server, "schedule-deletion", key_id, "--days", "7", "--json"))
    assert pending["state"] == "PendingDeletion"
    assert around(pending["deletion_date"], dt.datetime.now(dt.UTC) + dt.timedelta(days=7))

    # As AWS KMS does, a key whose deletion is cancelled comes back disabled.
    cancelled = ok(kms(server, "cancel-deletion", key_id, "--json"))
    assert cancelled["state"] == "Disabled"
    assert cancelled["deletion_date"] is None

    again = ok(kms(server, "schedule-deletion", key_id, "--json"))
    assert again["state"] == "PendingDeletion"
    assert around(again["deletion_date"], dt.datetime.now(dt.UTC) + dt.timedelta(days=30))

    destroyed = ok(kms(server, "destroy", key_id, "--yes", "--json"))
    assert destroyed["state"] == "Destroyed"
    assert ok(kms(server, "describe", key_id, "--json"))["state"] == "Destroyed"
    # Destruction is final.
    refused(kms(server, "enable", key_id, "--json"), "KMS.KMSInvalidStateException")
    refused(kms(server, "cancel-deletion", key_id, "--json"), "KMS.KMSInvalidStateException")


def test_list_per_tenant(server: Server, tenant: TenantKey) -> None:
    other = TenantKey(*server.new_tenant())
    mine = {create(server, tenant)["key_id"], create(server, tenant)["key_id"]}
    theirs = create(server, other)["key_id"]

    listed = ok(kms(server, "list", "--tenant", tenant.tenant, "--json"))
    assert {k["tenant"] for k in listed} == {tenant.tenant}
    assert mine <= {k["key_id"] for k in listed}
    assert theirs not in {k["key_id"] for k in listed}
    assert all("handle" not in json.dumps(k) for k in listed)

    everyone = {k["key_id"] for k in ok(kms(server, "list", "--json"))}
    assert mine | {theirs} <= everyone

    assert ok(kms(server, "list", "--tenant", "t-nobody-here", "--json")) == []


def test_a_tenant_key_manages_its_own_tenant_s_keys_only(server: Server, tenant: TenantKey) -> None:
    other = TenantKey(*server.new_tenant())
    theirs = create(server, other)["key_id"]

    # No --tenant: the caller's own.
    own = ok(kms(server, "create", "--description", "self-made", "--json", as_tenant=tenant))
    assert own["tenant"] == tenant.tenant
    assert (
        ok(kms(server, "rotate", own["key_id"], "--json", as_tenant=tenant))["current_version"] == 2
    )
    listed = ok(kms(server, "list", "--json", as_tenant=tenant))
    assert {k["tenant"] for k in listed} == {tenant.tenant}
    assert own["key_id"] in {k["key_id"] for k in listed}

    for args in (
        ["describe", theirs],
        ["disable", theirs],
        ["schedule-deletion", theirs, "--days", "7"],
        ["list", "--tenant", other.tenant],
        ["create", "--tenant", other.tenant],
    ):
        refused(kms(server, *args, "--json", as_tenant=tenant), "AccessDenied")
    assert http(server, "GET", f"/v1/kms/keys/{theirs}", who=tenant).status_code == 403
    assert http(server, "POST", f"/v1/kms/keys/{theirs}/rotate", who=tenant).status_code == 403
    assert (
        http(server, "POST", "/v1/kms/keys", {"tenant": other.tenant}, who=tenant).status_code
        == 403
    )
    # Nothing happened to the other tenant's key.
    untouched = ok(kms(server, "describe", theirs, "--json"))
    assert (untouched["state"], untouched["current_version"]) == ("Enabled", 1)


# A fixed id that no key has: a random one would give each xdist worker a different test name.
@pytest.mark.parametrize("key_id", ["00000000-0000-4000-8000-00000000d00d", "not-a-key-id"])
def test_unknown_key(server: Server, key_id: str) -> None:
    for args in (["describe", key_id], ["rotate", key_id], ["destroy", key_id, "--yes"]):
        refused(kms(server, *args, "--json"), "KMS.NotFoundException")
    reply = http(server, "GET", f"/v1/kms/keys/{key_id}")
    assert reply.status_code == 400  # AWS KMS's NotFoundException is a 400
    assert reply.json()["code"] == "KMS.NotFoundException"


def test_key_for_unknown_tenant(server: Server) -> None:
    refused(kms(server, "create", "--tenant", "t-no-such-tenant", "--json"), "NoSuchTenant")


def test_destroy_without_yes_and_no_terminal_refuses(server: Server, tenant: TenantKey) -> None:
    key_id = create(server, tenant)["key_id"]
    ok(kms(server, "schedule-deletion", key_id, "--days", "7", "--json"))
    message = refused(kms(server, "destroy", key_id, "--json"), "--yes")
    assert "irreversible" in message
    assert ok(kms(server, "describe", key_id, "--json"))["state"] == "PendingDeletion"


@pytest.mark.parametrize(("answer", "state"), [("n", "PendingDeletion"), ("y", "Destroyed")])
def test_destroy_asks_on_a_terminal(
    server: Server, tenant: TenantKey, answer: str, state: str
) -> None:
    key_id = create(server, tenant)["key_id"]
    ok(kms(server, "schedule-deletion", key_id, "--days", "7", "--json"))
    primary, secondary = pty.openpty()
    try:
        os.write(primary, f"{answer}\n".encode())
        done = kms(server, "destroy", key_id, "--json", stdin=secondary)
    finally:
        os.close(secondary)
        os.close(primary)
    assert "Destroy it?" in done.stderr
    assert done.returncode == (0 if answer == "y" else 1), done.stderr
    assert ok(kms(server, "describe", key_id, "--json"))["state"] == state


def test_human_output(server: Server, tenant: TenantKey) -> None:
    made = kms(server, "create", "--tenant", tenant.tenant, "--description", "for people")
    assert made.returncode == 0, made.stderr
    listed = ok(kms(server, "list", "--tenant", tenant.tenant, "--json"))
    key_id = next(k["key_id"] for k in listed if k["description"] == "for people")
    assert key_id in made.stdout
    assert "Enabled" in made.stdout
    assert "for people" in made.stdout
    assert "handle" not in made.stdout

    rotated = kms(server, "rotate", key_id)
    assert rotated.returncode == 0, rotated.stderr
    progress = ok(kms(server, "describe", key_id, "--json"))["rewrap"]
    described = kms(server, "describe", key_id)
    assert described.returncode == 0, described.stderr
    assert (
        f"re-wrap to v2: {progress['rewrapped']} of {progress['scanned']} data keys examined"
        in described.stdout
    )

    table = kms(server, "list", "--tenant", tenant.tenant)
    assert table.returncode == 0, table.stderr
    assert key_id in table.stdout
    assert "Enabled" in table.stdout


def test_operations_are_in_the_audit_trail(server: Server, tenant: TenantKey) -> None:
    key_id = create(server, tenant)["key_id"]
    ok(kms(server, "rotate", key_id, "--json"))
    refused(kms(server, "destroy", key_id, "--yes", "--json"), "KMS.KMSInvalidStateException")
    query = ("admin", "audit", "query", "--tenant", tenant.tenant, "--limit", "1000", "--json")
    records = ok(andromede(server, *query))["records"]
    admin = [(r["operation"], r["status"]) for r in records if r["face"] == "admin"]
    assert ("admin:CreateKmsKey", 201) in admin
    assert ("admin:RotateKmsKey", 200) in admin
    assert ("admin:DestroyKmsKey", 400) in admin


def test_openapi_document(server: Server) -> None:
    spec = httpx.get(server.endpoint + ADMIN + "/openapi.json", timeout=30).json()
    key = "/v1/kms/keys/{key_id}"
    assert {
        "/v1/kms/keys",
        key,
        *(f"{key}/{action}" for action in ("rotate", "disable", "enable", "destroy")),
        f"{key}/schedule-deletion",
        f"{key}/cancel-deletion",
    } <= set(spec["paths"])
    assert set(spec["paths"]["/v1/kms/keys"]) == {"get", "post"}
    model = spec["components"]["schemas"]["KmsKeyOut"]
    assert "handle" not in json.dumps(model)
    assert all(field.get("description") for field in model["properties"].values())


def test_unsigned_request_is_refused(server: Server) -> None:
    reply = httpx.post(server.endpoint + ADMIN + "/v1/kms/keys", json={}, timeout=30)
    assert reply.status_code == 403
    assert reply.json()["code"] == "AccessDenied"
