"""Job leases: which process runs a background job, kept in the metadata database.

Every gateway process runs the same loops; for each job the one that holds its lease does the
work. A lease names its holder, an epoch and an expiry:

- taking a free or expired lease makes the taker its holder with the next epoch (a fencing
  token: whatever the previous holder still tries with its epoch is refused);
- the holder renews it well before it expires (every third of its term);
- a holder that cannot renew stops its job a sixth of a term before its lease expires, as
  measured on its own monotonic clock from the last renewal that succeeded (from before it was
  asked), so before anyone else may take over.

The bound for a dead holder's job to resume elsewhere: the lease's term (``job_lease_seconds``)
plus one poll of the others (a third of the term), plus the clock skew between the gateways,
which NTP keeps far below a second.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Lease:
    """A job's lease as the database holds it."""

    job: str
    holder: str
    epoch: int
    expires: dt.datetime

    def held_by(self, holder: str, now: dt.datetime) -> bool:
        """Whether ``holder`` holds it at ``now``."""
        return self.holder == holder and now < self.expires
