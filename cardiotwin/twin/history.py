"""The twin's monitoring history: observations as stored rows, the update of one ingest, replay.

The store keeps each accepted observation as a plain row (:func:`observation_row`) naming the
twin version it went into. :func:`apply_batch` is the whole update of one ingest: it rebuilds
the observations **from their rows** (so a live update and a replay read exactly the same
numbers), runs the filter of :mod:`cardiotwin.twin.assimilate` from the twin's state and writes
the posterior into ``twin.parameters["assimilation"]``. :func:`replay` repeats the updates from
the stored rows, batch by batch (one batch per version), from the prior of the version the
filter started at; it gives the stored state bit for bit.

This module imports no store: the workflows hand it dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cardiotwin.monitoring.observations import Observation
from cardiotwin.twin.assimilate import (
    ASSIMILATION_KEY,
    MEASUREMENT_NOISE,
    AssimilationState,
    assimilate,
    initial_state,
    observation_sha256,
    state_of,
)
from cardiotwin.twin.state import PatientTwin

__all__ = ["apply_batch", "flag_events", "observation_from_row", "observation_row", "replay", "stored_state"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def observation_row(obs: Observation) -> dict[str, Any]:
    """The row the store keeps for an accepted observation (the subject is the row's patient)."""
    return {"key_sha256": observation_sha256(obs),
            "time_utc": obs.time.astimezone(UTC).strftime(_TIME_FORMAT), "code": obs.code,
            "device": obs.device, "value_si": obs.value,
            "value_as_received": obs.value_as_received, "unit": obs.unit,
            "source": obs.source, "record": obs.record}


def observation_from_row(pseudonym: str, row: Mapping[str, Any]) -> Observation:
    """Inverse of :func:`observation_row` (the SI value is recomputed from the value and unit as
    received, exactly as when it was first read)."""
    t = datetime.strptime(row["time_utc"], _TIME_FORMAT).replace(tzinfo=UTC)
    return Observation(subject=pseudonym, time=t, code=row["code"],
                       value_as_received=float(row["value_as_received"]), unit=row["unit"],
                       source=row["source"], device=row["device"], record=row["record"])


def stored_state(twin: PatientTwin) -> AssimilationState | None:
    """The filter state stored with a twin version, None when it has none."""
    d = twin.parameters.get(ASSIMILATION_KEY)
    return None if not d else AssimilationState.from_dict(d)


def apply_batch(state: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
                ) -> tuple[dict[str, Any], str]:
    """The update of one ingest: the new twin state (dict) and the reason of its version.

    Parameters
    ----------
    state : the latest stored twin state (``PatientTwin.to_dict()``).
    rows : the new observations as :func:`observation_row` dicts.
    """
    twin = PatientTwin.from_dict(dict(state))
    before = state_of(twin)
    observations = [observation_from_row(twin.pseudonym, r) for r in rows]
    after = assimilate(before, observations)
    twin.parameters = {**twin.parameters, ASSIMILATION_KEY: after.to_dict()}
    counts: dict[str, int] = {}
    for o in observations:
        counts[o.code] = counts.get(o.code, 0) + 1
    used = sum(n for c, n in counts.items() if c in MEASUREMENT_NOISE)
    listed = ", ".join(f"{c}×{n}" for c, n in sorted(counts.items()))
    reason = (f"assimilated {used} of {len(observations)} observations ({listed})"
              if used else f"stored {len(observations)} observations ({listed}); none assimilated")
    return twin.to_dict(), reason


def replay(versions: Mapping[int, PatientTwin], rows: Iterable[Mapping[str, Any]], *,
           upto_version: int) -> AssimilationState:
    """The filter state of ``upto_version`` recomputed from the stored observations.

    Parameters
    ----------
    versions : twin versions by number; it must hold the version the filter started at (its
        reference version) and ``upto_version``.
    rows : stored observation rows with their ``twin_version``, in ingest order.
    upto_version : the version to reproduce.
    """
    target = versions[upto_version]
    stored = stored_state(target)
    if stored is None:
        return initial_state(target)
    start = stored.reference.version
    state = initial_state(versions[start])
    batches: dict[int, list[Observation]] = {}
    for r in rows:
        v = int(r["twin_version"])
        if start < v <= upto_version:
            batches.setdefault(v, []).append(observation_from_row(target.pseudonym, r))
    for v in sorted(batches):
        state = assimilate(state, batches[v])
    return state


def flag_events(start: PatientTwin, rows: Iterable[Mapping[str, Any]], *,
                now: datetime) -> list[dict[str, Any]]:
    """When the twin went stale, became current again, drifted or stopped drifting.

    The filter is replayed from the prior of ``start`` (the version the filter started at: the
    twin's last 3-D run) batch by batch, one batch per version, exactly as :func:`replay` does;
    after each batch the stale and drift flags of :func:`~cardiotwin.twin.assimilate.status`
    are compared with those before it.

    Parameters
    ----------
    start : the twin version the filter started at.
    rows : stored observation rows with their ``twin_version``, in ingest order (those of
        versions after ``start``).
    now : timezone-aware time up to which a gap without data counts as stale.

    Returns
    -------
    list of dict
        ``kind`` (``"stale"``, ``"current"``, ``"drift"``, ``"drift-cleared"``);
        ``time_utc``, a data time in ISO 8601 UTC (None for "no data since the build"): a stale
        event is :data:`STALE_AFTER_S` after the last observation, ``current`` the first
        observation after the gap, a drift change the last observation of the batch that
        changed the flag; ``version``, the version in force after it; ``detail``, why. In time
        order.
    """
    from datetime import timedelta

    from cardiotwin.twin.assimilate import STALE_AFTER_S, status

    def iso(t: datetime) -> str:
        return t.astimezone(UTC).strftime(_TIME_FORMAT)

    state = initial_state(start)
    version = int(start.version)
    batches: dict[int, list[Observation]] = {}
    for r in rows:
        v = int(r["twin_version"])
        if v > version:
            batches.setdefault(v, []).append(observation_from_row(start.pseudonym, r))
    events: list[dict[str, Any]] = []
    drift = False  # the prior is the last 3-D run's physiology: no drift from itself
    for v in sorted(batches):
        obs = [o for o in batches[v] if o.code in MEASUREMENT_NOISE]
        if not obs:
            continue
        t_first = min(o.time for o in obs)
        t_prev = state.time
        if t_prev is None:
            events.append({"kind": "current", "time_utc": iso(t_first), "version": v,
                           "detail": "first observation assimilated"})
        elif (t_first - t_prev).total_seconds() > STALE_AFTER_S:
            gone = t_prev + timedelta(seconds=STALE_AFTER_S)
            events.append({"kind": "stale", "time_utc": iso(gone), "version": version,
                           "detail": f"no observation for {STALE_AFTER_S / 60:.0f} min after "
                                     f"{iso(t_prev)}"})
            events.append({"kind": "current", "time_utc": iso(t_first), "version": v,
                           "detail": f"observations again after {iso(t_prev)}"})
        state = assimilate(state, obs)
        version = v
        at = status(state, None, as_of=state.time or now)
        if at.drift != drift:
            drift = at.drift
            events.append({"kind": "drift" if drift else "drift-cleared",
                           "time_utc": state.time_utc, "version": v,
                           "detail": "; ".join(at.drift_reasons) if drift else
                           "metrics back within the thresholds of the last 3-D run"})
    if state.time is None:
        events.insert(0, {"kind": "stale", "time_utc": None, "version": int(start.version),
                          "detail": "no monitoring observation assimilated yet"})
    elif (now - state.time).total_seconds() > STALE_AFTER_S:
        events.append({"kind": "stale",
                       "time_utc": iso(state.time + timedelta(seconds=STALE_AFTER_S)), "version": version,
                       "detail": f"no observation since {state.time_utc} (stale after "
                                 f"{STALE_AFTER_S / 60:.0f} min)"})
    return events
