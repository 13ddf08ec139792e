"""The conformance runner's list of expected failures and its verdicts (conformance/run.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
FEATURES = {
    "acl", "versioning", "object-lock", "bucket-policy", "lifecycle", "cors", "post-object",
    "public-access-block", "object-ownership", "bucket-logging", "torrent", "aws-differs",
}  # fmt: skip


@pytest.fixture(scope="module")
def runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_run", ROOT / "conformance/run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_every_line_names_a_known_feature_and_a_reason(runner: ModuleType) -> None:
    expected = runner.read_expected()
    assert len(expected) > 100
    assert {e.feature for e in expected.values()} <= FEATURES
    assert all(len(e.reason) > 10 for e in expected.values())
    # Only what is not built yet, or where the suite contradicts AWS with evidence given.
    differs = [e for e in expected.values() if e.feature == "aws-differs"]
    assert all("S3" in e.reason for e in differs)


def test_a_malformed_or_repeated_line_is_refused(runner: ModuleType, tmp_path: Path) -> None:
    bad = tmp_path / "expected.txt"
    bad.write_text("test_a  acl: needs ACLs\ntest_b no feature\n")
    with pytest.raises(SystemExit, match=":2:"):
        runner.read_expected(bad)
    bad.write_text("test_a  acl: needs ACLs\ntest_a  acl: again\n")
    with pytest.raises(SystemExit, match="twice"):
        runner.read_expected(bad)


def test_verdicts(runner: ModuleType, tmp_path: Path) -> None:
    listed = tmp_path / "expected.txt"
    listed.write_text(
        "test_acl  acl: needs ACLs\ntest_fixed  cors: needs CORS\ntest_gone  acl: gone\n"
    )
    expected = runner.read_expected(listed)

    def result(name: str, outcome: str, markers: str = "") -> object:
        return runner.Result(name, outcome, "g", frozenset(markers.split()), "")

    results = [
        result("test_acl", "failed"),
        result("test_fixed", "passed"),
        result("test_new", "failed"),
        result("test_rgw_only", "failed", "fails_on_aws"),
        result("test_ok", "passed"),
    ]
    regressions, fixed, unknown = runner.compare(results, expected, whole=True)
    assert [r.name for r in regressions] == ["test_new"]  # fails_on_aws is not judged
    assert [r.name for r in fixed] == ["test_fixed"]
    assert unknown == ["test_gone"]
    table = runner.group_table(results, expected)
    assert "| g | 4 | 2 | 1 | 0 | 1 | 0 | 50.0 | 66.7 | acl |" in table
