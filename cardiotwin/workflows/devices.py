"""Use cases of the devices on a stored twin: place a device and export its surface; simulate it
(device–wall mechanics, complications and flow) — issue 22.

Every function reads the twin through the audited store and stores what it computes as a result
of the twin (kind ``device.placement`` / ``device.simulation``) with its provenance.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cardiotwin.devices.catalog import load_catalog
from cardiotwin.devices.placement import DevicePlacement, place_device
from cardiotwin.devices.sizing import SizingReport
from cardiotwin.devices.surfaces import device_surface, save_device_surface
from cardiotwin.errors import DeviceError, InputError
from cardiotwin.provenance import Provenance
from cardiotwin.store import Actor, Store
from cardiotwin.study import DEFAULT_FAMILY, size_family
from cardiotwin.twin.state import PatientTwin
from cardiotwin.workflows._common import work_dir

log = logging.getLogger(__name__)

VALVE_KIND = "transcatheter_aortic_valve"


@dataclass(frozen=True)
class PlacedDevice:
    """A device placed on a twin, with its exported surface.

    Attributes
    ----------
    placement : the pose and geometry (:class:`~cardiotwin.devices.placement.DevicePlacement`).
    sizing : the family's sizing on the twin's annulus (valves), else None.
    surface_files : format (``"stl"``, ``"vtp"``) → path of the exported device surface.
    result_id : id of the stored ``device.placement`` result.
    """

    placement: DevicePlacement
    sizing: SizingReport | None
    surface_files: dict[str, str]
    result_id: int | None = None


def lumen_surface(twin: PatientTwin, store: Store):
    """The twin's lumen surface (trimesh, LPS mm) from the store, or None when not stored."""
    import trimesh

    sha = (twin.mesh or {}).get("surface_sha256")
    if not sha:
        return None
    return trimesh.load(store.artifact_path(sha), file_type="stl", force="mesh")


def twin_planning(twin: PatientTwin) -> dict[str, Any] | None:
    """The coronary ostium heights of the twin's planning landmarks (None when not given)."""
    return (twin.anatomy.get("planning") or {}).get("coronary_ostia_height_mm") or None


def choose_size(twin: PatientTwin, family: str, nominal_diameter_mm: float | None,
                ostia_heights_mm: dict[str, float] | None = None
                ) -> tuple[float, SizingReport | None]:
    """The size to place: the given one, else the recommendation on the twin's annulus (valves).

    Raises
    ------
    InputError
        No size given and none can be recommended (the message lists the sizes).
    """
    fam = load_catalog().family(family)
    sizing = (size_family(twin.landmarks, family, coronary_ostia_height_mm=ostia_heights_mm)
              if fam.kind == VALVE_KIND else None)
    if nominal_diameter_mm is not None:
        fam.size(nominal_diameter_mm)
        return float(nominal_diameter_mm), sizing
    sizes = ", ".join(f"{s.nominal_diameter_mm:g}" for s in fam.sizes)
    if sizing is None or sizing.recommended_mm is None:
        why = ("no size of this family fits the annulus" if sizing is not None else
               f"{family} is sized on a measurement the anatomy step does not give yet")
        raise InputError(f"{why}; choose a size explicitly with --size ({sizes} mm)")
    return float(sizing.recommended_mm), sizing


def export_device(placement: DevicePlacement, out: Path) -> dict[str, str]:
    """The placed device's surface (built once) written as ``device.stl`` and ``device.vtp`` in
    ``out``: format → path."""
    surf = device_surface(placement)
    return {ext: str(save_device_surface(surf, out / f"device.{ext}")) for ext in ("stl", "vtp")}


def place_on_twin(pseudonym: str, *, store: Store, actor: Actor, family: str = DEFAULT_FAMILY,
                  nominal_diameter_mm: float | None = None, depth_mm: float | None = None,
                  tilt_deg: float = 0.0, rotation_deg: float = 0.0,
                  arc_length_mm: float | None = None, site_centre_mm=None, site_normal=None,
                  purpose: str = "treatment planning") -> PlacedDevice:
    """Place a catalog device on the twin, check it lies in the lumen, export its surface.

    ``site_centre_mm``/``site_normal`` are the LAA ostium (LAA occluders) or the septal defect
    (septal occluders), which the anatomy step cannot measure yet and the user must give;
    ``arc_length_mm`` places a stent along the aortic centreline from the annulus plane. The
    placement and the surface (STL and VTP, one part id per face) are stored as a
    ``device.placement`` result.

    Raises
    ------
    DeviceError
        Unknown family or size, a pose out of range or outside the vessel, a missing landing site.
    InputError
        No size given and none can be recommended.
    """
    store.check_permission("result.write", actor=actor, purpose=purpose, pseudonym=pseudonym,
                           obj="device.placement")
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    size, sizing = choose_size(twin, family, nominal_diameter_mm, twin_planning(twin))
    kind = load_catalog().family(family).kind
    site = {}
    if kind in ("laa_occluder", "septal_occluder") and (site_centre_mm is None or site_normal is None):
        what = "LAA ostium" if kind == "laa_occluder" else "septal defect"
        raise DeviceError(
            f"placing {family} needs the {what}, which the anatomy step cannot measure yet: give "
            f"its centre and normal (LPS; --site-centre x,y,z and --site-normal x,y,z in the CLI), "
            "e.g. read off the CT in a viewer")
    if kind == "laa_occluder":
        site = {"ostium_centre_mm": site_centre_mm, "ostium_normal": site_normal}
    elif kind == "septal_occluder":
        site = {"defect_centre_mm": site_centre_mm, "defect_normal": site_normal}
    elif site_centre_mm is not None or site_normal is not None:
        raise InputError(f"--site-centre/--site-normal are for occluders; {family} is placed "
                         "from the twin's landmarks")
    placement = place_device(twin.landmarks, family=family, nominal_diameter_mm=size,
                             depth_mm=depth_mm, tilt_deg=tilt_deg, rotation_deg=rotation_deg,
                             arc_length_mm=arc_length_mm, lumen_surface=lumen_surface(twin, store),
                             **site)
    out = work_dir(store, pseudonym, f"device_{family}_{size:g}mm")
    files = export_device(placement, out)
    prov = Provenance("device.place", inputs={"twin": f"{pseudonym}@v{twin.version}"},
                      parameters={"family": family, "nominal_diameter_mm": size,
                                  "depth_mm": depth_mm, "tilt_deg": tilt_deg,
                                  "rotation_deg": rotation_deg, "arc_length_mm": arc_length_mm})
    artifacts = {Path(p).name: store.put_artifact(p, kind="device-surface") for p in files.values()}
    summary: dict[str, Any] = {"placement": placement.to_dict(),
                               "sizing": sizing.to_dict() if sizing else None}
    rid = store.add_result(pseudonym, kind="device.placement",
                           label=f"{family} {size:g} mm", summary=summary, provenance=prov,
                           artifacts=artifacts, twin_version=twin.version, actor=actor,
                           purpose=purpose)
    log.info("%s: %s %g mm placed (result %d)", pseudonym, family, size, rid)
    return PlacedDevice(placement, sizing, files, rid)


@dataclass(frozen=True)
class DeviceSimulation:
    """What ``cardiotwin device simulate`` computed for one placement.

    Attributes
    ----------
    placement, sizing : as in :class:`PlacedDevice`.
    mechanics : the device expanded in the patient's wall
        (:class:`~cardiotwin.devices.mechanics.DeviceMechanics`).
    complications : paravalvular leak, conduction risk, coronary obstruction
        (:class:`~cardiotwin.devices.mechanics.DeviceComplications`).
    flow : the before/after flow comparison (:class:`~cardiotwin.study.RehearsalComparison`),
        None with ``flow=False``.
    files : name → path of the files written (device surface, wall mesh, contact map).
    result_id : id of the stored ``device.simulation`` result.
    """

    placement: DevicePlacement
    sizing: SizingReport | None
    mechanics: Any
    complications: Any
    flow: Any
    files: dict[str, str]
    result_id: int | None = None

    def summary(self) -> dict[str, Any]:
        """The stored summary (JSON; the per-facet contact arrays are in the contact-map file)."""
        return {"placement": self.placement.to_dict(),
                "sizing": self.sizing.to_dict() if self.sizing else None,
                "mechanics": self.mechanics.to_dict(),
                "complications": self.complications.to_dict(),
                "flow": self.flow.to_dict() if self.flow is not None else None}


def _contact_map(mech, placement: DevicePlacement, out: Path) -> dict[str, str]:
    """The contact pressure per wall facet as CSV and as an unrolled map (angle × height) PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from cardiotwin.physics.solid import plane_basis

    sol = mech.solution
    pts = np.asarray(sol.points_mm, dtype=float).reshape(-1, 3)
    csv = out / "contact_pressure.csv"
    with csv.open("w") as fh:
        fh.write("x_mm,y_mm,z_mm,pressure_kpa,area_mm2\n")
        for p, q, a in zip(pts, sol.pressure_kpa, sol.area_mm2, strict=True):
            fh.write(f"{p[0]:.3f},{p[1]:.3f},{p[2]:.3f},{q:.3f},{a:.4f}\n")
    axis = np.asarray(placement.axis, float)
    e1, e2 = plane_basis(axis)
    rel = pts - np.asarray(placement.inflow_centre_mm, float)
    z = rel @ axis - placement.depth_mm
    ang = np.degrees(np.arctan2(rel @ e2, rel @ e1))
    p = np.asarray(sol.pressure_kpa, dtype=float)
    touch = p > 0
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.scatter(ang[~touch], z[~touch], s=3, color="0.85", label="no contact")
    sc = ax.scatter(ang[touch], z[touch], c=p[touch], s=14, cmap="plasma",
                    vmin=0.0, vmax=max(float(p.max()), 1e-9), label="contact")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    ax.axhline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("angle around the device axis (°)")
    ax.set_ylabel("height above the annulus (mm)")
    ax.set_title(f"contact pressure, {placement.family} {placement.nominal_diameter_mm:g} mm")
    fig.colorbar(sc, ax=ax, label="kPa")
    fig.tight_layout()
    png = out / "contact_pressure.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return {"contact_csv": str(csv), "contact_png": str(png)}


def simulate_on_twin(pseudonym: str, *, store: Store, actor: Actor,
                     family: str = DEFAULT_FAMILY, nominal_diameter_mm: float | None = None,
                     depth_mm: float | None = None, tilt_deg: float = 0.0,
                     rotation_deg: float = 0.0, model: str = "linear", flow: bool = True,
                     wall_thickness_mm: float | None = None, wall_size_mm: float = 1.5,
                     timeout_s: float = 900.0, purpose: str = "procedure rehearsal",
                     progress=None) -> DeviceSimulation:
    """Simulate a transcatheter valve on the twin: mechanics, complications and flow.

    1. The device is placed (as :func:`place_on_twin`) and its surface exported.
    2. A wall mesh of the aortic root is built outward from the twin's lumen surface
       (:func:`~cardiotwin.geometry.wall_mesh.wall_domain_from_surface`; wall thickness
       ``wall_thickness_mm`` or the documented default), with the twin's valve calcium as stiffer
       cells.
    3. The frame expands in it with frictionless contact
       (:func:`~cardiotwin.devices.mechanics.run_mechanics`; ``model`` ``"linear"`` or
       ``"neo_hookean"``).
    4. Paravalvular leak, conduction risk and coronary obstruction are assessed
       (:func:`~cardiotwin.devices.mechanics.assess_complications`).
    5. With ``flow``, the flow with the device is solved and compared with the native valve
       (:func:`cardiotwin.workflows.rehearse`, stored as its own ``rehearsal`` result).

    The whole is stored as a ``device.simulation`` result with the wall mesh, the device surface
    and the contact map as artifacts.

    Raises
    ------
    DeviceError
        Not a transcatheter valve (the mechanics needs the aortic root), a bad size or pose.
    GeometryError
        The wall cannot be built from the lumen surface.
    SolverError
        The contact solve does not converge or exceeds ``timeout_s``.
    """
    import trimesh

    from cardiotwin.devices.mechanics import assess_complications, run_mechanics
    from cardiotwin.geometry import wall_mesh
    from cardiotwin.workflows.rehearsal import rehearse

    prog = progress or (lambda f, m: None)
    fam = load_catalog().family(family)
    if fam.kind != VALVE_KIND:
        raise DeviceError(f"device simulate models transcatheter aortic valves in the aortic "
                          f"root; {family} is a {fam.kind.replace('_', ' ')} (use `device place` "
                          "to place it and export its surface)")
    store.check_permission("rehearsal.run", actor=actor, purpose=purpose, pseudonym=pseudonym,
                           obj="device.simulation")
    twin = store.load_twin(pseudonym, actor=actor, purpose=purpose)
    size, sizing = choose_size(twin, family, nominal_diameter_mm, twin_planning(twin))
    lumen = lumen_surface(twin, store)
    if lumen is None:
        raise InputError(f"twin {pseudonym} has no stored lumen surface; rebuild it with "
                         "`cardiotwin twin build`")
    prov = Provenance("device.simulate", inputs={"twin": f"{pseudonym}@v{twin.version}",
                                                 "surface": twin.mesh["surface_sha256"]},
                      parameters={"family": family, "nominal_diameter_mm": size,
                                  "depth_mm": depth_mm, "tilt_deg": tilt_deg,
                                  "rotation_deg": rotation_deg, "model": model,
                                  "wall_thickness_mm": wall_thickness_mm,
                                  "wall_size_mm": wall_size_mm})
    prog(0.0, "placing the device")
    placement = place_device(twin.landmarks, family=family, nominal_diameter_mm=size,
                             depth_mm=depth_mm, tilt_deg=tilt_deg, rotation_deg=rotation_deg,
                             lumen_surface=lumen)
    out = work_dir(store, pseudonym, f"simulate_{family}_{size:g}mm_d{placement.depth_mm:g}"
                                     f"_t{tilt_deg:g}_r{rotation_deg:g}_{model}")
    files = {f"device_{ext}": path for ext, path in export_device(placement, out).items()}
    ctx = twin.anatomy.get("device_context") or {}
    calcium = ctx.get("calcium_points_mm") or None
    prog(0.05, "meshing the aortic-root wall")
    with prov.timed("wall_mesh"):
        kw = {} if wall_thickness_mm is None else {"thickness_mm": wall_thickness_mm}
        # the root's wall surface (envelope of LVOT, root and native valve) when the twin has
        # it, else the lumen; the store's artifacts carry no suffix, the readers go by it
        sha = twin.mesh.get("root_surface_sha256") or twin.mesh["surface_sha256"]
        surface_stl = out / "root_wall_surface.stl"
        shutil.copyfile(store.artifact_path(sha), surface_stl)
        wall = wall_mesh.wall_domain_from_surface(
            surface_stl, twin.landmarks,
            out_path=out / "wall.msh", size_mm=wall_size_mm,
            calcium_points_mm=None if calcium is None else np.asarray(calcium), **kw)
    files["wall_mesh"] = wall.mesh_path
    prog(0.15, f"expanding the frame in the wall ({model})")
    with prov.timed("mechanics"):
        mech = run_mechanics(placement, wall, model=model, timeout_s=timeout_s)
    files.update(_contact_map(mech, placement, out))
    prog(0.4, "complications")
    comp = assess_complications(
        mech, placement, twin.landmarks, lumen=trimesh.load(surface_stl, force="mesh"),
        heart_rate_bpm=twin.physiology.heart_rate_bpm,
        diastolic_bp_mmhg=twin.physiology.diastolic_bp_mmhg,
        right_heart_centroid_mm=ctx.get("right_heart_centroid_mm"),
        ostium_heights_mm=twin_planning(twin))
    comparison = None
    if flow:
        prog(0.45, "flow with the device")
        comparison = rehearse(pseudonym, store=store, actor=actor, nominal_diameter_mm=size,
                              family=family, depth_mm=placement.depth_mm, tilt_deg=tilt_deg,
                              rotation_deg=rotation_deg, purpose=purpose,
                              progress=lambda f, m: prog(0.45 + 0.5 * f, m))
    sim = DeviceSimulation(placement, sizing, mech, comp, comparison, files)
    artifacts = {Path(p).name: store.put_artifact(p, kind="device-simulation")
                 for p in files.values()}
    rid = store.add_result(pseudonym, kind="device.simulation",
                           label=f"{family} {size:g} mm, depth {placement.depth_mm:g} mm ({model})",
                           summary=sim.summary(), provenance=prov, artifacts=artifacts,
                           twin_version=twin.version, actor=actor, purpose=purpose)
    prog(1.0, "done")
    log.info("%s: %s %g mm simulated (result %d)", pseudonym, family, size, rid)
    return DeviceSimulation(placement, sizing, mech, comp, comparison, files, rid)
