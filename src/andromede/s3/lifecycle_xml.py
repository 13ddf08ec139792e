"""The ``LifecycleConfiguration`` document: parsed into ``core.lifecycle`` rules (everything
checked, nothing half-applied) and rendered back."""

from __future__ import annotations

import datetime as dt
import secrets
from xml.etree.ElementTree import Element

from andromede.core import errors
from andromede.core.lifecycle import (
    Expiration,
    LifecycleConfig,
    LifecycleFilter,
    LifecycleRule,
    NoncurrentExpiration,
)
from andromede.s3 import xml

# Actions that move versions to other storage classes: there is one class here.
_TRANSITIONS = ("Transition", "NoncurrentVersionTransition")


def _int(el: Element, name: str) -> int | None:
    raw = xml.text(el, name)
    if raw is None:
        return None
    value = raw.strip()
    if not value.lstrip("-").isdigit() or len(value) > 12:
        raise errors.MalformedXML()
    return int(value)


def _tags(parent: Element) -> tuple[tuple[str, str], ...]:
    pairs = []
    for tag in parent.findall("Tag"):
        key, value = xml.text(tag, "Key"), xml.text(tag, "Value")
        if key is None or value is None:
            raise errors.MalformedXML()
        pairs.append((key, value))
    return tuple(pairs)


def _filter(rule: Element) -> LifecycleFilter:
    top_prefix = xml.text(rule, "Prefix")
    found = rule.find("Filter")
    if found is None:
        if top_prefix is None:
            raise errors.MalformedXML()
        return LifecycleFilter(prefix=top_prefix, legacy=True)
    if top_prefix is not None:
        raise errors.MalformedXML()
    children = list(found)
    if len(children) > 1:
        raise errors.MalformedXML()  # several predicates go in <And>
    where = found.find("And")
    if where is None:
        where = found
    return LifecycleFilter(
        prefix=xml.text(where, "Prefix") or "",
        tags=_tags(where),
        size_greater_than=_int(where, "ObjectSizeGreaterThan"),
        size_less_than=_int(where, "ObjectSizeLessThan"),
    )


def _expiration(rule: Element) -> Expiration | None:
    found = rule.find("Expiration")
    if found is None:
        return None
    raw_date = xml.text(found, "Date")
    date = None
    if raw_date is not None:
        try:
            date = dt.datetime.fromisoformat(raw_date.strip())
        except ValueError:
            raise errors.InvalidArgument("'Date' must be in ISO 8601 format") from None
        if date.tzinfo is None:
            date = date.replace(tzinfo=dt.UTC)
    marker = xml.text(found, "ExpiredObjectDeleteMarker")
    if marker is not None and marker.strip().lower() not in ("true", "false"):
        raise errors.MalformedXML()
    return Expiration(
        days=_int(found, "Days"),
        date=date,
        expired_object_delete_marker=marker is not None and marker.strip().lower() == "true",
    )


def _rule(el: Element) -> LifecycleRule:
    for name in _TRANSITIONS:
        if el.find(name) is not None:
            raise errors.InvalidStorageClass(
                "Transitions are not supported: this store has a single storage class."
            )
    status = xml.text(el, "Status")
    if status not in ("Enabled", "Disabled"):
        raise errors.MalformedXML()
    noncurrent = el.find("NoncurrentVersionExpiration")
    abort = el.find("AbortIncompleteMultipartUpload")
    nc_days = None if noncurrent is None else _int(noncurrent, "NoncurrentDays")
    if noncurrent is not None and nc_days is None:
        raise errors.MalformedXML()
    abort_days = None if abort is None else _int(abort, "DaysAfterInitiation")
    if abort is not None and abort_days is None:
        raise errors.MalformedXML()
    return LifecycleRule(
        id=xml.text(el, "ID") or secrets.token_hex(16),
        enabled=status == "Enabled",
        filter=_filter(el),
        expiration=_expiration(el),
        noncurrent=(
            None
            if noncurrent is None or nc_days is None
            else NoncurrentExpiration(nc_days, _int(noncurrent, "NewerNoncurrentVersions"))
        ),
        abort_multipart_days=abort_days,
    )


def parse_lifecycle(body: bytes) -> LifecycleConfig:
    """A PutBucketLifecycleConfiguration body; MalformedXML, InvalidArgument, InvalidRequest or
    InvalidStorageClass as AWS answers."""
    root = xml.parse(body)
    if root.tag != "LifecycleConfiguration":
        raise errors.MalformedXML()
    return LifecycleConfig(tuple(_rule(el) for el in root.findall("Rule")))


def _render_filter(f: LifecycleFilter) -> str:
    if f.legacy:
        return xml.element("Prefix", f.prefix)
    parts = []
    if f.prefix:
        parts.append(xml.element("Prefix", f.prefix))
    parts += [
        "<Tag>" + xml.element("Key", k) + xml.element("Value", v) + "</Tag>" for k, v in f.tags
    ]
    if f.size_greater_than is not None:
        parts.append(xml.element("ObjectSizeGreaterThan", f.size_greater_than))
    if f.size_less_than is not None:
        parts.append(xml.element("ObjectSizeLessThan", f.size_less_than))
    if len(parts) > 1:
        return "<Filter><And>" + "".join(parts) + "</And></Filter>"
    return "<Filter>" + ("".join(parts) or xml.element("Prefix", "")) + "</Filter>"


def render_lifecycle(config: LifecycleConfig) -> bytes:
    rules = []
    for r in config.rules:
        parts = [xml.element("ID", r.id), _render_filter(r.filter)]
        parts.append(xml.element("Status", "Enabled" if r.enabled else "Disabled"))
        e = r.expiration
        if e is not None:
            if e.days is not None:
                inner = xml.element("Days", e.days)
            elif e.date is not None:
                inner = xml.element(
                    "Date", e.date.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                )
            else:
                inner = xml.element("ExpiredObjectDeleteMarker", "true")
            parts.append("<Expiration>" + inner + "</Expiration>")
        n = r.noncurrent
        if n is not None:
            inner = xml.element("NoncurrentDays", n.days)
            if n.newer_versions is not None:
                inner += xml.element("NewerNoncurrentVersions", n.newer_versions)
            parts.append("<NoncurrentVersionExpiration>" + inner + "</NoncurrentVersionExpiration>")
        if r.abort_multipart_days is not None:
            days = xml.element("DaysAfterInitiation", r.abort_multipart_days)
            parts.append(
                "<AbortIncompleteMultipartUpload>" + days + "</AbortIncompleteMultipartUpload>"
            )
        rules.append("<Rule>" + "".join(parts) + "</Rule>")
    return xml.document("LifecycleConfiguration", rules)
