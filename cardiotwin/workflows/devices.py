"""Use cases of the devices on a stored twin: place a device and export its surface; simulate it
(device–wall mechanics, complications and flow) — issue 22.

Every function reads the twin through the audited store and stores what it computes as a result
of the twin (kind ``device.placement`` / ``device.simulation``) with its provenance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def choose_size(twin: PatientTwin, family: str, nominal_diameter_mm: float | None
                ) -> tuple[float, SizingReport | None]:
    """The size to place: the given one, else the recommendation on the twin's annulus (valves).

    Raises
    ------
    InputError
        No size given and none can be recommended (the message lists the sizes).
    """
    fam = load_catalog().family(family)
    sizing = size_family(twin.landmarks, family) if fam.kind == VALVE_KIND else None
    if nominal_diameter_mm is not None:
        fam.size(nominal_diameter_mm)
        return float(nominal_diameter_mm), sizing
    sizes = ", ".join(f"{s.nominal_diameter_mm:g}" for s in fam.sizes)
    if sizing is None or sizing.recommended_mm is None:
        why = ("no size of this family fits the annulus" if sizing is not None else
               f"{family} is sized on a measurement the anatomy step does not give yet")
        raise InputError(f"{why}; choose a size explicitly with --size ({sizes} mm)")
    return float(sizing.recommended_mm), sizing


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
    size, sizing = choose_size(twin, family, nominal_diameter_mm)
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
    surf = device_surface(placement)
    files = {ext: str(save_device_surface(surf, out / f"device.{ext}")) for ext in ("stl", "vtp")}
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
