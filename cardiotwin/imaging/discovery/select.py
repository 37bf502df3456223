"""Choosing one series (or one cardiac phase of it) from a catalogue by UID or rule
(:func:`select_series`, :data:`RULES`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging.discovery.catalog import (
    PHASE_TOL_PCT,
    TRIGGER_TOL_MS,
    SeriesCatalog,
    SeriesSelection,
    SeriesSummary,
    SkippedFile,
    distinct_values,
)

__all__ = ["RULES", "check_skipped", "select_series"]

log = logging.getLogger(__name__)


#: Selection rules understood by :func:`select_series`.
RULES = ("largest-contrast-ct", "largest-ct", "phase=<percent>", "trigger=<ms>",
         "uid-prefix=<prefix>")


def _readable(se: SeriesSummary) -> bool:
    """No problem that stops a regular single-phase 3-D read."""
    return se.n_frames == se.n_files and se.uniform_spacing and not any(
        "duplicate slices" in p or "tilt" in p or "mixed" in p for p in se.problems
    ) and se.n_phases == 1


def _rank(se: SeriesSummary) -> tuple:
    dk = se.spacing_mm[2] or math.inf
    return (_readable(se), se.is_original, se.n_voxels, -dk, se.series_uid)


def _largest(candidates: list[SeriesSummary], what: str) -> tuple[SeriesSummary, str]:
    best = max(candidates, key=_rank)
    notes = [f"{what}: the largest ({best.size_text}, {best.n_voxels} voxels) of "
             f"{len(candidates)} candidate(s)"]
    if not best.is_original:
        notes.append("no ORIGINAL candidate, a DERIVED series was taken")
    if best.n_phases > 1:
        notes.append(f"it holds {best.n_phases} cardiac phases: choose one with 'phase=<percent>'")
    elif not _readable(best):
        notes.append(f"it is not a regular 3-D stack: {'; '.join(best.problems)}")
        log.warning("selected series %s is not a regular 3-D stack", best.series_uid)
    return best, "; ".join(notes)


def _parse_number(rule: str, text: str, unit: str) -> float:
    text = text.strip().removesuffix(unit).strip()
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"selection rule {rule!r}: {text!r} is not a number; e.g. 'phase=75' or "
            f"'trigger=350'"
        ) from None


def _phase_subset(
    se: SeriesSummary, *, pct: float | None, trigger_ms: float | None
) -> tuple[tuple[Path, ...], float | None, float | None, float] | None:
    """Files of ``se`` at the requested phase, the phase found, and its distance to the target."""
    if pct is not None:
        have = [f for f in se.frames if f.phase_pct is not None]
        if have:
            nearest = min(distinct_values((f.phase_pct for f in have), PHASE_TOL_PCT),
                          key=lambda p: abs(p - pct))
            files = {f.path for f in have if abs(f.phase_pct - nearest) <= PHASE_TOL_PCT}
            return tuple(sorted(files)), nearest, None, abs(nearest - pct)
        if se.phases_pct and len(se.phases_pct) == 1:  # from the SeriesDescription
            return se.files, se.phases_pct[0], None, abs(se.phases_pct[0] - pct)
        return None
    have = [f for f in se.frames if f.trigger_ms is not None]
    if not have or trigger_ms is None:
        return None
    groups = distinct_values((f.trigger_ms for f in have), TRIGGER_TOL_MS)
    nearest = min(groups, key=lambda t: abs(t - trigger_ms))
    files = {f.path for f in have if abs(f.trigger_ms - nearest) <= TRIGGER_TOL_MS}
    return tuple(sorted(files)), None, nearest, abs(nearest - trigger_ms)


def select_series(
    catalog: SeriesCatalog, *, uid: str | None = None, rule: str | None = None
) -> SeriesSelection:
    """Choose one series (or one cardiac phase of it) from a catalog.

    Parameters
    ----------
    catalog : SeriesCatalog
        From :func:`scan_tree`.
    uid : str, optional
        SeriesInstanceUID to take (exact).
    rule : str, optional
        One of

        * ``"largest-contrast-ct"``: CT with a contrast agent, not a localizer; among those the
          regular 3-D stacks first, ORIGINAL before DERIVED, then most voxels, then the finest
          slice spacing.
        * ``"largest-ct"``: the same without the contrast condition.
        * ``"phase=75"`` or ``"phase=75%"``: the images at that nominal percentage of the
          cardiac phase (the nearest one present); in series without percentages, the trigger
          time nearest ``75 % × R-R`` (R-R from NominalInterval or HeartRate). Among several
          series the closest phase wins, then the ranking above.
        * ``"trigger=350"`` / ``"trigger=350ms"``: the images whose trigger time is nearest
          350 ms.
        * ``"uid-prefix=1.2.840..."``: the one series whose UID starts so.

        With neither ``uid`` nor ``rule``, the catalog must hold exactly one series.

    Returns
    -------
    SeriesSelection
        ``files`` and ``series_uid`` for :func:`cardiotwin.imaging.dicom.read_series`.

    Raises
    ------
    DicomError
        If nothing matches (the message lists the series found, by patient label only), or a
        UID prefix is ambiguous.
    InputError
        If the rule is not understood, or both ``uid`` and ``rule`` are given.
    """
    series = list(catalog.series)
    if uid is not None and rule is not None:
        raise InputError("give either uid or rule, not both")

    def nothing(why: str) -> DicomError:
        return DicomError(f"{why} under {catalog.root}; found: {catalog.listing()}")

    if not series:
        if any(s.is_dicom for s in catalog.skipped):
            raise DicomError(f"no readable DICOM series under {catalog.root}: "
                             f"{catalog.skipped_text()}; re-export or remove the damaged file(s)")
        raise DicomError(f"no readable DICOM series under {catalog.root} ({catalog.n_files} "
                         f"file(s) examined, none of them a DICOM image)")

    if uid is not None:
        se = next((s for s in series if s.series_uid == uid.strip()), None)
        if se is None:
            raise nothing(f"no series with UID {uid}")
        return SeriesSelection(se.series_uid, se.files, se, f"series UID {uid}")
    if rule is None:
        if len(series) != 1:
            raise nothing(
                f"{len(series)} series found; choose one with uid=... or a rule "
                f"({', '.join(RULES)})"
            )
        se = series[0]
        return SeriesSelection(se.series_uid, se.files, se, "the only series")

    name, _, arg = rule.strip().partition("=")
    name = name.strip().lower()
    if name in ("largest-contrast-ct", "largest-ct") and not arg:
        candidates = [s for s in series if s.modality == "CT" and not s.is_localizer
                      and s.n_frames > 0 and (s.contrast or name == "largest-ct")]
        if not candidates:
            what = "contrast-enhanced CT series" if name == "largest-contrast-ct" else "CT series"
            raise nothing(f"rule {rule!r}: no {what} (localizers excluded)")
        se, why = _largest(candidates, f"rule {rule!r}")
        return SeriesSelection(se.series_uid, se.files, se, why)
    if name == "uid-prefix" and arg:
        matches = [s for s in series if s.series_uid.startswith(arg.strip())]
        if len(matches) != 1:
            found = "; ".join(str(s) for s in matches) if matches else "none"
            raise nothing(
                f"rule {rule!r} must match exactly one series; it matches "
                f"{len(matches)} ({found})"
            )
        se = matches[0]
        return SeriesSelection(se.series_uid, se.files, se, f"rule {rule!r}")
    if name in ("phase", "trigger") and arg:
        value = _parse_number(rule, arg, "%" if name == "phase" else "ms")
        if name == "phase" and not 0 <= value <= 100:
            raise InputError(f"selection rule {rule!r}: the phase must be in 0..100 %")
        options = []
        for se in series:
            if se.is_localizer:
                continue
            if name == "phase":
                found = _phase_subset(se, pct=value, trigger_ms=None)
                rr = se.rr_interval_ms
                if found is None and rr is not None:
                    found = _phase_subset(se, pct=None, trigger_ms=value / 100 * rr)
                    if found is not None:  # distance in % of R-R, comparable with percentages
                        found = (*found[:3], found[3] / rr * 100)
            else:
                found = _phase_subset(se, pct=None, trigger_ms=value)
            if found is not None:
                options.append((found, se))
        if not options:
            raise nothing(
                f"rule {rule!r}: no series has "
                + ("NominalPercentageOfCardiacPhase, a phase in its description, or trigger "
                   "times with a known R-R interval" if name == "phase" else "TriggerTime")
            )
        (files, pct, trig, dist), se = min(
            options, key=lambda o: (o[0][3], tuple(-float(x) for x in _rank(o[1])[:3]))
        )
        got = f"{pct:g} %" if pct is not None else f"trigger time {trig:g} ms"
        why = f"rule {rule!r}: {got} of series {se.series_uid} ({len(files)} file(s))"
        if dist > 0:
            why += f"; nearest available (off by {dist:.3g} {'%' if name == 'phase' else 'ms'})"
        return SeriesSelection(se.series_uid, files, se, why, phase_pct=pct, trigger_ms=trig)
    raise InputError(f"unknown selection rule {rule!r}; use one of: {', '.join(RULES)}")


def check_skipped(catalog: SeriesCatalog, selection: SeriesSelection) -> list[SkippedFile]:
    """The damaged DICOM files of the scan that cannot belong to the selected series.

    A damaged file (truncated, corrupt header) whose SeriesInstanceUID was recovered from its
    bytes belongs to that series; one whose UID could not be recovered may belong to any series
    with files in the same folder. Reading the selection without such a file would give a
    volume with a slice missing, so it is refused here, naming the file.

    Returns
    -------
    list of SkippedFile
        The damaged files of other series, safe to leave out (the caller warns about them).

    Raises
    ------
    DicomError
        When a damaged file belongs, or may belong, to the selected series (path relative to the
        scanned folder and the reason).
    """
    folders = {Path(f).parent for f in selection.series.files}
    suspects, others = [], []
    for s in catalog.skipped:
        if not s.is_dicom:
            continue
        if s.series_uid == selection.series_uid or (
            s.series_uid is None and s.path.parent in folders
        ):
            suspects.append(s)
        else:
            others.append(s)
    if suspects:
        where = ("belong(s) to it" if all(s.series_uid for s in suspects)
                 else "lie(s) in its folder and could be among its slices")
        raise DicomError(
            f"series {selection.series_uid} cannot be read whole: "
            f"{catalog.skipped_text(suspects)}; the damaged file(s) {where}: re-export the "
            f"series or remove them"
        )
    return others
