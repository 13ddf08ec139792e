"""Background job: due key destructions and pending re-wraps, periodically."""

from __future__ import annotations

from andromede.services.rewrap import KeyJobs
from andromede.workers.loop import every


class KeyWorker:
    """Runs :meth:`KeyJobs.run_once` every ``interval`` seconds until cancelled."""

    def __init__(self, jobs: KeyJobs) -> None:
        self.jobs = jobs

    async def run_forever(self, interval: float) -> None:
        """Loop; a failing pass (a key manager away) is logged and retried next interval."""
        await every(interval, self.jobs.run_once, "key jobs")
