"""What a user sees of a haemodynamic study: frozen, typed results with units in their names.

One home for the results of a steady run (:class:`FlowSummary`), a pulsatile cycle
(:class:`CycleSummary`) and a device rehearsal (:class:`RehearsalComparison`, its rows
:class:`ComparisonRow`), and for their serialisation to and from the store (``to_dict`` /
``from_dict``, :func:`summary_from_dict`). The CLI, the HTML report and the app import these
types; none of them reads a result by string key or converts its units.

The stored form is the JSON dict the store has always held (stage-1 stores open unchanged): a
steady summary has no ``mode`` key, a cycle summary has ``mode = "pulsatile"``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cardiotwin import units
from cardiotwin.errors import InputError

__all__ = [
    "ComparisonRow", "ConvergenceNote", "CycleSummary", "FlowRun", "FlowSummary",
    "RehearsalComparison", "Summary", "summary_from_dict",
]


def _freeze(value: Any) -> Any:
    """Lists → tuples (recursively) so that a result built in memory equals its stored copy."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _thaw(value: Any) -> Any:
    """Tuples → lists for JSON (the stored form)."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


class _Record:
    """Shared (de)serialisation of the result dataclasses.

    ``_KEYS`` maps a field to its stored key where the two differ; ``_REQUIRED`` names the
    fields a stored dict must have.
    """

    _KEYS: ClassVar[dict[str, str]] = {}
    _REQUIRED: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _freeze(getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[self._KEYS.get(f.name, f.name)] = _thaw(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Inverse of :meth:`to_dict`; keys of later versions are ignored, a missing required
        key is refused with :class:`~cardiotwin.errors.InputError`."""
        if not isinstance(data, Mapping):
            raise InputError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = cls._KEYS.get(f.name, f.name)
            if key in data:
                kwargs[f.name] = data[key]
            elif f.name in cls._REQUIRED:
                raise InputError(f"{cls.__name__}: the stored result has no {key!r}; it was "
                                 "written by another program or is damaged")
        return cls(**kwargs)


@dataclass(frozen=True)
class ConvergenceNote:
    """How far to trust a steady run's numbers: ``level`` is ``"warning"`` or ``"error"``."""

    level: str
    text: str


@dataclass(frozen=True)
class FlowSummary(_Record):
    """One steady flow run at mean systolic flow (:func:`cardiotwin.study.run_flow`).

    Pressures in mmHg, flows in L/min and mL/s, wall shear stress in Pa, areas in cm²;
    ``mass_imbalance`` is (Σ outlet flows − inflow) / inflow (a fraction); ``status`` is
    ``"converged"``, ``"settled"`` (integral quantities stopped changing while a jet still
    fluctuates) or ``"max_iterations"``.

    ``peak_gradient_mmhg`` runs from 10 mm below the annulus to the lowest section pressure
    downstream (the vena contracta: what a Doppler gradient measures; at mean systolic flow the
    steady stand-in for the clinical mean gradient), ``net_gradient_mmhg`` to 40 mm downstream
    (after pressure recovery). The effective orifice area comes two ways:
    ``eoa_continuity_cm2`` = Q / ``peak_jet_velocity_m_s`` (the continuity equation with the
    computed jet speed, the steady form of stroke volume / jet VTI) and ``eoa_gorlin_cm2`` =
    Q / (44.3 √``peak_gradient_mmhg``) (Gorlin R, Gorlin SG. Am Heart J 1951;41:1–29).
    ``lvot_velocity_m_s`` is the largest speed in the upstream section (10 mm below the annulus),
    the proximal velocity of the expanded Bernoulli relation ΔP = 4(v_jet² − v_LVOT²).
    These four are absent (None) in runs stored before they were computed.
    """

    _REQUIRED: ClassVar[tuple[str, ...]] = ("label",)

    label: str
    peak_gradient_mmhg: float | None = None
    net_gradient_mmhg: float | None = None
    inflow_l_min: float | None = None
    inflow_ml_s: float | None = None
    outlet_flows_l_min: Mapping[str, float] = field(default_factory=dict)
    flow_split: Mapping[str, float] = field(default_factory=dict)
    mass_imbalance: float | None = None
    wss_mean_pa: float | None = None
    wss_max_pa: float | None = None
    wss_p99_pa: float | None = None
    pressure_profile_mm: tuple[float, ...] = ()
    pressure_profile_mmhg: tuple[float, ...] = ()
    converged: bool = True
    iterations: int = 0
    status: str = ""
    status_reason: str = ""
    bernoulli_gradient_mmhg: float | None = None
    n_dofs: int = 0
    solve_time_s: float = 0.0
    calibration: Mapping[str, Any] = field(default_factory=dict)
    orifice_area_cm2: float | None = field(default=None, metadata={"omit_none": True})
    peak_jet_velocity_m_s: float | None = field(default=None, metadata={"omit_none": True})
    lvot_velocity_m_s: float | None = field(default=None, metadata={"omit_none": True})
    eoa_continuity_cm2: float | None = field(default=None, metadata={"omit_none": True})
    eoa_gorlin_cm2: float | None = field(default=None, metadata={"omit_none": True})

    mode: ClassVar[str] = "steady"

    @classmethod
    def baseline_of(cls, twin: Any) -> FlowSummary | None:
        """The native-valve (``baseline``) run stored with a
        :class:`~cardiotwin.twin.state.PatientTwin`, or None."""
        stored = next((r for r in twin.results if r.get("label") == "baseline"), None)
        return None if stored is None else cls.from_dict(stored["summary"])

    @property
    def mass_imbalance_pct(self) -> float | None:
        """``mass_imbalance`` in per cent."""
        return None if self.mass_imbalance is None else 100.0 * self.mass_imbalance

    @property
    def effective_status(self) -> str:
        """``status``, or for summaries that carry only ``converged``: converged / not converged."""
        return self.status or ("converged" if self.converged else "not converged")

    def convergence(self) -> ConvergenceNote | None:
        """None when the steady solve converged; otherwise how far its numbers can be used."""
        status = self.effective_status
        if status == "converged":
            return None
        if status == "settled":
            return ConvergenceNote(
                "warning", "No strict steady state at this flow; the outlet flows and pressures "
                           f"settled, so the numbers are usable with care. {self.status_reason}".strip())
        return ConvergenceNote(
            "error", f"The flow solve did not converge ({status}, {self.iterations} iterations); "
                     f"do not use these numbers. {self.status_reason}".strip())


@dataclass(frozen=True)
class CycleSummary(_Record):
    """One pulsatile run over (part of) a cardiac cycle (:func:`cardiotwin.study.run_cycle`).

    Gradients and pressures in mmHg over the last simulated cycle, EOA in cm², velocities in
    m/s, flows in L/min (outlets) and mL/s (inflow peak), TAWSS in Pa, OSI dimensionless, times
    in ms and s as named. ``valve_leak_fraction`` is the largest flow through the solid part of
    a Brinkman valve region as a fraction of the inflow; ``warnings`` say what limits the
    result. ``reuse_key`` (stored as ``key``) identifies the inputs of a stored native-valve
    cycle that later rehearsals may reuse.
    """

    _KEYS: ClassVar[dict[str, str]] = {"reuse_key": "key"}
    _REQUIRED: ClassVar[tuple[str, ...]] = ("label",)

    label: str
    mode: str = "pulsatile"
    mean_gradient_mmhg: float | None = None
    peak_gradient_mmhg: float | None = None
    eoa_gorlin_cm2: float | None = None
    eoa_continuity_cm2: float | None = None
    peak_jet_velocity_m_s: float | None = None
    aortic_systolic_mmhg: float | None = None
    aortic_diastolic_mmhg: float | None = None
    aortic_mean_mmhg: float | None = None
    lvot_systolic_mmhg: float | None = None
    stroke_volume_ml: float | None = None
    inflow_peak_ml_s: float | None = None
    outlet_flows_l_min: Mapping[str, float] = field(default_factory=dict)
    flow_split: Mapping[str, float] = field(default_factory=dict)
    tawss_mean_pa: float | None = None
    tawss_max_pa: float | None = None
    osi_mean: float | None = None
    osi_max: float | None = None
    mass_imbalance_max: float | None = None
    cfl_max: float | None = None
    n_steps: int = 0
    dt_ms: float = 0.0
    simulated_ms: float = 0.0
    period_ms: float = 0.0
    whole_cycle: bool = False
    n_dofs: int = 0
    solve_time_s: float = 0.0
    fields_dir: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    resumed_from_step: int = 0
    calibration: Mapping[str, Any] = field(default_factory=dict)
    orifice_area_cm2: float | None = field(default=None, metadata={"omit_none": True})
    valve_leak_fraction: float | None = None
    warnings: tuple[str, ...] = ()
    reuse_key: Mapping[str, Any] | None = field(default=None, metadata={"omit_none": True})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode != "pulsatile":
            raise InputError(f"CycleSummary.mode must be 'pulsatile'; got {self.mode!r}")

    # The fitted Windkessels, in the units a clinician reads them in.
    @property
    def target_pressure_mmhg(self) -> tuple[float, float] | None:
        """(systolic, diastolic) blood pressure the outlets were fitted to."""
        t = self.calibration.get("target_mmhg")
        return None if not t else (float(t["systolic"]), float(t["diastolic"]))

    @property
    def total_resistance_mmhg_s_ml(self) -> float | None:
        """Total (proximal + distal) resistance of all outlets in parallel."""
        tot = self.calibration.get("total")
        return None if not tot else units.pa_s_m3_to_mmhg_s_ml(tot["Rp"] + tot["Rd"])

    @property
    def total_compliance_ml_mmhg(self) -> float | None:
        """Total compliance of the outlets."""
        tot = self.calibration.get("total")
        return None if not tot else units.m3_to_ml(tot["C"] * units.mmhg_to_pa(1.0))

    @property
    def proximal_fraction(self) -> float | None:
        """Share of the total resistance that is proximal (R_p / (R_p + R_d))."""
        return self.calibration.get("proximal_fraction")

    @property
    def distal_time_constant_s(self) -> float | None:
        """R_d·C of the outlets in parallel."""
        tot = self.calibration.get("total")
        return None if not tot else tot["tau_s"]

    @property
    def solve_time_min(self) -> float:
        return self.solve_time_s / 60.0


Summary = FlowSummary | CycleSummary


def summary_from_dict(data: Mapping[str, Any]) -> Summary:
    """A stored run summary as its type: a :class:`CycleSummary` when ``mode`` is
    ``"pulsatile"``, else a :class:`FlowSummary`."""
    if isinstance(data, Mapping) and data.get("mode") == "pulsatile":
        return CycleSummary.from_dict(data)
    return FlowSummary.from_dict(data)


@dataclass(frozen=True)
class FlowRun:
    """One flow run of a study: its typed summary, the Brinkman region it ran with (stored
    form), its result files (name → path) and its provenance record."""

    summary: Summary
    region: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.summary.label


@dataclass(frozen=True)
class ComparisonRow:
    """One line of a before/after table: a metric, its two values and their unit."""

    metric: str
    before: float | None
    after: float | None
    unit: str

    @property
    def change(self) -> float | None:
        """after − before, or None when either is missing."""
        if self.before is None or self.after is None:
            return None
        return float(self.after) - float(self.before)


_STEADY_ROWS = (
    ("Peak transvalvular gradient", "peak_gradient_mmhg", "mmHg"),
    ("Net pressure loss", "net_gradient_mmhg", "mmHg"),
    ("Simplified Bernoulli 4v² at the orifice (check)", "bernoulli_gradient_mmhg", "mmHg"),
    ("Valve orifice area", "orifice_area_cm2", "cm²"),
    ("EOA, continuity (Q / peak jet velocity)", "eoa_continuity_cm2", "cm²"),
    ("EOA, Gorlin", "eoa_gorlin_cm2", "cm²"),
    ("Peak jet velocity", "peak_jet_velocity_m_s", "m/s"),
    ("Mean systolic flow (SV / ejection time)", "inflow_ml_s", "mL/s"),
    ("Mean wall shear stress", "wss_mean_pa", "Pa"),
    ("Max wall shear stress", "wss_max_pa", "Pa"),
)
_CYCLE_ROWS = (
    ("Mean transvalvular gradient (forward flow)", "mean_gradient_mmhg", "mmHg"),
    ("Peak transvalvular gradient", "peak_gradient_mmhg", "mmHg"),
    ("EOA, Gorlin", "eoa_gorlin_cm2", "cm²"),
    ("EOA, continuity", "eoa_continuity_cm2", "cm²"),
    ("Valve orifice area (geometric)", "orifice_area_cm2", "cm²"),
    ("Peak jet velocity", "peak_jet_velocity_m_s", "m/s"),
    ("Aortic systolic pressure", "aortic_systolic_mmhg", "mmHg"),
    ("Aortic diastolic pressure", "aortic_diastolic_mmhg", "mmHg"),
    ("LV outflow (inlet) systolic pressure", "lvot_systolic_mmhg", "mmHg"),
    ("Stroke volume (simulated)", "stroke_volume_ml", "mL"),
    ("Time-averaged WSS, mean", "tawss_mean_pa", "Pa"),
    ("Oscillatory shear index, mean", "osi_mean", ""),
    ("Flow through the valve's solid part (leak check)", "valve_leak_fraction", "of Q"),
)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class RehearsalComparison:
    """Before/after comparison of one device placement on a twin.

    ``placement`` is the stored form of the :class:`~cardiotwin.devices.placement.DevicePlacement`
    (``nominal_diameter_mm``, ``depth_mm``, ``tilt_deg``, ...), ``sizing`` the
    :class:`~cardiotwin.devices.sizing.SizeAssessment` of the chosen size, ``before`` the
    native-valve run and ``after`` the run with the device (both steady or both pulsatile).
    """

    pseudonym: str
    placement: Mapping[str, Any]
    sizing: Any  # SizeAssessment (devices.sizing); typed loosely to keep this module low
    before: Summary
    after: Summary
    files: Mapping[str, str] = field(default_factory=dict)
    result_id: int | None = None

    @property
    def pulsatile(self) -> bool:
        """True when both runs are whole-cycle (pulsatile) runs."""
        return isinstance(self.after, CycleSummary)

    @property
    def nominal_diameter_mm(self) -> float:
        return float(self.placement["nominal_diameter_mm"])

    @property
    def depth_mm(self) -> float:
        return float(self.placement["depth_mm"])

    @property
    def tilt_deg(self) -> float:
        return float(self.placement.get("tilt_deg", 0.0))

    @property
    def sizing_warnings(self) -> tuple[str, ...]:
        return tuple(self.sizing.warnings) if self.sizing is not None else ()

    @property
    def warnings(self) -> tuple[tuple[str, str], ...]:
        """(when, text) of the runs' own warnings (pulsatile runs carry them)."""
        out = []
        for when, run in (("before", self.before), ("after", self.after)):
            out += [(when, w) for w in getattr(run, "warnings", ())]
        return tuple(out)

    def rows(self) -> list[ComparisonRow]:
        """The before/after table: the run type's metrics, then the flow of every outlet."""
        spec, flow_label = (_CYCLE_ROWS, "Mean flow") if self.pulsatile else (_STEADY_ROWS, "Flow")
        out = [ComparisonRow(name, getattr(self.before, key, None), getattr(self.after, key, None),
                             unit) for name, key, unit in spec]
        for name, q in self.before.outlet_flows_l_min.items():
            out.append(ComparisonRow(f"{flow_label} {name.removeprefix('outlet:')}", q,
                                     self.after.outlet_flows_l_min.get(name), "L/min"))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The stored form of the ``rehearsal`` result (placement, sizing, before, after)."""
        return {"placement": dict(self.placement),
                "sizing": dataclasses.asdict(self.sizing) if self.sizing is not None else {},
                "before": self.before.to_dict(), "after": self.after.to_dict()}

    @classmethod
    def from_stored(cls, pseudonym: str, data: Mapping[str, Any], *, files=None,
                    result_id: int | None = None) -> RehearsalComparison:
        """A stored ``rehearsal`` result's summary (:meth:`to_dict`) as its type."""
        from cardiotwin.devices.sizing import SizeAssessment

        sizing = data.get("sizing") or None
        if sizing is not None:
            sizing = SizeAssessment(**{**sizing, "warnings": tuple(sizing.get("warnings", ()))})
        return cls(pseudonym, dict(data["placement"]), sizing,
                   summary_from_dict(data["before"]), summary_from_dict(data["after"]),
                   dict(files or {}), result_id)
