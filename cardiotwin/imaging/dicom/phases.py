"""Cardiac phases (time points) of a series: the same slice positions repeated at several times."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cardiotwin.errors import DicomError
from cardiotwin.imaging.dicom.frames import POSITION_TOL_MM, Frame, common_plane

__all__ = ["split_phases"]


def split_phases(
    frames: Sequence[Frame], name: str
) -> list[tuple[float | int, list[Frame]]] | None:
    """Split frames that repeat the same positions at several times into phases, or None (3-D).

    Frames are grouped by position along the normal; when every position holds the same number
    ``n > 1`` of frames with distinct temporal positions (TemporalPositionIndex/Identifier,
    trigger time, nominal % of the RR interval), phase ``p`` is the ``p``-th frame in time at every
    position. Labels: the median trigger time (ms) when all frames have one, else the temporal
    index, else the % of RR, else the phase number.
    """
    if len(frames) < 2:
        return None
    try:
        row, col, normal = common_plane(frames, name)
    except DicomError:
        return None
    along = np.array([fr.ipp @ normal for fr in frames])
    order = np.argsort(along, kind="stable")
    clusters: list[list[Frame]] = []
    last = None
    for i in order:
        if last is None or along[i] - last > POSITION_TOL_MM:
            clusters.append([])
        clusters[-1].append(frames[i])
        last = along[i]
    counts = {len(c) for c in clusters}
    if counts == {1} or len(counts) != 1:
        return None
    n = counts.pop()
    for c in clusters:
        keys = [fr.temporal_key for fr in c]
        if not all(fr.has_time for fr in c) or len(set(keys)) != n:
            return None
        c.sort(key=lambda fr: fr.temporal_key)
    phases = [[c[p] for c in clusters] for p in range(n)]

    def label(ph: list[Frame], p: int) -> list[float | int]:
        return [
            float(np.round(np.median([fr.trigger_ms for fr in ph]), 3))
            if all(fr.trigger_ms is not None for fr in ph)
            else None,
            ph[0].temporal_index if all(fr.temporal_index is not None for fr in ph) else None,
            ph[0].percent_rr if all(fr.percent_rr is not None for fr in ph) else None,
            p,
        ]

    cand = [label(ph, p) for p, ph in enumerate(phases)]
    for j in range(4):
        labels = [c[j] for c in cand]
        if None not in labels and len(set(labels)) == n:
            return list(zip(labels, phases, strict=True))
    return None  # unreachable: the phase numbers are distinct
