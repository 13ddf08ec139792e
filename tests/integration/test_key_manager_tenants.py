"""Tenants whose keys live outside the built-in keystore, against the real server: one on an
HSM (SoftHSM2 over PKCS#11), one on a KMIP server, beside tenants on the keystore.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from andromede.core.errors import KmsNotFound
from andromede.kms.kmip import KmipKeyManager
from support.encryption import (
    SealedBlob,
    Tenant,
    kms_keys,
    marked,
    marker,
    new_tenant,
    open_blob,
    operator,
    put_multipart,
    root_tenant,
    sealed_blobs,
    sse_kms,
)
from support.s3objects import MiB, read
from support.server import Server, running_server
from support.workers import refusals_after

KMS_CACHE_S = 2.0  # kms_cache_seconds, the default
BOUND_S = KMS_CACHE_S + 1.0  # what the promise allows, with a margin for the test's own pace
PART = 5 * MiB


# --- tenants with their own key manager ---------------------------------------------------------
@dataclass
class Written:
    """What a tenant with its own key manager wrote, and under which keys."""

    tenant: Tenant
    bucket: str
    key_id: str  # a key the tenant created
    default_key_id: str  # the tenant's default key
    under_key: dict[str, bytes]
    under_default: dict[str, bytes]
    other_bucket: str  # another tenant's, under the built-in keystore
    other: dict[str, bytes]


def manager_env(name: str, config: Mapping[str, str], tenant: str) -> dict[str, str]:
    """Settings giving ``tenant`` the key manager ``name`` (JSON in the environment)."""
    return {
        "ANDROMEDE_KEY_MANAGERS": json.dumps({name: dict(config)}),
        "ANDROMEDE_TENANT_KEY_MANAGERS": json.dumps({tenant: name}),
    }


def write_as_tenant(server: Server, tenant_name: str, manager: str) -> Written:
    """The tenant's key and default key live in ``manager``; another tenant's in the
    built-in keystore. Objects under each round trip."""
    tenant = new_tenant(server, tenant_name)
    s3 = tenant.s3(server)
    bucket = "own-" + secrets.token_hex(5)
    s3.create_bucket(Bucket=bucket)
    key = tenant.admin(server).request("POST", "/v1/kms/keys", {"description": "own"})
    assert key["manager"] == manager
    key_id = key["key_id"]

    under_key = {"single": marked(marker(), 200_000)}
    s3.put_object(Bucket=bucket, Key="single", Body=under_key["single"], **sse_kms(key_id))
    parts = [marked(marker(), PART), marked(marker(), 70_000)]
    put_multipart(s3, bucket, "multipart", parts, sse_kms(key_id))
    under_key["multipart"] = b"".join(parts)
    under_default = {"default": marked(marker(), 100_000)}
    s3.put_object(Bucket=bucket, Key="default", Body=under_default["default"])

    others = server.client()
    other_bucket = "builtin-" + secrets.token_hex(5)
    others.create_bucket(Bucket=other_bucket)
    other = {"other": marked(marker(), 100_000)}
    others.put_object(Bucket=other_bucket, Key="other", Body=other["other"])

    for name, data in {**under_key, **under_default}.items():
        assert read(s3.get_object(Bucket=bucket, Key=name)) == data
    assert read(others.get_object(Bucket=other_bucket, Key="other")) == other["other"]

    assert tenant.admin(server).request("GET", f"/v1/kms/keys/{key_id}")["manager"] == manager
    (default,) = [
        k for k in tenant.admin(server).request("GET", "/v1/kms/keys") if k["alias"] == "default"
    ]
    assert default["manager"] == manager
    listed = operator(server).request("GET", "/v1/kms/keys", params={"tenant": root_tenant(server)})
    assert {k["manager"] for k in listed} == {"builtin"}
    rows = kms_keys(server.data_dir)
    for blob in sealed_blobs(server.data_dir):
        if blob.bucket == bucket:
            assert blob.key_id in (key_id, default["key_id"])
            assert blob.key_id is not None
            assert rows[blob.key_id].manager == manager
    return Written(
        tenant,
        bucket,
        key_id,
        default["key_id"],
        under_key,
        under_default,
        other_bucket,
        other,
    )


def destroy_and_check(server: Server, written: Written) -> None:
    """The operator destroys the tenant's key (CLI): its objects fail, the others read."""
    server.cli("admin", "kms", "schedule-deletion", written.key_id, "--days", "7", "--json")
    done = server.cli("admin", "kms", "destroy", written.key_id, "--yes", "--json").stdout
    assert json.loads(done)["state"] == "Destroyed"
    destroyed_at = time.monotonic()
    tenant = written.tenant
    paths = [f"/{written.bucket}/{name}" for name in written.under_key]
    answers = refusals_after(server, tenant.access, tenant.secret, paths, destroyed_at, BOUND_S)
    assert answers == {path: {(400, "KMS.KMSInvalidStateException")} for path in paths}
    s3 = tenant.s3(server)
    for name, data in written.under_default.items():
        assert read(s3.get_object(Bucket=written.bucket, Key=name)) == data
    others = server.client()
    for name, data in written.other.items():
        assert read(others.get_object(Bucket=written.other_bucket, Key=name)) == data


_TOKEN_LABELS = """
import json, sys
import pkcs11
from pkcs11 import Attribute, ObjectClass
config = json.loads(sys.argv[1])
token = pkcs11.lib(config["library"]).get_token(token_label=config["token_label"])
with open(config["pin_file"], encoding="utf-8") as fh:
    pin = fh.read().strip()
with token.open(user_pin=pin) as session:
    found = session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
    print(json.dumps(sorted(o[Attribute.LABEL] for o in found)))
"""


def token_labels(config: Mapping[str, str], conf: Path) -> set[str]:
    """Labels of the secret keys on the token, listed by a fresh process (python-pkcs11
    initialises SoftHSM2 once per process, on the configuration it then finds)."""
    done = subprocess.run(
        [sys.executable, "-c", _TOKEN_LABELS, json.dumps(dict(config))],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(done.stdout))


def test_hsm_backed_tenant(tmp_path: Path, softhsm_token: dict[str, str]) -> None:
    conf = Path(softhsm_token["pin_file"]).parent / "softhsm2.conf"
    tenant = "hsm-" + secrets.token_hex(4)
    env = {**manager_env("hsm", softhsm_token, tenant), "SOFTHSM2_CONF": str(conf)}
    with running_server(tmp_path / "data", workers=2, **env) as server:
        written = write_as_tenant(server, tenant, "hsm")
        rows = kms_keys(server.data_dir)
        handles = set(rows[written.key_id].handles.values())
        default_handles = set(rows[written.default_key_id].handles.values())
        assert all(h.startswith("andromede-") for h in handles | default_handles)
        server.stop()
        assert handles | default_handles <= token_labels(softhsm_token, conf)
        # Nothing of the tenant's keys in the built-in keystore.
        kek_files = {p.stem for p in (server.data_dir / "keystore" / "keys").glob("*.kek")}
        assert not (handles | default_handles) & kek_files
        assert len(kek_files) == 1  # the other tenant's default key

        server.start()
        destroy_and_check(server, written)
        server.stop()
    labels = token_labels(softhsm_token, conf)
    assert not handles & labels
    assert default_handles <= labels


def kmip_unwrap(config: Mapping[str, str], handle: str, blob: SealedBlob) -> bytes:
    """Ask the KMIP server itself to unwrap a blob's DEK with the key ``handle``."""

    async def run() -> bytes:
        manager = KmipKeyManager.from_config("probe", config)
        try:
            return await manager.unwrap(handle, blob.wrapped, blob.aad())
        finally:
            await manager.close()

    return asyncio.run(run())


def test_kmip_backed_tenant(tmp_path: Path, kmip_server: dict[str, str]) -> None:
    config = {"type": "kmip", **kmip_server}
    tenant = "kmip-" + secrets.token_hex(4)
    env = manager_env("kmip", config, tenant)
    with running_server(tmp_path / "data", workers=2, **env) as server:
        written = write_as_tenant(server, tenant, "kmip")
        rows = kms_keys(server.data_dir)
        handle = rows[written.key_id].handles[1]
        blob = next(
            b
            for b in sealed_blobs(server.data_dir)
            if (b.bucket, b.key) == (written.bucket, "single")
        )
        # The key is on the KMIP server: it unwraps the DEK, which opens the blob file.
        dek = kmip_unwrap(config, handle, blob)
        assert open_blob(server.data_dir, blob, dek) == written.under_key["single"]
        kek_files = {p.stem for p in (server.data_dir / "keystore" / "keys").glob("*.kek")}
        assert handle not in kek_files
        assert len(kek_files) == 1  # the other tenant's default key

        destroy_and_check(server, written)
    # The server itself no longer has the key (not merely refusing it: KmsNotFound).
    with pytest.raises(KmsNotFound):
        kmip_unwrap(config, handle, blob)
