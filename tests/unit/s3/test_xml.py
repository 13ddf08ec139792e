"""Request XML parsing refuses hostile documents; responses escape text."""

from __future__ import annotations

import pytest

from andromede.core import errors
from andromede.s3 import xml


def test_parse_strips_namespaces() -> None:
    root = xml.parse(
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a</Key></Object></Delete>'
    )
    assert root.tag == "Delete"
    assert xml.text(root.find("Object"), "Key") == "a"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b"<a>",
        b"not xml",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>',
        b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
        b"<a>" + b"x" * (3 << 20) + b"</a>",
    ],
)
def test_hostile_or_broken_documents(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        xml.parse(body)


def test_escaping() -> None:
    assert xml.element("Key", "<&>") == "<Key>&lt;&amp;&gt;</Key>"
    doc = xml.document("R", [xml.element("A", 1)])
    assert doc.startswith(b"<?xml")
    assert b'<R xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><A>1</A></R>' in doc
