"""How the suite is shared out among pytest-xdist workers (``make test`` runs ``-n 4
--dist loadgroup --no-loadscope-reorder``).

Two rules, applied only when the run is distributed:

- The tests of a module that uses a module-scoped fixture (a server, a populated bucket, a
  stopped trail) go to one worker together, so that fixture is set up once, not once per
  worker. Every other test is dealt out on its own, which keeps the workers evenly loaded.
  Session-scoped fixtures (the shared integration server, PostgreSQL, SoftHSM, KMIP) are set
  up once per worker that needs them; each worker has its own temporary directory and its
  own ports, so they never meet.
- Long tests go first: the slow-marked ones, then the ones that start servers
  (``integration``, ``resilience``), then the rest, which fill the gaps at the end. A worker
  that picks a minute-long crash loop last would keep the run waiting for it alone. xdist
  would otherwise hand out the largest groups first and single tests, the slow ones among
  them, after all of them: ``--no-loadscope-reorder`` keeps this order.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

_FOLDER_ORDER = {"resilience": 1, "integration": 1, "contract": 2}
_LATE = 3
_SHARED_SCOPES = {"module", "package", "class"}


def distributed(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker of a distributed run."""
    return hasattr(config, "workerinput")


def schedule(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order ``items`` and mark their groups, as the module docstring says; a no-op outside a
    distributed run, so a plain ``pytest`` keeps the collection order."""
    if not distributed(config):
        return
    items.sort(key=_rank)
    # xdist sets its workers' own ``--dist`` to "no"; this flag keeps what the run asked for.
    if not config.getoption("loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None and _shares_a_fixture(item):
            # xdist appends the group to the test's id: keep it short ("integration/test_x").
            module = PurePosixPath(item.nodeid.split("::", 1)[0]).with_suffix("")
            item.add_marker(pytest.mark.xdist_group(str(module).removeprefix("tests/")))


def _rank(item: pytest.Item) -> tuple[int, int]:
    parts = PurePosixPath(item.nodeid.split("::", 1)[0]).parts
    folder = parts[parts.index("tests") + 1] if "tests" in parts[:-1] else ""
    return (0 if item.get_closest_marker("slow") else 1, _FOLDER_ORDER.get(folder, _LATE))


def _shares_a_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definition.scope in _SHARED_SCOPES
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )
