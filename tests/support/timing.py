"""Where the suite's time goes: a table per folder printed at the end of every run.

For each folder (one level below ``tests/``, and ``tests/unit``'s own subfolders) it prints the
number of tests, their summed time (setup + call + teardown, so a module's server start-up is
charged to its first test) and the folder's wall time: from the first of its tests to start to
the last to end. Under pytest-xdist the table is built in the controller from the reports the
workers send back (each carries its start and stop times), so the folders' times there overlap
and their sum exceeds the run's wall time, which is printed last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import pytest


@dataclass
class _Folder:
    tests: int = 0
    seconds: float = 0.0
    first_start: float = float("inf")
    last_stop: float = 0.0

    @property
    def wall(self) -> float:
        return max(self.last_stop - self.first_start, 0.0)


def folder_of(nodeid: str) -> str:
    """The folder a test is counted under: ``tests/unit/auth``, ``tests/integration``..."""
    parts = PurePosixPath(nodeid.split("::", 1)[0]).parts
    if "tests" not in parts:
        return str(PurePosixPath(*parts[:-1])) or "."
    at = parts.index("tests")
    folder = parts[at : at + 2]
    # Unit tests mirror src/: their subpackages are the useful grain.
    if folder[-1:] == ("unit",) and len(parts) > at + 3:
        folder = parts[at : at + 3]
    # A test module straight under tests/ counts as tests/ itself.
    if len(folder) > 1 and folder[-1].endswith(".py"):
        folder = folder[:-1]
    return str(PurePosixPath(*folder))


class TimingReport:
    """Adds up the test reports per folder; prints the table in the terminal summary."""

    def __init__(self) -> None:
        self.folders: dict[str, _Folder] = {}
        self.counted: set[str] = set()
        self.session_start = time.time()

    @pytest.hookimpl
    def pytest_sessionstart(self) -> None:
        self.session_start = time.time()

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        folder = self.folders.setdefault(folder_of(report.nodeid), _Folder())
        if report.nodeid not in self.counted:
            self.counted.add(report.nodeid)
            folder.tests += 1
        folder.seconds += report.duration
        if report.start:
            folder.first_start = min(folder.first_start, report.start)
        if report.stop:
            folder.last_stop = max(folder.last_stop, report.stop)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.folders:
            return
        terminalreporter.write_sep("=", "time per folder")
        width = max(len(name) for name in self.folders)
        terminalreporter.write_line(
            f"{'folder':<{width}}  {'tests':>6}  {'test time s':>11}  {'wall s':>8}"
        )
        for name in sorted(self.folders):
            folder = self.folders[name]
            terminalreporter.write_line(
                f"{name:<{width}}  {folder.tests:>6}  {folder.seconds:>11.1f}  {folder.wall:>8.1f}"
            )
        total_tests = sum(f.tests for f in self.folders.values())
        total_seconds = sum(f.seconds for f in self.folders.values())
        terminalreporter.write_line(
            f"{'all':<{width}}  {total_tests:>6}  {total_seconds:>11.1f}  "
            f"{time.time() - self.session_start:>8.1f}"
        )


def register(config: pytest.Config) -> None:
    """Register the report, in the controller only: xdist workers forward their reports."""
    if hasattr(config, "workerinput"):
        return
    config.pluginmanager.register(TimingReport(), "andromede-timing")
