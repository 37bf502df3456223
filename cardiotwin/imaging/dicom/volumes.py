"""Several volumes in one series: the same slice positions repeated with a different diffusion
b-value, echo, acquisition or temporal position (:func:`split_volumes`, :func:`pick_volume`).

A diffusion series holds one volume per b-value (DiffusionBValue, in the MR Diffusion macro of an
enhanced file), a multi-echo series one per EchoNumbers, a repeated scan one per
AcquisitionNumber, a dynamic series one per TemporalPositionIdentifier. The reader refuses such a
series as "duplicate slice positions" unless one volume is picked: by its 0-based index in the
order listed, or by a selector naming the attribute, ``"b=1000"``, ``"echo=2"``,
``"acquisition=3"``, ``"t=5"`` (several joined with ``,`` when one attribute is not enough, e.g.
``"b=1000,acquisition=4"`` for diffusion directions told apart by their acquisition).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cardiotwin.errors import DicomError, InputError
from cardiotwin.imaging.dicom.frames import POSITION_TOL_MM, Frame, common_plane

__all__ = [
    "VOLUME_COMMANDS", "VOLUME_KEYS", "VOLUME_OPTION", "SeriesVolume", "pick_volume",
    "split_volumes", "volumes_message",
]

#: Selector names and the frame attribute (and DICOM keyword) each reads, in order of preference.
VOLUME_KEYS = (
    ("b", "b_value", "DiffusionBValue"),
    ("echo", "echo_number", "EchoNumbers"),
    ("acquisition", "acquisition_number", "AcquisitionNumber"),
    ("t", "temporal_index", "TemporalPositionIdentifier/Index"),
)


#: What the command line calls the volume option, and the commands that take it.
VOLUME_OPTION = "--volume"
VOLUME_COMMANDS = ("dicom convert", "twin build", "segment")


@dataclass(frozen=True)
class SeriesVolume:
    """One volume of a multi-volume series.

    Attributes
    ----------
    index : int
        0-based position in the order listed (the ``volume=`` index).
    label : str
        Its selector, e.g. ``"b=1000"`` or ``"b=1000,acquisition=4"``.
    frames : tuple of Frame
        Its slices.
    details : str
        What else tells it apart, not usable as a selector: ``"TE 20 ms"`` when the echo time
        differs between the volumes ("" otherwise).
    """

    index: int
    label: str
    frames: tuple[Frame, ...]
    details: str = ""

    @property
    def n_slices(self) -> int:
        """Slices (frames) of this volume."""
        return len(self.frames)

    def describe(self) -> str:
        """``"[1] echo=2, TE 20 ms (5 slices)"``."""
        extra = f", {self.details}" if self.details else ""
        return f"[{self.index}] {self.label}{extra} ({len(self.frames)} slices)"


def _value_text(v: float | int) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _positions(frames: Sequence[Frame], normal: np.ndarray) -> np.ndarray:
    return np.sort(np.array([fr.ipp @ normal for fr in frames]))


def _distinct(along: np.ndarray) -> bool:
    return bool(along.size < 2 or np.all(np.diff(along) >= POSITION_TOL_MM))


def split_volumes(frames: Sequence[Frame], name: str) -> list[SeriesVolume] | None:
    """The volumes of a series whose slice positions repeat, or None.

    None when no position repeats, or when no attribute of :data:`VOLUME_KEYS` (alone, or all
    those present together) splits the frames into sets without a repeated position, each of more
    than one slice (unless the series has a single position).
    """
    if len(frames) < 2:
        return None
    try:
        _, _, normal = common_plane(frames, name)
    except DicomError:
        return None
    along = _positions(frames, normal)
    if _distinct(along):
        return None
    n_positions = 1 + int(np.sum(np.diff(along) >= POSITION_TOL_MM))
    present = [k for k in VOLUME_KEYS
               if all(getattr(fr, k[1]) is not None for fr in frames)
               and len({getattr(fr, k[1]) for fr in frames}) > 1]
    candidates = [[k] for k in present]
    if len(present) > 1:
        candidates.append(present)
    for keys in candidates:
        groups: dict[tuple, list[Frame]] = {}
        for fr in frames:
            groups.setdefault(tuple(getattr(fr, k[1]) for k in keys), []).append(fr)
        if any(not _distinct(_positions(g, normal)) for g in groups.values()):
            continue
        if n_positions > 1 and any(len(g) < 2 for g in groups.values()):
            continue
        # labelled by every attribute that is constant within each volume (b=1000,acquisition=3
        # rather than acquisition=3 alone), in the order of VOLUME_KEYS
        named = [k for k in present
                 if all(len({getattr(fr, k[1]) for fr in g}) == 1 for g in groups.values())]
        order = sorted(groups, key=lambda v: tuple(getattr(groups[v][0], k[1]) for k in named))
        tes = _echo_times([groups[value] for value in order])
        return [
            SeriesVolume(
                i,
                ",".join(f"{k[0]}={_value_text(getattr(groups[value][0], k[1]))}"
                         for k in named),
                tuple(groups[value]),
                "" if tes is None else f"TE {tes[i]:g} ms",
            )
            for i, value in enumerate(order)
        ]
    return None


def _echo_times(groups: Sequence[Sequence[Frame]]) -> list[float] | None:
    """The echo time (ms) of each volume when each has one and they are not all the same."""
    out = []
    for g in groups:
        tes = {fr.echo_time_ms for fr in g}
        if len(tes) != 1 or None in tes:
            return None
        out.append(float(tes.pop()))
    return out if len(set(out)) > 1 else None


def _parse_selector(selector: str) -> dict[str, float]:
    names = {k[0] for k in VOLUME_KEYS}
    out = {}
    for part in selector.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in names:
            raise InputError(
                f"volume selector {selector!r}: use a 0-based index or "
                f"{', '.join(k[0] + '=<value>' for k in VOLUME_KEYS)} (joined with ',')"
            )
        try:
            out[key] = float(value)
        except ValueError:
            raise InputError(f"volume selector {selector!r}: {value.strip()!r} is not a number")\
                from None
    return out


def pick_volume(volumes: Sequence[SeriesVolume], volume: int | str, name: str) -> SeriesVolume:
    """The volume chosen by a 0-based index (an int or a string of digits) or a selector.

    Raises
    ------
    DicomError
        No volume matches (the message lists them).
    InputError
        A selector that cannot be parsed.
    """
    listing = "; ".join(v.describe() for v in volumes)
    if isinstance(volume, (int, np.integer)) or str(volume).strip().isdigit():
        i = int(volume)
        if not 0 <= i < len(volumes):
            raise DicomError(f"{name} has no volume {i}; its volumes are {listing}")
        return volumes[i]
    wanted = _parse_selector(str(volume))
    matches = []
    for v in volumes:
        have = dict(part.split("=") for part in v.label.split(","))
        if all(k in have and float(have[k]) == x for k, x in wanted.items()):
            matches.append(v)
    if len(matches) != 1:
        raise DicomError(
            f"{name}: volume selector {volume!r} matches {len(matches)} volume(s); its volumes "
            f"are {listing}"
        )
    return matches[0]


def volumes_message(volumes: Sequence[SeriesVolume], name: str) -> str:
    """The refusal of a multi-volume series read without choosing one: what is there and how
    to pick one."""
    keys = [k for k in VOLUME_KEYS if volumes and k[0] + "=" in volumes[0].label]
    by = " and ".join(k[2] for k in keys)
    example = volumes[-1]
    return (
        f"{name} holds {len(volumes)} volumes at the same slice positions, told apart by {by}: "
        f"{'; '.join(v.describe() for v in volumes)}; read one with volume={example.index} or "
        f"volume={example.label!r} (on the command line {VOLUME_OPTION} {example.index} or "
        f"{VOLUME_OPTION} {example.label} of cardiotwin {', '.join(VOLUME_COMMANDS)})"
    )
