"""S3 XML in and out. Parsing refuses DTDs and entities and bounds the input size."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from xml.sax.saxutils import escape

from andromede.core import errors
from andromede.core.limits import MAX_XML_BODY

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def parse(body: bytes, limit: int = MAX_XML_BODY) -> ET.Element:
    """Parse a request document; MalformedXML for anything off. Namespaces are stripped."""
    if len(body) > limit:
        raise errors.MalformedXML("The XML you provided was larger than the maximum allowed.")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise errors.MalformedXML("DTDs and entities are not allowed.")
    parser = ET.XMLParser()  # noqa: S314 - DTDs refused above; expat >= 2.6 bounds expansion
    try:
        parser.feed(body)
        root = parser.close()
    except ET.ParseError as exc:
        raise errors.MalformedXML() from exc
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]
    return root


def text(el: ET.Element, name: str, default: str | None = None) -> str | None:
    """Text of a direct child, or ``default``."""
    child = el.find(name)
    if child is None:
        return default
    return child.text or ""


def sax_escape(value: str) -> str:
    """Escape text content."""
    return escape(value)


def element(tag: str, value: object) -> str:
    """``<tag>escaped value</tag>``."""
    return f"<{tag}>{escape(str(value))}</{tag}>"


def optional(tag: str, value: object | None) -> str:
    """An element, or nothing when value is None."""
    return "" if value is None else element(tag, value)


def document(root: str, children: Iterable[str], namespace: bool = True) -> bytes:
    """A full response document."""
    ns = f' xmlns="{S3_NS}"' if namespace else ""
    return (DECLARATION + f"<{root}{ns}>" + "".join(children) + f"</{root}>").encode()


def empty(root: str) -> bytes:
    """An empty document such as ``<VersioningConfiguration/>``."""
    return (DECLARATION + f'<{root} xmlns="{S3_NS}"/>').encode()
