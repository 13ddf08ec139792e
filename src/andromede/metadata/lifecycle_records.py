"""A bucket's lifecycle configuration as stored in ``buckets.lifecycle`` (JSON, keys short,
absent when empty): ``{"r": [{"id", "on", "f": {"p", "t", "gt", "lt"}, "e": {"d", "dt",
"m"}, "n": {"d", "k"}, "a": days}]}``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from andromede.core.lifecycle import (
    Expiration,
    LifecycleConfig,
    LifecycleFilter,
    LifecycleRule,
    NoncurrentExpiration,
)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != [] and v is not False}


def dump_lifecycle(config: LifecycleConfig) -> str:
    rules = []
    for r in config.rules:
        f = r.filter
        rule: dict[str, Any] = {
            "id": r.id,
            "on": r.enabled,
            "f": _drop_none(
                {
                    "p": f.prefix or None,
                    "t": [list(t) for t in f.tags],
                    "gt": f.size_greater_than,
                    "lt": f.size_less_than,
                    "lp": f.legacy,
                }
            ),
        }
        if r.expiration is not None:
            e = r.expiration
            rule["e"] = _drop_none(
                {
                    "d": e.days,
                    "dt": e.date.isoformat() if e.date else None,
                    "m": e.expired_object_delete_marker,
                }
            )
        if r.noncurrent is not None:
            rule["n"] = _drop_none({"d": r.noncurrent.days, "k": r.noncurrent.newer_versions})
        if r.abort_multipart_days is not None:
            rule["a"] = r.abort_multipart_days
        rules.append(rule)
    return json.dumps({"r": rules}, separators=(",", ":"), sort_keys=True)


def load_lifecycle(text: str) -> LifecycleConfig:
    rules = []
    for r in json.loads(text)["r"]:
        f = r.get("f", {})
        e, n = r.get("e"), r.get("n")
        rules.append(
            LifecycleRule(
                id=r["id"],
                enabled=r["on"],
                filter=LifecycleFilter(
                    prefix=f.get("p", ""),
                    tags=tuple((k, v) for k, v in f.get("t", [])),
                    size_greater_than=f.get("gt"),
                    size_less_than=f.get("lt"),
                    legacy=bool(f.get("lp", False)),
                ),
                expiration=None
                if e is None
                else Expiration(
                    days=e.get("d"),
                    date=dt.datetime.fromisoformat(e["dt"]) if "dt" in e else None,
                    expired_object_delete_marker=bool(e.get("m", False)),
                ),
                noncurrent=None if n is None else NoncurrentExpiration(n["d"], n.get("k")),
                abort_multipart_days=r.get("a"),
            )
        )
    return LifecycleConfig(tuple(rules))
