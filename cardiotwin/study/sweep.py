"""A sweep of device sizes on one twin: the native valve once, then every size, compared.

For each size the study places the device (:func:`~cardiotwin.study.rehearsal.plan_device`) and
runs steady flow at mean systolic flow with it (:func:`~cardiotwin.study.rehearsal.rehearse_device`),
against one native-valve run. The result, :class:`SizeSweep`, holds per size the gradients, the
effective orifice area by continuity and by Gorlin, the outlet flows and the before/after
comparison; :meth:`SizeSweep.table` prints it.

The study never touches the store: :mod:`cardiotwin.workflows` authorises, audits and stores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardiotwin.errors import InputError
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.study.progress import Progress, no_progress
from cardiotwin.study.rehearsal import (
    DEFAULT_FAMILY,
    native_region,
    plan_device,
    rehearse_device,
    size_family,
)
from cardiotwin.study.results import ComparisonRow, FlowSummary, RehearsalComparison
from cardiotwin.study.steady import run_flow
from cardiotwin.twin.state import Physiology

__all__ = ["SizeSweep", "SweepPoint", "size_sweep"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPoint:
    """One size of a sweep: its before/after comparison with the native valve.

    The figures are those of the run with the device (``comparison.after``), a steady
    :class:`~cardiotwin.study.results.FlowSummary`: gradients in mmHg, areas in cm², speed in m/s,
    flows in L/min.
    """

    comparison: RehearsalComparison

    @property
    def nominal_diameter_mm(self) -> float:
        return self.comparison.nominal_diameter_mm

    @property
    def after(self) -> FlowSummary:
        return self.comparison.after  # type: ignore[return-value]  (a sweep is steady)

    @property
    def area_oversizing_pct(self) -> float | None:
        s = self.comparison.sizing
        return None if s is None else float(s.area_oversizing_pct)

    @property
    def in_chart_range(self) -> bool:
        """True when the annulus lies in this size's chart range (the sizing's recommendation)."""
        s = self.comparison.sizing
        return bool(s is not None and s.in_chart_range)

    @property
    def warnings(self) -> tuple[str, ...]:
        """The sizing warnings of this size (under- or over-sizing, outside the chart)."""
        return self.comparison.sizing_warnings

    def rows(self) -> list[ComparisonRow]:
        """The before/after table of this size against the native valve."""
        return self.comparison.rows()


@dataclass(frozen=True)
class SizeSweep:
    """Native valve and every swept size of a family on one twin (steady flow, mean systolic flow).

    Attributes
    ----------
    family : catalog key of the family.
    depth_mm : implantation depth asked for (None = each size at the family's nominal depth).
    annulus_area_mm2 : the twin's annulus area the sizes were assessed on.
    baseline : the native-valve run (the "before" of every comparison).
    points : one :class:`SweepPoint` per size, smallest first.
    """

    family: str
    depth_mm: float | None
    annulus_area_mm2: float
    baseline: FlowSummary
    points: tuple[SweepPoint, ...]

    @property
    def sizes_mm(self) -> tuple[float, ...]:
        return tuple(p.nominal_diameter_mm for p in self.points)

    def point(self, nominal_diameter_mm: float) -> SweepPoint:
        """The point of one size; :class:`InputError` naming the swept sizes if absent."""
        for p in self.points:
            if abs(p.nominal_diameter_mm - nominal_diameter_mm) < 1e-6:
                return p
        raise InputError(f"size {nominal_diameter_mm:g} mm was not swept; swept sizes: "
                         f"{', '.join(f'{s:g}' for s in self.sizes_mm)} mm")

    def table(self) -> str:
        """The sweep as a fixed-width text table: the native valve, then each size.

        Columns: area oversizing (%), geometric orifice (cm²), vena-contracta (peak) and net
        gradient (mmHg), peak jet and LVOT velocity (m/s), the simplified Bernoulli 4v² and the
        expanded 4(v² − v_LVOT²) (mmHg), EOA by continuity and by Gorlin (cm²), inflow (mL/s)
        and the flow of every outlet (L/min).
        """
        outlets = list(self.baseline.outlet_flows_l_min)
        head = ["valve", "oversize %", "orifice cm²", "ΔP peak", "ΔP net", "v jet m/s",
                "v LVOT m/s", "4v²", "4(v²−v_LVOT²)", "EOA cont", "EOA Gorlin", "Q mL/s"]
        head += [name.removeprefix("outlet:") for name in outlets]
        lines = [self._row("native", None, self.baseline, outlets)]
        for p in self.points:
            lines.append(self._row(f"{p.nominal_diameter_mm:g} mm", p.area_oversizing_pct,
                                   p.after, outlets))
        widths = [max(len(h), *(len(r[k]) for r in lines)) for k, h in enumerate(head)]
        fmt = "  ".join(f"{{:>{w}}}" for w in widths)
        out = [f"{self.family}: annulus {self.annulus_area_mm2:.0f} mm², steady flow at mean "
               "systolic flow (gradients mmHg, flows L/min)",
               fmt.format(*head)]
        out += [fmt.format(*r) for r in lines]
        return "\n".join(out)

    @staticmethod
    def _row(name: str, oversize: float | None, s: FlowSummary, outlets: list[str]) -> list[str]:
        def f(v: float | None, spec: str) -> str:
            return "—" if v is None else format(v, spec)

        v, v0 = s.peak_jet_velocity_m_s, s.lvot_velocity_m_s
        return [name, f(oversize, "+.1f"), f(s.orifice_area_cm2, ".2f"),
                f(s.peak_gradient_mmhg, ".2f"), f(s.net_gradient_mmhg, ".2f"), f(v, ".2f"),
                f(v0, ".2f"), f(None if v is None else 4.0 * v * v, ".2f"),
                f(None if v is None or v0 is None else 4.0 * (v * v - v0 * v0), ".2f"),
                f(s.eoa_continuity_cm2, ".2f"), f(s.eoa_gorlin_cm2, ".2f"),
                f(s.inflow_ml_s, ".1f")] + [
            f(s.outlet_flows_l_min.get(k), ".3f") for k in outlets]

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form: the baseline once and each size's comparison."""
        return {"family": self.family, "depth_mm": self.depth_mm,
                "annulus_area_mm2": self.annulus_area_mm2, "baseline": self.baseline.to_dict(),
                "points": [p.comparison.to_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, pseudonym: str = "") -> SizeSweep:
        """Inverse of :meth:`to_dict`."""
        points = tuple(SweepPoint(RehearsalComparison.from_stored(pseudonym, p))
                       for p in data["points"])
        return cls(data["family"], data.get("depth_mm"), float(data["annulus_area_mm2"]),
                   FlowSummary.from_dict(data["baseline"]), points)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def size_sweep(domain: FluidDomain, landmarks: AorticRootLandmarks, physiology: Physiology, *,
               family: str = DEFAULT_FAMILY, sizes: Sequence[float] | None = None,
               depth_mm: float | None = None, work_dir: Callable[[str], Path],
               baseline: FlowSummary | None = None, pseudonym: str = "",
               progress: Progress = no_progress) -> SizeSweep:
    """Run the native valve once and every size of a family, each in steady flow.

    Parameters
    ----------
    domain, landmarks, physiology : the twin's mesh (mm), measured aortic root and vitals.
    family : catalog key of the device family.
    sizes : nominal diameters to sweep (mm); every size of the family when None. Sizes whose
        annulus oversizing the sizing warns about are run too; their warnings travel with
        each point (:attr:`SweepPoint.warnings`).
    depth_mm : implantation depth below the annulus (mm); the family's nominal depth when None.
    work_dir : ``work_dir(name)`` gives the folder of a run's files.
    baseline : a stored native-valve steady run to reuse instead of solving it again.
    pseudonym : recorded in each comparison.

    Raises
    ------
    InputError
        No sizes, or a pulsatile ``baseline`` (a sweep is steady).
    DeviceError
        A size not in the catalog or a depth out of range; raised before any flow is solved.
    """
    if sizes is None:
        sizes = [s.nominal_diameter_mm for s in size_family(landmarks, family).sizes]
    sizes = sorted({float(s) for s in sizes})
    if not sizes:
        raise InputError("size_sweep needs at least one size (mm); give sizes=None for the "
                         "whole family")
    if baseline is not None and not isinstance(baseline, FlowSummary):
        raise InputError("size_sweep runs steady flow; give a steady native-valve baseline "
                         "(FlowSummary), not a pulsatile cycle")
    plans = [plan_device(landmarks, family=family, nominal_diameter_mm=s, depth_mm=depth_mm)
             for s in sizes]
    n_runs = len(plans) + (baseline is None)
    done = 0
    if baseline is None:
        progress(0.0, "solving baseline flow (native valve)")
        baseline = run_flow(domain, landmarks, physiology, native_region(landmarks),
                            label="baseline", out_dir=work_dir("baseline"),
                            progress=lambda f, m: progress(f / n_runs, f"native valve: {m}")).summary
        done = 1
    else:
        log.info("size sweep: reusing the stored native-valve run")
    points = []
    for k, plan in enumerate(plans):
        lo = (done + k) / n_runs
        size = plan.placement.nominal_diameter_mm
        progress(lo, f"solving flow with the {size:g} mm valve")
        runs = rehearse_device(domain, landmarks, physiology, plan, pseudonym=pseudonym,
                               work_dir=work_dir, baseline=baseline,
                               progress=lambda f, m, lo=lo: progress(lo + f / n_runs, m))
        points.append(SweepPoint(runs.comparison))
        after = runs.comparison.after
        log.info("size sweep %s %g mm: peak gradient %.2f mmHg, EOA %.2f cm² (continuity)",
                 family, size, _or_nan(after.peak_gradient_mmhg),
                 _or_nan(getattr(after, "eoa_continuity_cm2", None)))
    progress(1.0, "size sweep done")
    return SizeSweep(family, depth_mm, float(landmarks.annulus_area_mm2), baseline, tuple(points))
