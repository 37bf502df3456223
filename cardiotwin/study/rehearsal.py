"""A device rehearsal on a twin: the placement, the native-valve and device runs, the comparison.

The study decides *what* is run; :func:`cardiotwin.workflows.rehearse` authorises, audits, finds
a stored native-valve run to reuse and stores what :func:`rehearse_device` returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cardiotwin import units
from cardiotwin.devices.catalog import Catalog, load_catalog
from cardiotwin.devices.placement import DevicePlacement, device_region, place_device
from cardiotwin.devices.sizing import SizingReport, size_device_family
from cardiotwin.errors import InputError
from cardiotwin.geometry.landmarks import AorticRootLandmarks
from cardiotwin.geometry.volume_mesh import FluidDomain
from cardiotwin.physics.brinkman import BrinkmanRegion, native_valve_region
from cardiotwin.study.cycle import CycleSettings, run_cycle
from cardiotwin.study.progress import Progress, no_progress
from cardiotwin.study.results import FlowRun, RehearsalComparison, Summary
from cardiotwin.study.steady import run_flow
from cardiotwin.twin.state import Physiology

__all__ = [
    "DEFAULT_FAMILY", "DevicePlan", "RehearsalRuns", "default_physiology", "native_region",
    "plan_device", "rehearse_device", "size_family",
]

log = logging.getLogger(__name__)

DEFAULT_FAMILY = "balloon_expandable_thv"
"""The device family of the demo and of sizing at build time."""


def default_physiology() -> Physiology:
    """A resting adult with severe aortic stenosis (used when no vitals are given)."""
    return Physiology(heart_rate_bpm=70.0, stroke_volume_ml=70.0, systolic_bp_mmhg=130.0,
                      diastolic_bp_mmhg=75.0)


def native_region(landmarks: AorticRootLandmarks) -> BrinkmanRegion:
    """The stenotic native valve of the twin as a Brinkman plate at its measured orifice."""
    return native_valve_region(
        orifice_centre_mm=landmarks.valve_orifice_centre_mm,
        axis=landmarks.annulus_normal,
        orifice_area_mm2=landmarks.valve_orifice_area_mm2,
        outer_radius_mm=1.6 * max(landmarks.annulus_max_diameter_mm, landmarks.sinus_diameter_mm) / 2,
    )


def size_family(landmarks: AorticRootLandmarks | None, family: str = DEFAULT_FAMILY, *,
                catalog: Catalog | None = None, diameter_mm: float | None = None,
                coronary_ostia_height_mm: dict[str, float] | None = None) -> SizingReport:
    """Every size of a catalog family against the twin's annulus (valves) or a user-supplied
    diameter (stents and occluders: ``diameter_mm``); see
    :func:`cardiotwin.devices.sizing.size_device_family`."""
    fam = (catalog or load_catalog()).family(family)
    return size_device_family(fam, family_key=family, landmarks=landmarks, diameter_mm=diameter_mm,
                              coronary_ostia_height_mm=coronary_ostia_height_mm)


@dataclass(frozen=True)
class DevicePlan:
    """A placement to rehearse: the sizing of its family, the placement and its flow region."""

    sizing: SizingReport
    placement: DevicePlacement
    region: BrinkmanRegion

    @property
    def tag(self) -> str:
        """A file-system-safe name of the placement (family, size, depth, tilt, rotation)."""
        p = self.placement
        return (f"{p.family}_{p.nominal_diameter_mm:g}mm_d{p.depth_mm:g}_t{p.tilt_deg:g}"
                f"_r{p.rotation_deg:g}")


def plan_device(landmarks: AorticRootLandmarks, *, family: str = DEFAULT_FAMILY,
                nominal_diameter_mm: float | None = None, depth_mm: float | None = None,
                tilt_deg: float = 0.0, rotation_deg: float = 0.0) -> DevicePlan:
    """Size a family on the annulus and place one size (the recommended one by default).

    Raises
    ------
    InputError
        No size of the family fits the annulus and none was chosen.
    DeviceError
        A pose out of range (:func:`~cardiotwin.devices.placement.place_device`).
    """
    sizing = size_family(landmarks, family)
    size = nominal_diameter_mm if nominal_diameter_mm is not None else sizing.recommended_mm
    if size is None:
        raise InputError("no size of this family fits the annulus; choose a size explicitly "
                         f"({', '.join(f'{s.nominal_diameter_mm:g}' for s in sizing.sizes)} mm)")
    placement = place_device(landmarks, family=family, nominal_diameter_mm=size, depth_mm=depth_mm,
                             tilt_deg=tilt_deg, rotation_deg=rotation_deg)
    return DevicePlan(sizing, placement, device_region(placement, landmarks))


@dataclass(frozen=True)
class RehearsalRuns:
    """What :func:`rehearse_device` ran: the comparison, the device run, and the native-valve run
    when it was solved here (None when a stored one was reused)."""

    comparison: RehearsalComparison
    device_run: FlowRun
    baseline_run: FlowRun | None


def rehearse_device(domain: FluidDomain, landmarks: AorticRootLandmarks, physiology: Physiology,
                    plan: DevicePlan, *, pseudonym: str, work_dir: Callable[[str], Path],
                    baseline: Summary | None = None, cycle: CycleSettings | None = None,
                    cycle_key: dict[str, Any] | None = None,
                    progress: Progress = no_progress) -> RehearsalRuns:
    """Run the native valve (unless ``baseline`` is given) and the planned device, and compare.

    ``cycle=None`` compares steady flow at mean systolic flow (:func:`run_flow`); a
    :class:`CycleSettings` compares pulsatile cycles (:func:`run_cycle`), and ``cycle_key``
    is recorded in both cycle summaries so a stored native-valve cycle can be recognised and
    reused. ``work_dir(name)`` gives the folder of a run's files.
    """
    tag = plan.tag + ("_cycle" if cycle is not None else "")
    size = plan.placement.nominal_diameter_mm
    baseline_run = None
    if cycle is not None:
        if baseline is None:
            progress(0.0, "pulsatile cycle with the native valve")
            baseline_run = run_cycle(domain, landmarks, physiology, native_region(landmarks),
                                     label="baseline", out_dir=work_dir("baseline_cycle"),
                                     settings=cycle,
                                     progress=lambda f, m: progress(0.48 * f, f"native valve: {m}"))
            baseline_run = replace(baseline_run,
                                   summary=replace(baseline_run.summary, reuse_key=cycle_key))
            baseline = baseline_run.summary
        else:
            log.info("%s: reusing the stored native-valve cycle", pseudonym)
        progress(0.5, f"pulsatile cycle with the {size:g} mm valve")
        run = run_cycle(domain, landmarks, physiology, plan.region, label=tag,
                        out_dir=work_dir(tag), settings=cycle,
                        progress=lambda f, m: progress(0.5 + 0.48 * f, f"device: {m}"))
        after = replace(run.summary, reuse_key=cycle_key)
    else:
        if baseline is None:
            progress(0.0, "solving baseline flow (native valve)")
            baseline = run_flow(domain, landmarks, physiology, native_region(landmarks),
                                label="baseline", out_dir=work_dir("baseline"),
                                progress=lambda f, m: progress(0.45 * f, m)).summary
        progress(0.5, f"solving flow with the {size:g} mm valve")
        run = run_flow(domain, landmarks, physiology, plan.region, label=tag,
                       out_dir=work_dir(tag), progress=lambda f, m: progress(0.5 + 0.48 * f, m))
        from cardiotwin.physics.metrics import bernoulli_gradient_mmhg

        after = replace(run.summary, bernoulli_gradient_mmhg=bernoulli_gradient_mmhg(
            units.ml_to_m3(run.summary.inflow_ml_s),
            units.cm2_to_m2(units.mm2_to_cm2(plan.placement.orifice_area_mm2))))
    after = replace(after, orifice_area_cm2=units.mm2_to_cm2(plan.placement.orifice_area_mm2))
    run = replace(run, summary=after)
    comparison = RehearsalComparison(pseudonym, plan.placement.to_dict(),
                                     plan.sizing.assessment(size), baseline, after, run.files)
    return RehearsalRuns(comparison, run, baseline_run)
