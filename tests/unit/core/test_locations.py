"""Site locations as the registry writes them: a directory, or a Ceph pool."""

from __future__ import annotations

import pytest

from andromede.core import errors
from andromede.core.locations import RadosLocation, check_path, describe


def test_a_rados_location_round_trips() -> None:
    where = RadosLocation("andromede", "/etc/ceph/../ceph/ceph.conf", "gw", "tenants")
    text = str(where)
    assert text == "rados:andromede?conf=%2Fetc%2Fceph%2Fceph.conf&user=gw&namespace=tenants"
    assert RadosLocation.parse(text) == RadosLocation("andromede", "/etc/ceph/ceph.conf", "gw",
                                                      "tenants")  # fmt: skip
    assert RadosLocation.parse("rados:p?conf=/c.conf") == RadosLocation("p", "/c.conf", "admin")
    assert describe(text) == "rados:andromede/tenants (/etc/ceph/ceph.conf, client.gw)"


def test_a_directory_is_not_a_rados_location() -> None:
    assert RadosLocation.parse("/srv/site") is None
    assert describe("/srv/site") == "/srv/site"


@pytest.mark.parametrize(
    "bad",
    [
        "rados:pool",  # no conf
        "rados:pool?conf=relative.conf",
        "rados:pool?conf=/a&conf=/b",
        "rados:pool?conf=/a&keyring=/k",  # the key never enters the registry
        "rados:../pool?conf=/a",
        "rados:pool?conf=/a&user=client admin",
        "rados:pool?conf=/a&namespace=a/b",
        "rados:?conf=/a",
        "rados:pool?conf=/a\nx",
        "rados:pool?conf",
    ],
)
def test_malformed_rados_locations_are_refused(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        RadosLocation.parse(bad)


@pytest.mark.parametrize("bad", ["", "relative/dir", "/a\x00b", "/tab\there", "/" + "x" * 5000])
def test_paths_must_be_plain_and_absolute(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        check_path(bad, "A site's path")
    assert check_path("/srv//a/./b/", "p") == "/srv/a/b"
