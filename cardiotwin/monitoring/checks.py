"""Checks an observation passes before a twin may use it.

* **Plausible**: the SI value lies in the range of its LOINC code (:data:`.observations.VITALS`,
  sources in ``docs/monitoring.md``).
* **Monotone**: within one stream (subject, code, device) times strictly increase.
* **Idempotent**: the same observation twice (same stream, time and value, from any source) is
  one observation; the second is recognised as a duplicate, not stored again and not an error.
  Two different values for the same stream and time are a conflict: the second is rejected.

A refused observation goes to the :class:`~.quarantine.Quarantine` with its reason; nothing is
dropped silently and an accepted value is never changed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from datetime import datetime

from cardiotwin.errors import ImplausibleValueError
from cardiotwin.monitoring.observations import Batch, Observation
from cardiotwin.monitoring.quarantine import Quarantine, Rejection

logger = logging.getLogger(__name__)


def check_plausible(obs: Observation) -> None:
    """Raise :class:`~cardiotwin.errors.ImplausibleValueError` when ``obs`` is outside the
    plausible range of its code; the message names the record, the value with its unit and the
    range."""
    v = obs.vital
    lo, hi = v.plausible_si
    if not lo <= obs.value <= hi:
        raise ImplausibleValueError(
            f"{v.name} ({v.code}) is outside its plausible range", record=obs.where,
            field="value", value=f"{obs.value_as_received:g} {obs.unit}",
            expected=f"{v.describe_range()} ({v.range_source})")


class Verdict(enum.Enum):
    """What :meth:`Screen.offer` did with an observation."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class Screen:
    """Applies the checks to a flow of observations and keeps what it refused.

    Stateful (the last accepted time of every stream and the keys seen), so one screen serves
    one flow of observations, e.g. one twin's ingest.

    Parameters
    ----------
    quarantine : Quarantine, optional
        Where refused records go; a new empty one by default.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> s = Screen()
    >>> hr = Observation(subject="tw-1", time=datetime(2024, 5, 1, 10, tzinfo=UTC),
    ...                  code="8867-4", value_as_received=72, unit="/min", source="doc")
    >>> s.offer(hr), s.offer(hr)
    (<Verdict.ACCEPTED: 'accepted'>, <Verdict.DUPLICATE: 'duplicate'>)
    """

    def __init__(self, *, quarantine: Quarantine | None = None):
        self.quarantine = quarantine if quarantine is not None else Quarantine()
        self.accepted: list[Observation] = []
        self.duplicates = 0
        self._last: dict[tuple[str, str, str], datetime] = {}
        self._seen: dict[tuple, Observation] = {}
        self._at: dict[tuple, Observation] = {}

    def _reject(self, obs: Observation, *, kind: str, field: str, reason: str,
                expected: str) -> Verdict:
        self.quarantine.add(Rejection(
            kind=kind, source=obs.source, record=obs.record, field=field, reason=reason,
            value=f"{obs.value_as_received:g} {obs.unit} at {obs.time.isoformat()}",
            expected=expected, subject=obs.subject))
        logger.info("quarantined %s: %s", obs.where, reason)
        return Verdict.REJECTED

    def offer(self, obs: Observation) -> Verdict:
        """Check one observation; accept it, recognise it as a duplicate, or quarantine it."""
        if obs.key in self._seen:
            self.duplicates += 1
            logger.debug("%s duplicates %s", obs.where, self._seen[obs.key].where)
            return Verdict.DUPLICATE
        try:
            check_plausible(obs)
        except ImplausibleValueError as err:
            self.quarantine.add(Rejection.from_error(err, source=obs.source, record=obs.record,
                                                     subject=obs.subject))
            return Verdict.REJECTED
        stream_at = (*obs.stream, obs.time)
        if stream_at in self._at:
            first = self._at[stream_at]
            return self._reject(
                obs, kind="conflict", field="value",
                reason=(f"{obs.where}: a different {obs.vital.name} for the same time and device "
                        f"was already accepted from {first.where} "
                        f"({first.value_as_received:g} {first.unit})"),
                expected=f"{first.value_as_received:g} {first.unit} or a later time")
        last = self._last.get(obs.stream)
        if last is not None and obs.time < last:
            return self._reject(
                obs, kind="out-of-order", field="time",
                reason=(f"{obs.where}: time {obs.time.isoformat()} is earlier than the last "
                        f"accepted {obs.vital.name} of this stream ({last.isoformat()})"),
                expected=f"a time after {last.isoformat()}")
        self._last[obs.stream] = obs.time
        self._seen[obs.key] = obs
        self._at[stream_at] = obs
        self.accepted.append(obs)
        return Verdict.ACCEPTED

    def offer_all(self, observations: Iterable[Observation]) -> list[Observation]:
        """Offer several observations in order; return those accepted now."""
        return [o for o in observations if self.offer(o) is Verdict.ACCEPTED]

    def offer_batch(self, batch: Batch) -> list[Observation]:
        """Quarantine the reader's rejections, then offer its observations; return those
        accepted now."""
        self.quarantine.extend(batch.rejections)
        return self.offer_all(batch.observations)
