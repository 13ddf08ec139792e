"""The LifecycleConfiguration document: parsed, rendered back the same, refused as AWS does."""

from __future__ import annotations

import pytest

from andromede.core import errors
from andromede.s3.lifecycle_xml import parse_lifecycle, render_lifecycle


def test_xml_round_trip_and_refusals() -> None:
    body = (
        b"<LifecycleConfiguration><Rule><ID>r1</ID><Filter><And><Prefix>logs/</Prefix>"
        b"<Tag><Key>k</Key><Value>v</Value></Tag></And></Filter><Status>Enabled</Status>"
        b"<Expiration><Days>30</Days></Expiration><NoncurrentVersionExpiration>"
        b"<NoncurrentDays>7</NoncurrentDays><NewerNoncurrentVersions>2</NewerNoncurrentVersions>"
        b"</NoncurrentVersionExpiration></Rule><Rule><ID>r2</ID><Prefix>tmp/</Prefix>"
        b"<Status>Disabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1"
        b"</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>"
    )
    config = parse_lifecycle(body)
    assert parse_lifecycle(render_lifecycle(config)) == config
    assert config.rules[1].filter.legacy
    transition = body.replace(
        b"<Expiration><Days>30</Days></Expiration>",
        b"<Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>",
    )
    with pytest.raises(errors.InvalidStorageClass):
        parse_lifecycle(transition)
    for bad in (
        body.replace(b"<Status>Enabled</Status>", b"<Status>On</Status>"),
        body.replace(b"<Days>30</Days>", b"<Days>thirty</Days>"),
        body.replace(b"<ID>r2</ID><Prefix>tmp/</Prefix>", b"<ID>r2</ID>"),
        b"<NotLifecycle/>",
    ):
        with pytest.raises(errors.MalformedXML):
            parse_lifecycle(bad)
