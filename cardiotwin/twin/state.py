"""The persistent state of a patient's digital twin: plain data with a JSON round trip.

:class:`Physiology` holds the patient's current haemodynamic state in clinical units (validated
against plausible ranges at construction); :class:`PatientTwin` holds everything the twin knows
about one pseudonymised patient: anatomy, the fluid mesh, physiology, fitted model parameters,
result summaries, the version history and provenance. The store (``cardiotwin.store``) persists
it as versioned JSON; this module imports nothing from the store.

The twin never holds the patient's name or hospital ID, only the pseudonym.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from numbers import Real
from pathlib import PurePath
from typing import Any

from cardiotwin.errors import InputError
from cardiotwin.privacy import find_identifying_key

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "PSEUDONYM_PATTERN",
    "Physiology",
    "PatientTwin",
    "weissler_lvet_s",
]

FORMAT_VERSION = 1
"""Version of the dictionary layout written by :meth:`PatientTwin.to_dict`."""

PSEUDONYM_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A pseudonym: 1–64 characters, letters, digits, ``.``, ``_``, ``-``, not starting with a symbol."""


# Plausible adult ranges (inclusive) used to reject mistyped or mis-unit values. Wide on purpose:
# they catch unit errors (kPa for mmHg, L for mL) and typos, not clinical abnormality.
_RANGES: dict[str, tuple[float, float, str]] = {
    "heart_rate_bpm": (30.0, 220.0, "bpm"),
    "stroke_volume_ml": (10.0, 200.0, "mL"),
    "systolic_bp_mmhg": (60.0, 260.0, "mmHg"),
    "diastolic_bp_mmhg": (30.0, 160.0, "mmHg"),
    "ejection_time_s": (0.15, 0.5, "s"),
}

_LVET_MIN_S, _LVET_MAX_S = _RANGES["ejection_time_s"][:2]


def weissler_lvet_s(heart_rate_bpm: float) -> float:
    """Left-ventricular ejection time predicted from heart rate (Weissler regression, men).

    LVET [ms] = 413 − 1.7 · HR [bpm]. The result is clipped to the plausible range
    0.15–0.5 s, because the linear regression leaves its data range at very high heart rates
    (it would predict < 150 ms above about 155 bpm).

    Parameters
    ----------
    heart_rate_bpm : float
        Heart rate in beats per minute.

    Returns
    -------
    float
        Ejection time in seconds.

    References
    ----------
    Weissler AM, Harris WS, Schoenfeld CD. Systolic time intervals in heart failure in man.
    Circulation 1968;37:149–159. (The corresponding regression for women is
    LVET = 418 − 1.6 · HR; the twin is sex-agnostic and uses the men's equation.)
    """
    lvet_s = (413.0 - 1.7 * float(heart_rate_bpm)) * 1e-3
    return min(max(lvet_s, _LVET_MIN_S), _LVET_MAX_S)


def _check_number(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InputError(
            f"{owner}.{name} must be a real number, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{owner}.{name} must be finite, got {value!r}")
    return value


def _check_range(name: str, value: Any) -> None:
    lo, hi, unit = _RANGES[name]
    v = _check_number("Physiology", name, value)
    if not lo <= v <= hi:
        raise InputError(
            f"Physiology.{name} = {v:g} {unit} is outside the plausible range "
            f"[{lo:g}, {hi:g}] {unit}; check the value and that it is given in {unit}"
        )


@dataclass(frozen=True)
class Physiology:
    """A patient's haemodynamic state in clinical units, validated at construction.

    Parameters
    ----------
    heart_rate_bpm : float
        Heart rate, beats/min, plausible range 30–220.
    stroke_volume_ml : float
        Left-ventricular stroke volume, mL, 10–200.
    systolic_bp_mmhg : float
        Systolic arterial pressure, mmHg, 60–260.
    diastolic_bp_mmhg : float
        Diastolic arterial pressure, mmHg, 30–160 and below the systolic pressure.
    ejection_time_s : float or None
        Left-ventricular ejection time, s, 0.15–0.5 and shorter than the cardiac period.
        ``None`` means "not measured": :attr:`effective_ejection_time_s` then predicts it from
        the heart rate with :func:`weissler_lvet_s`.

    Raises
    ------
    InputError
        If a value is not a finite number or lies outside its range; the message names the field
        and the range.

    Examples
    --------
    >>> p = Physiology(heart_rate_bpm=70, stroke_volume_ml=70, systolic_bp_mmhg=120,
    ...                diastolic_bp_mmhg=80)
    >>> round(p.cardiac_output_l_min, 2), round(p.mean_arterial_pressure_mmhg, 1)
    (4.9, 93.3)
    """

    heart_rate_bpm: float
    stroke_volume_ml: float
    systolic_bp_mmhg: float
    diastolic_bp_mmhg: float
    ejection_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("heart_rate_bpm", "stroke_volume_ml", "systolic_bp_mmhg", "diastolic_bp_mmhg"):
            _check_range(name, getattr(self, name))
        if self.diastolic_bp_mmhg >= self.systolic_bp_mmhg:
            raise InputError(
                f"Physiology.diastolic_bp_mmhg = {float(self.diastolic_bp_mmhg):g} mmHg must be "
                f"below systolic_bp_mmhg = {float(self.systolic_bp_mmhg):g} mmHg; "
                "check that the two values are not swapped"
            )
        if self.ejection_time_s is not None:
            _check_range("ejection_time_s", self.ejection_time_s)
            period_s = 60.0 / float(self.heart_rate_bpm)
            if float(self.ejection_time_s) >= period_s:
                raise InputError(
                    f"Physiology.ejection_time_s = {float(self.ejection_time_s):g} s must be "
                    f"shorter than the cardiac period 60/heart_rate_bpm = {period_s:.3f} s"
                )

    @property
    def effective_ejection_time_s(self) -> float:
        """Ejection time in s: the measured value, or the Weissler prediction if not measured."""
        if self.ejection_time_s is not None:
            return float(self.ejection_time_s)
        return weissler_lvet_s(self.heart_rate_bpm)

    @property
    def cardiac_output_l_min(self) -> float:
        """Cardiac output HR · SV in L/min."""
        return float(self.heart_rate_bpm) * float(self.stroke_volume_ml) * 1e-3

    @property
    def mean_arterial_pressure_mmhg(self) -> float:
        """Mean arterial pressure DBP + (SBP − DBP)/3 in mmHg (the one-third rule)."""
        dbp, sbp = float(self.diastolic_bp_mmhg), float(self.systolic_bp_mmhg)
        return dbp + (sbp - dbp) / 3.0

    @property
    def pulse_pressure_mmhg(self) -> float:
        """Pulse pressure SBP − DBP in mmHg."""
        return float(self.systolic_bp_mmhg) - float(self.diastolic_bp_mmhg)

    @property
    def mean_systolic_flow_ml_s(self) -> float:
        """Mean flow during ejection, SV / ejection time, in mL/s."""
        return float(self.stroke_volume_ml) / self.effective_ejection_time_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the five fields; derived values are not stored)."""
        return {
            "heart_rate_bpm": float(self.heart_rate_bpm),
            "stroke_volume_ml": float(self.stroke_volume_ml),
            "systolic_bp_mmhg": float(self.systolic_bp_mmhg),
            "diastolic_bp_mmhg": float(self.diastolic_bp_mmhg),
            "ejection_time_s": None
            if self.ejection_time_s is None
            else float(self.ejection_time_s),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Physiology:
        """Inverse of :meth:`to_dict`; unknown keys are refused with :class:`InputError`."""
        unknown = sorted(set(data) - set(_RANGES))
        if unknown:
            raise InputError(
                f"Physiology: unknown field(s) {unknown}; expected a subset of {sorted(_RANGES)}"
            )
        return cls(**data)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays (duck-typed, so this module does not need numpy), paths, tuples.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _normalise_json(name: str, value: Any) -> Any:
    """Return ``value`` as JSON-native data (tuples → lists, numpy → Python), or raise."""
    try:
        text = json.dumps(value, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"PatientTwin.{name} must be JSON-serialisable without NaN/inf ({exc}); "
            "convert arrays with .tolist() and replace NaN with None"
        ) from None
    return json.loads(text)


def _find_identifying_key(value: Any, path: str) -> str | None:
    return find_identifying_key(value, path)


_JSON_FIELDS = ("anatomy", "mesh", "parameters", "results", "history", "provenance")


@dataclass(kw_only=True)
class PatientTwin:
    """The versioned state of one pseudonymised patient's digital twin.

    All container fields hold JSON-native data: on assignment tuples become lists and numpy
    values become Python numbers, so that a twin equals itself after a store round trip.
    Keys that would carry a direct identifier (``patient_name``, ``PatientID``, ``birth_date``...)
    are refused anywhere in the twin.

    Parameters
    ----------
    pseudonym : str
        The keyed pseudonym of the patient (never the name or hospital ID); 1–64 characters from
        ``[A-Za-z0-9._-]``.
    physiology : Physiology
        Current haemodynamic state.
    version : int
        Stored version this state corresponds to; 0 for a twin that was never saved. Set by the
        store on save.
    anatomy : dict
        Anatomical measurements, e.g. ``{"landmarks": AorticRootLandmarks.to_dict(),
        "volumes_ml": {...}}``. Lengths in mm.
    mesh : dict or None
        The fluid mesh: ``FluidDomain.to_dict()`` plus ``"artifact_sha256"`` of the stored mesh
        file.
    parameters : dict
        Model parameters fitted to the patient, keyed by model (e.g. ``"windkessel"`` → outlet
        name → R, C, R in SI; ``"reduced"`` → valve ΔP(Q) coefficients).
    results : list of dict
        Summaries of results computed on the twin, each with the store's result ``id``.
    history : list of dict
        One entry per saved version: ``version``, ``time_utc``, ``reason``, ``changed`` (list of
        the fields that changed). Appended by the store.
    provenance : dict
        How the twin was built (inputs' hashes, parameters, code version).

    Raises
    ------
    InputError
        On an invalid pseudonym, version, physiology type, non-JSON data or an identifying key.
    """

    pseudonym: str
    physiology: Physiology
    version: int = 0
    anatomy: dict[str, Any] = field(default_factory=dict)
    mesh: dict[str, Any] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "pseudonym":
            if not isinstance(value, str) or not PSEUDONYM_PATTERN.fullmatch(value):
                raise InputError(
                    "PatientTwin.pseudonym must be 1-64 characters from [A-Za-z0-9._-] starting "
                    "with a letter or digit (the value is not repeated here in case it is an identifier); "
                    "use the pseudonym from "
                    "cardiotwin.imaging.deid, never a name or hospital ID"
                )
        elif name == "version":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"PatientTwin.version must be an integer >= 0, got {value!r}")
        elif name == "physiology":
            if not isinstance(value, Physiology):
                raise InputError(
                    "PatientTwin.physiology must be a Physiology, got "
                    f"{type(value).__name__}; build it with Physiology(...) or Physiology.from_dict"
                )
        elif name in _JSON_FIELDS:
            if name == "mesh" and value is None:
                pass
            else:
                is_list = name in ("results", "history")
                if not isinstance(value, (list, tuple) if is_list else dict):
                    raise InputError(
                        f"PatientTwin.{name} must be a {'list' if is_list else 'dict'}, "
                        f"got {type(value).__name__}"
                    )
                value = _normalise_json(name, value)
                bad = _find_identifying_key(value, name)
                if bad:
                    raise InputError(
                        f"PatientTwin.{bad}: the twin must not hold direct identifiers "
                        "(name, ID, birth date); keep only the pseudonym"
                    )
        super().__setattr__(name, value)

    @property
    def landmarks(self):
        """The aortic-root measurements of the twin
        (:class:`~cardiotwin.geometry.landmarks.AorticRootLandmarks`).

        Raises
        ------
        InputError
            The twin has no landmarks (built without anatomy); rebuild it from its DICOM.
        """
        from cardiotwin.geometry.landmarks import AorticRootLandmarks

        data = self.anatomy.get("landmarks")
        if not data:
            raise InputError(f"twin {self.pseudonym} has no aortic-root landmarks; rebuild it "
                             "with `cardiotwin twin build`")
        return AorticRootLandmarks.from_dict(data)

    @property
    def quality_gate(self):
        """The anatomy quality gate the twin passed when it was built
        (:class:`~cardiotwin.geometry.anatomy_gate.GateResult`), or None for twins built before
        the gate existed."""
        from cardiotwin.geometry.anatomy_gate import GateResult

        data = self.anatomy.get("quality_gate")
        return None if not data else GateResult.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (a deep copy), inverse of :meth:`from_dict`."""
        return {
            "format_version": FORMAT_VERSION,
            "pseudonym": self.pseudonym,
            "version": self.version,
            "physiology": self.physiology.to_dict(),
            **{name: _normalise_json(name, getattr(self, name)) for name in _JSON_FIELDS},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatientTwin:
        """Build a twin from :meth:`to_dict` output.

        Raises
        ------
        InputError
            If the layout version is newer than this code understands, a key is unknown or a
            value is invalid.
        """
        data = dict(data)
        fmt = data.pop("format_version", FORMAT_VERSION)
        if fmt != FORMAT_VERSION:
            raise InputError(
                f"PatientTwin format_version {fmt!r} is not supported (this code reads "
                f"{FORMAT_VERSION}); upgrade cardiotwin"
            )
        known = {"pseudonym", "version", "physiology", *_JSON_FIELDS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"PatientTwin: unknown field(s) {unknown}; expected {sorted(known)}")
        missing = sorted({"pseudonym", "physiology"} - set(data))
        if missing:
            raise InputError(f"PatientTwin: missing required field(s) {missing}")
        physiology = data.pop("physiology")
        if isinstance(physiology, dict):
            physiology = Physiology.from_dict(physiology)
        return cls(physiology=physiology, **data)

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict` (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> PatientTwin:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"PatientTwin JSON is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InputError("PatientTwin JSON must be an object")
        return cls.from_dict(data)
