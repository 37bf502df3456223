"""Device–wall mechanics of a placed device, and the complications that follow from it.

The device's frame is an :class:`~cardiotwin.physics.contact.ExpandingFrame` (its free diameter,
its radial stiffness from the catalog) expanding inside a
:class:`~cardiotwin.geometry.wall_mesh.WallDomain` of the patient's root;
:func:`~cardiotwin.physics.contact.solve_frame_expansion` finds the equilibrium with frictionless
contact. :func:`run_mechanics` turns that into a :class:`DeviceMechanics` (final frame
diameters, radial force, contact pressure, wall stress and strain, a rupture-risk flag), and
:func:`assess_complications` into paravalvular leak, conduction-disturbance risk and coronary
obstruction (:mod:`cardiotwin.devices.complications`).

Frame geometry in the mechanics: the sealing part of the frame, from its inflow edge up to where
the outer radius first exceeds the inflow radius by 5 % (all of a balloon-expandable frame;
the skirt part of a self-expanding one, whose flared outflow sits in the ascending aorta),
clipped to the wall mesh's extent.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cardiotwin.devices.catalog import Catalog, load_catalog
from cardiotwin.devices.complications import (
    ConductionRisk,
    CoronaryObstruction,
    ParavalvularLeak,
    conduction_risk,
    coronary_obstruction,
    paravalvular_leak,
    polar_contour_mm,
    project_to_plane_mm,
)
from cardiotwin.devices.placement import DevicePlacement
from cardiotwin.devices.surfaces import frame_outer_profile
from cardiotwin.errors import DeviceError
from cardiotwin.geometry.wall_mesh import WallDomain
from cardiotwin.physics.contact import ExpandingFrame, FrameContactSolution, solve_frame_expansion
from cardiotwin.physics.solid import Material, default_wall_materials, load_wall, plane_basis

log = logging.getLogger(__name__)

__all__ = ["RUPTURE_STRESS_KPA", "RUPTURE_SOURCE", "DeviceComplications", "DeviceMechanics",
           "assess_complications", "frame_for", "run_mechanics"]

RUPTURE_STRESS_KPA = 750.0
"""Wall stress above which the rupture-risk flag is raised: the lowest median failure stress
reported for aortic tissue in uniaxial tests, the longitudinal direction of the ascending aorta
(750–1000 kPa; circumferential 2000–2750 kPa), porcine, ex vivo."""

RUPTURE_SOURCE = ("Failure stress of ascending-aortic tissue, longitudinal 750–1000 kPa "
                  "(Interact CardioVasc Thorac Surg 2016;23(1):104, porcine, uniaxial); the flag "
                  "uses the low end. Human aneurysmal or elderly tissue can be weaker (Sherifova & "
                  "Holzapfel, Acta Biomater 2019;99:1-17, review): a screening flag, not a "
                  "prediction.")

SEALING_FLARE = 1.05
"""The frame's sealing part ends where its outer radius exceeds the inflow radius by 5 %."""


def frame_for(placement: DevicePlacement, *, catalog: Catalog | None = None,
              z_limit_mm: float | None = None) -> ExpandingFrame:
    """The frame of a placed device as the mechanics sees it.

    ``z_limit_mm`` (from the frame's inflow edge) clips the frame to the part the wall mesh
    covers. The mode-2 (ovalisation) stiffness equals the radial (mode-0) stiffness: both come
    from bending of the strut cells in a frame of this kind (a modelling assumption, stated in
    ``docs/devices.md``), so the frame can become oval in an oval annulus.
    """
    cat = catalog or load_catalog()
    fam = cat.family(placement.family)
    size = fam.size(placement.nominal_diameter_mm)
    k0 = fam.radial_stiffness_of(size)
    prof = frame_outer_profile(placement.shape)
    r_in = float(prof[0, 0])
    z_end = float(prof[-1, 1])
    for (r0, z0), (r1, z1) in zip(prof[:-1], prof[1:], strict=True):
        if r1 > SEALING_FLARE * r_in:
            z_end = z0 + (SEALING_FLARE * r_in - r0) / (r1 - r0) * (z1 - z0)
            break
    if z_limit_mm is not None:
        z_end = min(z_end, z_limit_mm)
    if z_end <= 1.0:
        raise DeviceError(f"the {placement.family} frame lies outside the wall mesh (its sealing "
                          f"part ends {z_end:.1f} mm above its inflow edge): extend the wall "
                          "mesh or check the depth")
    return ExpandingFrame(axis_origin_mm=tuple(placement.inflow_centre_mm), axis=tuple(placement.axis),
                          z_min_mm=0.0, z_max_mm=z_end, nominal_radius_mm=r_in,
                          radial_stiffness_n_per_mm=k0, ovalisation_stiffness_n_per_mm=k0)


@dataclass(frozen=True)
class DeviceMechanics:
    """A device expanded in the patient's wall (mm, kPa, N).

    Attributes
    ----------
    family, nominal_diameter_mm, depth_mm : the device and where it sits.
    model : wall model (``"linear"`` or ``"neo_hookean"``).
    frame_final_diameter_mm, frame_min_diameter_mm, frame_max_diameter_mm, frame_eccentricity :
        the frame after expansion (eccentricity ``1 − Dmin/Dmax``).
    frame_expansion_percent : mean final diameter / nominal diameter × 100.
    radial_force_n : total radial force between frame and wall.
    contact_area_mm2, max_contact_pressure_kpa, mean_contact_pressure_kpa : contact.
    max_wall_stress_kpa, p99_wall_stress_kpa : maximum principal Cauchy stress over the tissue
        (maximum) and over all cells (99th percentile).
    max_wall_strain, p99_wall_strain : maximum principal strain.
    rupture_risk : ``max_wall_stress_kpa > rupture_threshold_kpa``.
    rupture_threshold_kpa, rupture_source : the threshold and its source.
    wall : the wall mesh used (:meth:`WallDomain.to_dict`); materials : name → (E Pa, ν).
    solution : the full solver result (arrays per contact facet, frame radius per angle).
    warnings : what the user should know (undersized, heavy oversizing, ...).
    """

    family: str
    nominal_diameter_mm: float
    depth_mm: float
    model: str
    frame_final_diameter_mm: float
    frame_min_diameter_mm: float
    frame_max_diameter_mm: float
    frame_eccentricity: float
    frame_expansion_percent: float
    radial_force_n: float
    contact_area_mm2: float
    max_contact_pressure_kpa: float
    mean_contact_pressure_kpa: float
    max_wall_stress_kpa: float
    p99_wall_stress_kpa: float
    max_wall_strain: float
    p99_wall_strain: float
    rupture_risk: bool
    rupture_threshold_kpa: float
    rupture_source: str
    wall: dict[str, Any]
    materials: dict[str, tuple[float, float]]
    solution: FrameContactSolution
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the per-facet arrays of the solution only when ``arrays``."""
        d = {k: v for k, v in asdict(self).items() if k != "solution"}
        d["warnings"] = list(self.warnings)
        sol = self.solution.to_dict()
        if not arrays:
            for k in ("points_mm", "pressure_kpa", "area_mm2"):
                sol.pop(k, None)
        d["solution"] = sol
        return json_ready(d)

    def rows(self) -> list[tuple[str, str]]:
        """(quantity, value) rows for tables."""
        return [
            ("frame diameter, final (mm)", f"{self.frame_final_diameter_mm:.2f} "
             f"({self.frame_expansion_percent:.0f} % of nominal)"),
            ("frame diameter, min–max (mm)",
             f"{self.frame_min_diameter_mm:.2f}–{self.frame_max_diameter_mm:.2f}"),
            ("frame eccentricity", f"{self.frame_eccentricity:.3f}"),
            ("radial force (N)", f"{self.radial_force_n:.1f}"),
            ("contact area (mm²)", f"{self.contact_area_mm2:.0f}"),
            ("contact pressure, max / mean (kPa)",
             f"{self.max_contact_pressure_kpa:.0f} / {self.mean_contact_pressure_kpa:.0f}"),
            ("wall stress, max principal (kPa)", f"{self.max_wall_stress_kpa:.0f}"),
            ("wall strain, max principal", f"{self.max_wall_strain:.3f}"),
            ("rupture risk", f"{'YES' if self.rupture_risk else 'no'} "
             f"(threshold {self.rupture_threshold_kpa:.0f} kPa)"),
        ]


def run_mechanics(placement: DevicePlacement, wall: WallDomain, *, model: str = "linear",
                  materials: dict[str, Material] | None = None, catalog: Catalog | None = None,
                  timeout_s: float = 900.0, degree: int = 2) -> DeviceMechanics:
    """Expand the placed device in the wall mesh and summarise the result.

    Raises
    ------
    DeviceError
        The frame does not overlap the wall mesh.
    SolverError
        The contact solve does not converge or exceeds ``timeout_s`` (the message says what to
        try).
    """
    mats = dict(materials or default_wall_materials())
    axis = np.asarray(wall.axis, dtype=float)
    inflow = np.asarray(placement.inflow_centre_mm, dtype=float)
    # the wall's distal end relative to the frame's inflow edge, along the wall axis
    solid = load_wall(wall)
    coords_mm = solid.mesh.geometry.x / 1e-3
    z_wall_max = float(((coords_mm - inflow) @ axis).max())
    frame = frame_for(placement, catalog=catalog, z_limit_mm=z_wall_max - 1.0)
    sol = solve_frame_expansion(solid, frame, mats, model=model, degree=degree,
                                timeout_s=timeout_s)
    in_contact = sol.pressure_kpa > 0
    mean_p = (float(np.sum(sol.pressure_kpa * sol.area_mm2) / np.sum(sol.area_mm2[in_contact]))
              if in_contact.any() else 0.0)
    warnings = list(sol.warnings)
    rupture = sol.max_tissue_stress_kpa > RUPTURE_STRESS_KPA
    if rupture:
        warnings.append(f"maximum wall stress {sol.max_tissue_stress_kpa:.0f} kPa exceeds "
                        f"{RUPTURE_STRESS_KPA:.0f} kPa: annular rupture risk (screening flag)")
    return DeviceMechanics(
        family=placement.family, nominal_diameter_mm=placement.nominal_diameter_mm,
        depth_mm=placement.depth_mm, model=model,
        frame_final_diameter_mm=sol.diameter_mean_mm, frame_min_diameter_mm=sol.diameter_min_mm,
        frame_max_diameter_mm=sol.diameter_max_mm, frame_eccentricity=sol.eccentricity,
        frame_expansion_percent=100.0 * sol.diameter_mean_mm / sol.nominal_diameter_mm,
        radial_force_n=sol.radial_force_n, contact_area_mm2=sol.contact_area_mm2,
        max_contact_pressure_kpa=sol.max_contact_pressure_kpa, mean_contact_pressure_kpa=mean_p,
        max_wall_stress_kpa=sol.max_tissue_stress_kpa, p99_wall_stress_kpa=sol.p99_principal_stress_kpa,
        max_wall_strain=sol.max_principal_strain, p99_wall_strain=sol.p99_principal_strain,
        rupture_risk=bool(rupture), rupture_threshold_kpa=RUPTURE_STRESS_KPA,
        rupture_source=RUPTURE_SOURCE, wall=wall.to_dict(),
        materials={k: (m.youngs_modulus_pa, m.poisson_ratio) for k, m in mats.items()},
        solution=sol, warnings=tuple(warnings))


@dataclass(frozen=True)
class DeviceComplications:
    """The complications a team plans against, each with its method, reference and sensitivity
    (None where the anatomy or the device kind does not allow it; ``notes`` says why)."""

    paravalvular_leak: ParavalvularLeak | None
    conduction: ConductionRisk | None
    coronary: CoronaryObstruction | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def rows(self) -> list[tuple[str, str]]:
        """(quantity, value) rows for tables; the ones not assessed are left out (see notes)."""
        rows = []
        pvl = self.paravalvular_leak
        if pvl is not None:
            rows += [("paravalvular gap area (mm²)",
                      f"{pvl.gap_area_mm2:.1f} in {pvl.gap_count} gap(s)"),
                     ("regurgitant volume (mL/beat)",
                      f"{pvl.regurgitant_volume_ml:.1f} ({pvl.grade})")]
        cd = self.conduction
        if cd is not None:
            rows += [("contact pressure index, MS region (%)",
                      f"{cd.contact_pressure_index_percent:.1f} "
                      f"(risk if ≥ {cd.cpi_threshold_percent:g})"),
                     ("max contact pressure, MS region (kPa)", f"{cd.max_contact_pressure_kpa:.0f}"),
                     ("conduction-disturbance risk", "YES" if cd.risk else "no")]
        cor = self.coronary
        if cor is not None:
            vtc = cor.valve_to_coronary_distance_mm
            rows += [("valve-to-coronary distance (mm)", "–" if vtc is None else f"{vtc:.1f}"),
                     ("coronary obstruction risk", "YES" if cor.risk else "no")]
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN, e.g. a depth of the conduction trend the wall does not cover, → None)."""
        return json_ready({
            "paravalvular_leak": self.paravalvular_leak.to_dict() if self.paravalvular_leak
            else None,
            "conduction": self.conduction.to_dict() if self.conduction else None,
            "coronary": self.coronary.to_dict() if self.coronary else None,
            "notes": list(self.notes)})


def json_ready(obj: Any) -> Any:
    """Tuples → lists, numpy scalars/arrays → Python, non-finite floats → None, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def lumen_contour_mm(lumen, centre_mm, normal) -> np.ndarray | None:
    """The lumen surface's section by the plane (centre, normal): the closed loop around the
    centre, as (N, 3) points in mm; None when the plane misses the surface."""
    section = lumen.section(plane_origin=np.asarray(centre_mm, float),
                            plane_normal=np.asarray(normal, float))
    if section is None:
        return None
    best, best_d = None, math.inf
    for loop in section.discrete:
        loop = np.asarray(loop, dtype=float)
        if len(loop) < 8:
            continue
        d = float(np.linalg.norm(loop.mean(axis=0) - np.asarray(centre_mm)))
        if d < best_d:
            best, best_d = loop, d
    return best


def septum_direction(annulus_centre_mm, annulus_normal, right_heart_centroid_mm) -> np.ndarray | None:
    """Unit in-plane direction from the annulus centre towards the right heart (the membranous
    septum lies between the LVOT and the right heart); None without a right heart."""
    if right_heart_centroid_mm is None:
        return None
    n = np.asarray(annulus_normal, float)
    d = np.asarray(right_heart_centroid_mm, float) - np.asarray(annulus_centre_mm, float)
    d -= (d @ n) * n
    norm = float(np.linalg.norm(d))
    return d / norm if norm > 1e-6 else None


def assess_complications(mech: DeviceMechanics, placement: DevicePlacement, landmarks, *,
                         lumen=None, heart_rate_bpm: float, diastolic_bp_mmhg: float,
                         right_heart_centroid_mm=None, ostia_mm: dict | None = None,
                         ostium_heights_mm: dict | None = None) -> DeviceComplications:
    """Paravalvular leak at the annulus, conduction risk below it, coronary obstruction.

    * Leak: the lumen contour of ``lumen`` (trimesh, LPS mm) at the annulus plane against the
      expanded frame's contour (its radius per angle) in the same plane.
    * Conduction: the contact pressure over the LVOT wall below the annulus, in the sector
      towards the right heart (``right_heart_centroid_mm``; the patient's right otherwise).
    * Coronary obstruction: needs the ostia (``ostia_mm`` positions or ``ostium_heights_mm``
      above the annulus, e.g. from planning landmarks); "not measured" otherwise. The displaced
      cusp's height is the native orifice's height above the annulus (the leaflet tips), which
      underestimates the cusp length of leaflets that are not yet vertical.
    """
    notes: list[str] = []
    sol = mech.solution
    axis = np.asarray(placement.axis, float)
    e1, _ = plane_basis(axis)
    centre = np.asarray(landmarks.annulus_centre_mm, float)
    normal = np.asarray(landmarks.annulus_normal, float)
    pvl = None
    loop = lumen_contour_mm(lumen, centre, normal) if lumen is not None else None
    if loop is None:
        notes.append("paravalvular leak not assessed: no lumen surface section at the annulus")
    else:
        ann2d = project_to_plane_mm(loop, centre_mm=centre, normal=normal, reference_direction=e1)
        frame_centre = project_to_plane_mm(np.asarray(placement.inflow_centre_mm)[None, :],
                                           centre_mm=centre, normal=normal,
                                           reference_direction=e1)[0]
        frame2d = polar_contour_mm(sol.frame_angles_rad, sol.frame_radius_mm,
                                   centre_mm=(float(frame_centre[0]), float(frame_centre[1])))
        pvl = paravalvular_leak(ann2d, frame2d, aortic_diastolic_mmhg=diastolic_bp_mmhg,
                                heart_rate_bpm=heart_rate_bpm, frame_model="deformed",
                                level_above_inflow_mm=placement.depth_mm,
                                skirt_height_mm=placement.skirt_height_mm)
    conduction = None
    if len(sol.points_mm):
        conduction = conduction_risk(
            sol.points_mm, sol.pressure_kpa, sol.area_mm2, annulus_centre_mm=centre,
            annulus_normal=normal, depth_mm=placement.depth_mm,
            septum_direction=septum_direction(centre, normal, right_heart_centroid_mm))
    coronary = None
    if ostia_mm or ostium_heights_mm:
        coronary = coronary_obstruction(
            frame_radius_mm=mech.frame_final_diameter_mm / 2,
            frame_height_mm=placement.frame_height_mm, depth_mm=placement.depth_mm,
            leaflet_length_mm=landmarks.valve_orifice_height_mm,
            ostia_mm=ostia_mm, ostium_heights_mm=None if ostia_mm else ostium_heights_mm,
            axis_origin_mm=centre, axis=normal, sinus_diameter_mm=landmarks.sinus_diameter_mm)
    else:
        notes.append("coronary obstruction not assessed: coronary ostia not measured (give "
                     "planning landmarks with the ostia when building the twin)")
    return DeviceComplications(pvl, conduction, coronary, tuple(notes))
