"""Parametric, seedable contrast-CT phantom of the left heart and thoracic aorta.

The phantom is the embedded demo sample of cardiotwin and the oracle of many tests: every structure
is built from analytic shapes evaluated at voxel centres in DICOM patient coordinates (LPS, mm),
so its ground truth (labels and the aortic-root landmarks a TAVR planner sizes with) is known
exactly.

Anatomy (LPS: +x patient left, +y posterior, +z superior)
--------------------------------------------------------
* **Aortic root.** The annulus (virtual basal ring, the plane of the leaflet hinges) is an ellipse
  of area-derived diameter ``annulus_diameter_mm`` centred at ``annulus_centre_mm``; its normal
  (the valve axis, LV → aorta) is tilted ``valve_axis_tilt_deg`` from +z towards the patient's
  right-anterior (``valve_axis_azimuth_deg``). Below it the LVOT is a circular tube of diameter
  ``lvot_diameter_mm`` (blending into the annulus ellipse between 6 and 2 mm below the annulus, the
  last 2 mm have the annulus cross-section) that opens into the
  LV cavity ``lvot_length_mm`` below the annulus. Above it the three sinuses of Valsalva have a
  trilobed cross-section whose largest area-derived diameter is ``sinus_diameter_mm``, up to the
  sinotubular junction (STJ) ``stj_height_mm`` above the annulus.
* **Aorta.** A tube along a smooth centreline (cubic spline) with a radius profile: ascending
  aorta (~50 mm) rising superiorly and slightly to the right, an arch curving posterior and left,
  and a descending aorta running inferiorly posterior-left of the heart and leaving the field of
  view (FOV) through its inferior face. Three arch branches (brachiocephalic, left common carotid,
  left subclavian) rise from the top of the arch and leave the FOV through its superior face.
* **Left ventricle.** A prolate ellipsoidal cavity (``lv_length_mm`` × ``lv_diameter_mm``) with
  its long axis pointing anterior-left-inferior to the apex, wrapped in a myocardial shell of
  ``myocardium_thickness_mm`` (cut 2 mm below the annulus plane so it never touches the root).
* **Aortic valve.** Three fused (stenotic) leaflets forming a dome from the hinge ring to a round
  central orifice of area ``valve_orifice_area_mm2`` at ``valve_orifice_height_mm`` above the
  annulus, ``leaflet_thickness_mm`` thick, carrying seeded calcium nodules.
* **Surroundings.** Mediastinal fat around the heart and vessels, lungs elsewhere, and a vertebral
  column (bone with intervertebral discs) posterior to the descending aorta, separated from it by
  several millimetres of soft tissue.

Image formation: label-wise HU → Gaussian point-spread function (``blur_sigma_mm``, partial
volume) → Gaussian noise (``noise_hu``, seeded) → rounding to integer HU.

Examples
--------
>>> from cardiotwin.imaging.phantom import PhantomParameters, make_phantom
>>> ph = make_phantom(PhantomParameters(spacing_mm=(1.5, 1.5, 1.5)), seed=1)
>>> ph.ct.array.dtype
dtype('float32')
>>> round(ph.truth.landmarks.valve_orifice_area_mm2)
80
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq
from scipy.spatial import cKDTree

from cardiotwin.errors import InputError
from cardiotwin.imaging.anatomy import AorticRootLandmarks
from cardiotwin.imaging.volume import LABELS, NEIGHBOUR_LABELS, LabelMap, Volume

__all__ = [
    "BRANCH_NAMES",
    "PATHOLOGY_VARIANTS",
    "VARIANTS",
    "Phantom",
    "PhantomParameters",
    "PhantomTruth",
    "make_phantom",
    "variant",
    "variant_parameters",
]

log = logging.getLogger(__name__)

#: Names of the arch branches, in order from proximal (right) to distal (left).
BRANCH_NAMES: tuple[str, ...] = ("brachiocephalic", "left_common_carotid", "left_subclavian")

#: LV long axis (base → apex), LPS: anterior (-y), left (+x), inferior (-z).
_LV_AXIS = np.array([0.60, -0.50, -0.62]) / np.linalg.norm([0.60, -0.50, -0.62])

#: Aortic centreline control points after the STJ, in mm relative to the annulus centre (LPS).
#: Ascending aorta rising superiorly and to the right, arch curving posterior-left, descending
#: aorta running inferiorly far below the FOV.
_AORTA_CONTROL_MM = np.array(
    [
        [-17.0, -14.0, 40.0],
        [-19.0, -11.0, 64.0],
        [-9.0, 5.0, 84.0],
        [9.0, 24.0, 89.0],
        [24.0, 44.0, 78.0],
        [30.0, 56.0, 52.0],
        [32.0, 60.0, 15.0],
        [32.0, 61.0, -40.0],
        [32.0, 61.0, -120.0],
        [32.0, 61.0, -300.0],
    ]
)

#: Arch branches: (arc-length fraction of the arch where the branch arises, initial direction,
#: far end offset relative to the origin) — the far end lies well above any FOV.
_BRANCH_LAYOUT = (
    (0.18, np.array([-0.45, -0.25, 1.0]), np.array([-55.0, -30.0, 260.0])),
    (0.50, np.array([0.0, -0.10, 1.0]), np.array([2.0, -12.0, 260.0])),
    (0.80, np.array([0.45, 0.05, 1.0]), np.array([50.0, 8.0, 260.0])),
)

_SAMPLE_MM = 0.5  # centreline sampling step for tube evaluation


@dataclass(frozen=True)
class PhantomParameters:
    """Parameters of the CT phantom (lengths in mm, areas in mm², volumes in mm³, CT values in HU).

    Attributes
    ----------
    spacing_mm : (3,) float
        Voxel size ``(di, dj, dk)`` in mm, each in [0.25, 3].
    annulus_centre_mm : (3,) float
        LPS position of the annulus centre.
    valve_axis_tilt_deg : float
        Angle between the valve axis (LV → aorta) and +z (superior), in [15, 50] degrees.
    valve_axis_azimuth_deg : float
        Direction of the horizontal part of the valve axis, measured in the axial plane from +x
        (left) towards +y (posterior); 225° = right-anterior.
    annulus_diameter_mm : float
        Area-derived diameter of the (elliptical) annulus.
    annulus_aspect_ratio : float
        Minor / major diameter of the annulus ellipse, in [0.6, 1].
    lvot_diameter_mm : float
        Diameter of the circular LVOT (the LVOT is circular ≥ 6 mm below the annulus).
    lvot_length_mm : float
        Distance from the annulus down to where the LVOT opens into the LV cavity.
    sinus_diameter_mm : float
        Largest area-derived diameter of the sinus of Valsalva segment.
    stj_height_mm, stj_diameter_mm : float
        Height of the sinotubular junction above the annulus and its diameter.
    ascending_diameter_mm, descending_diameter_mm : float
        Diameters of the ascending and descending aorta.
    branch_diameters_mm : (3,) float
        Diameters of the brachiocephalic, left common carotid and left subclavian arteries.
    valve_orifice_area_mm2 : float
        Anatomic orifice area of the stenotic valve (80 mm² = 0.8 cm²: severe stenosis).
    valve_orifice_height_mm : float
        Height of the orifice (leaflet tips) above the annulus plane.
    leaflet_thickness_mm : float
        Leaflet thickness (normal to the leaflet surface).
    calcium_volume_mm3 : float
        Target volume of the calcium nodules (the voxelised value is in the truth); 0 = none.
    calcium_nodule_radius_mm : (2,) float
        Range of the nodule radii (uniformly drawn).
    lv_length_mm, lv_diameter_mm : float
        Long-axis length and short-axis diameter of the LV cavity ellipsoid.
    myocardium_thickness_mm : float
        Thickness of the myocardial shell.
    blood_hu, myocardium_hu, valve_hu, calcium_hu, tissue_hu, fat_hu, lung_hu, bone_hu : float
        CT values (contrast-enhanced blood pool, myocardium, leaflet tissue, calcium, soft tissue,
        mediastinal fat, lung, vertebral bone).
    noise_hu : float
        Standard deviation of the additive Gaussian noise.
    blur_sigma_mm : float
        Standard deviation of the Gaussian point-spread function (0 = none).
    fov_margin_mm : float
        Margin between the contained anatomy (LV, myocardium, arch) and the FOV faces, ≥ 8 mm.
    fov_extend_mm : (6,) float
        Extra FOV beyond the margin, in mm, on the faces (−x right, +x left, −y anterior,
        +y posterior, −z inferior, +z superior). E.g. 150 mm inferiorly reaches into the upper
        abdomen and puts the heart high and off-centre in the volume.
    neighbours : bool
        Add the neighbouring blood pools of a real chest CT: left atrium (``left_atrium_hu``),
        right ventricle, main and branch pulmonary arteries (``right_heart_hu``), superior vena
        cava (``svc_hu``) and inferior vena cava (``ivc_hu``). They are kept at least
        ``neighbour_gap_mm`` from the LV/aortic blood (a wall) and labelled with
        :data:`~cardiotwin.imaging.volume.NEIGHBOUR_LABELS` (``la``, ``right_heart`` = right
        atrium, ventricle, pulmonary trunk and arteries, ``svc``, ``ivc``) where they are painted;
        the label map's ``names`` then include them.
    left_atrium_hu, right_heart_hu, svc_hu, ivc_hu : float or None
        CT values of those pools; None = ``blood_hu`` (LA, right heart, SVC) or ``tissue_hu``
        (IVC, unenhanced in the arterial phase).
    neighbour_gap_mm : float
        Minimum distance between a neighbouring pool and the LV/aortic blood, in [0.5, 20] mm.
        Below the voxel size the pools touch the aorta with no wall voxel between them.
    body : bool
        Add a body: air outside an elliptical body outline, a chest wall of fat and muscle, ribs
        and a sternum (``bone_hu``), the upper abdomen below the heart (liver ``abdomen_hu``)
        with two kidneys (``kidney_hu``).
    abdomen_hu, kidney_hu : float
        CT values of the upper-abdominal organs (liver, spleen) and of the kidneys.
    streak_hu : float
        Amplitude of streak artefacts (alternating bright/dark lines in the axial slices,
        radiating from the superior vena cava over its height, or from the annulus without
        ``neighbours``); 0 = none.
    n_streaks : int
        Number of streak lines (random angles, seeded).
    coronary_arteries : bool
        Add the left and right coronary arteries (:func:`_paint_coronary_arteries`), labelled
        ``aorta`` (they are side branches of the aortic lumen); off by default.
    coronary_ostium_heights_mm : (2,) float
        Heights of the left and right coronary ostia above the annulus plane, each in
        [5, ``stj_height_mm`` - 2] mm. Defaults 14 and 16.5 mm: typical of TAVR candidates
        (LCA 14.4 ± 2.9 mm, RCA 17.2 ± 3.3 mm; Tops et al., JACC Cardiovasc Imaging
        2008;1:321-330).
    coronary_diameter_mm : float
        Lumen diameter of both coronary arteries, in [2, 5] mm.
    valve_cusps : {3, 2}
        Number of valve leaflets. 2 = bicuspid valve, Sievers type 1: the right and left coronary
        leaflets fused, with a raphe (a thickened ridge, 2.5 × the leaflet thickness, carrying
        part of the calcium) where their commissure would be; the two commissures lie on the
        annulus major axis.
    orifice_aspect_ratio : float
        Minor / major axis of the elliptical valve orifice (1 = round), in [0.2, 1]; its major
        axis lies along the annulus major axis (a fish-mouth orifice for a bicuspid valve).
    ascending_taper_mm : float
        Length of the aorta above the STJ over which the diameter goes from
        ``stj_diameter_mm`` to ``ascending_diameter_mm`` (a long taper for a dilated aorta).
    dissection : {"none", "stanford_a", "stanford_b"}
        Aortic dissection: an intimal flap (``flap_thickness_mm`` of soft tissue, ``tissue_hu``)
        splits the lumen into a true and a (larger) false lumen, spiralling along the aorta. It
        starts ``dissection_start_mm`` above the STJ (Stanford A: ascending aorta, arch and
        descending aorta) or 15 mm distal to the left subclavian artery (Stanford B), the
        proximal edge being the entry tear, and runs down to the FOV. The flap is background
        in the labels, both lumina are ``aorta``.
    dissection_start_mm : float
        Arc length above the STJ where a Stanford A flap starts.
    flap_thickness_mm : float
        Thickness of the intimal flap, in [0.5, 3] mm.
    false_lumen_hu : float or None
        CT value of the false lumen; None = ``blood_hu``.
    annulus_calcium_fraction : float
        Fraction of ``calcium_volume_mm3`` placed as nodules on the annulus and the LVOT wall
        (from 6 mm below to 0.5 mm above the annulus, straddling the lumen edge) instead of on
        the leaflets, in [0, 0.8]; calcium is labelled ``calcium`` wherever it lies.
    """

    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    annulus_centre_mm: tuple[float, float, float] = (12.0, -25.0, -140.0)
    valve_axis_tilt_deg: float = 33.0
    valve_axis_azimuth_deg: float = 225.0
    annulus_diameter_mm: float = 23.0
    annulus_aspect_ratio: float = 0.85
    lvot_diameter_mm: float = 21.0
    lvot_length_mm: float = 15.0
    sinus_diameter_mm: float = 32.0
    stj_height_mm: float = 19.0
    stj_diameter_mm: float = 27.0
    ascending_diameter_mm: float = 30.0
    descending_diameter_mm: float = 22.0
    branch_diameters_mm: tuple[float, float, float] = (12.0, 8.0, 9.0)
    valve_orifice_area_mm2: float = 80.0
    valve_orifice_height_mm: float = 11.0
    leaflet_thickness_mm: float = 2.0
    calcium_volume_mm3: float = 450.0
    calcium_nodule_radius_mm: tuple[float, float] = (1.5, 3.0)
    lv_length_mm: float = 85.0
    lv_diameter_mm: float = 50.0
    myocardium_thickness_mm: float = 10.0
    blood_hu: float = 380.0
    myocardium_hu: float = 110.0
    valve_hu: float = 60.0
    calcium_hu: float = 900.0
    tissue_hu: float = 40.0
    fat_hu: float = -90.0
    lung_hu: float = -800.0
    bone_hu: float = 600.0
    noise_hu: float = 18.0
    blur_sigma_mm: float = 0.6
    fov_margin_mm: float = 12.0
    fov_extend_mm: tuple[float, float, float, float, float, float] = (0.0,) * 6
    neighbours: bool = False
    left_atrium_hu: float | None = None
    right_heart_hu: float | None = None
    svc_hu: float | None = None
    ivc_hu: float | None = None
    neighbour_gap_mm: float = 3.0
    body: bool = False
    abdomen_hu: float = 100.0
    kidney_hu: float = 180.0
    streak_hu: float = 0.0
    n_streaks: int = 8
    coronary_arteries: bool = False
    coronary_ostium_heights_mm: tuple[float, float] = (14.0, 16.5)
    coronary_diameter_mm: float = 3.5
    valve_cusps: int = 3
    orifice_aspect_ratio: float = 1.0
    ascending_taper_mm: float = 15.0
    dissection: str = "none"
    dissection_start_mm: float = 10.0
    flap_thickness_mm: float = 1.5
    false_lumen_hu: float | None = None
    annulus_calcium_fraction: float = 0.0

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise InputError(
                    f"PhantomParameters.{name}={getattr(self, name)!r} is invalid: expected {expected}"
                )

        sp = tuple(float(s) for s in self.spacing_mm)
        check(
            "spacing_mm",
            len(sp) == 3 and all(0.25 <= s <= 3.0 for s in sp),
            "three voxel sizes in [0.25, 3] mm",
        )
        object.__setattr__(self, "spacing_mm", sp)
        c = tuple(float(v) for v in self.annulus_centre_mm)
        check(
            "annulus_centre_mm",
            len(c) == 3 and all(math.isfinite(v) for v in c),
            "three finite LPS coordinates in mm",
        )
        object.__setattr__(self, "annulus_centre_mm", c)
        check("valve_axis_tilt_deg", 15.0 <= self.valve_axis_tilt_deg <= 50.0, "15 to 50 degrees")
        check(
            "valve_axis_azimuth_deg",
            180.0 <= self.valve_axis_azimuth_deg <= 270.0,
            "180 to 270 degrees (the valve axis points to the patient's right-anterior)",
        )
        check("annulus_diameter_mm", 15.0 <= self.annulus_diameter_mm <= 32.0, "15 to 32 mm")
        check("annulus_aspect_ratio", 0.6 <= self.annulus_aspect_ratio <= 1.0, "0.6 to 1")
        minor = self.annulus_diameter_mm * math.sqrt(self.annulus_aspect_ratio)
        check(
            "lvot_diameter_mm",
            12.0 <= self.lvot_diameter_mm <= minor,
            f"12 mm up to the annulus minor diameter ({minor:.1f} mm)",
        )
        check("lvot_length_mm", 8.0 <= self.lvot_length_mm <= 30.0, "8 to 30 mm")
        check("stj_height_mm", 12.0 <= self.stj_height_mm <= 30.0, "12 to 30 mm")
        check(
            "stj_diameter_mm",
            self.annulus_diameter_mm <= self.stj_diameter_mm <= 40.0,
            "between annulus_diameter_mm and 40 mm",
        )
        check(
            "sinus_diameter_mm",
            self.stj_diameter_mm + 1.0 <= self.sinus_diameter_mm <= 1.6 * self.stj_diameter_mm,
            "at least stj_diameter_mm + 1 mm and at most 1.6 × stj_diameter_mm",
        )
        check("ascending_diameter_mm", 15.0 <= self.ascending_diameter_mm <= 60.0, "15 to 60 mm")
        check("descending_diameter_mm", 12.0 <= self.descending_diameter_mm <= 30.0, "12 to 30 mm")
        bd = tuple(float(v) for v in self.branch_diameters_mm)
        check(
            "branch_diameters_mm",
            len(bd) == 3 and all(4.0 <= v <= 16.0 for v in bd),
            "three diameters in [4, 16] mm",
        )
        object.__setattr__(self, "branch_diameters_mm", bd)
        ann_area = math.pi * self.annulus_diameter_mm**2 / 4
        check(
            "valve_orifice_area_mm2",
            20.0 <= self.valve_orifice_area_mm2 <= 0.6 * ann_area,
            f"20 mm² up to 60% of the annulus area ({0.6 * ann_area:.0f} mm²)",
        )
        check(
            "valve_orifice_height_mm",
            5.0 <= self.valve_orifice_height_mm <= self.stj_height_mm - 4,
            "5 mm up to stj_height_mm - 4 mm",
        )
        check("leaflet_thickness_mm", 0.5 <= self.leaflet_thickness_mm <= 4.0, "0.5 to 4 mm")
        check("calcium_volume_mm3", 0.0 <= self.calcium_volume_mm3 <= 3000.0, "0 to 3000 mm³")
        rr = tuple(float(v) for v in self.calcium_nodule_radius_mm)
        check(
            "calcium_nodule_radius_mm",
            len(rr) == 2 and 0.5 <= rr[0] <= rr[1] <= 5.0,
            "(min, max) radii with 0.5 <= min <= max <= 5 mm",
        )
        object.__setattr__(self, "calcium_nodule_radius_mm", rr)
        check("lv_length_mm", 50.0 <= self.lv_length_mm <= 120.0, "50 to 120 mm")
        check(
            "lv_diameter_mm",
            30.0 <= self.lv_diameter_mm <= min(70.0, self.lv_length_mm),
            "30 to 70 mm and not more than lv_length_mm",
        )
        check("myocardium_thickness_mm", 4.0 <= self.myocardium_thickness_mm <= 20.0, "4 to 20 mm")
        for name in (
            "blood_hu",
            "myocardium_hu",
            "valve_hu",
            "calcium_hu",
            "tissue_hu",
            "fat_hu",
            "lung_hu",
            "bone_hu",
        ):
            check(name, -1024.0 <= getattr(self, name) <= 3000.0, "-1024 to 3000 HU")
        check("noise_hu", 0.0 <= self.noise_hu <= 200.0, "0 to 200 HU")
        check("blur_sigma_mm", 0.0 <= self.blur_sigma_mm <= 3.0, "0 to 3 mm")
        check("fov_margin_mm", 8.0 <= self.fov_margin_mm <= 50.0, "8 to 50 mm")
        ext = tuple(float(v) for v in self.fov_extend_mm)
        check(
            "fov_extend_mm",
            len(ext) == 6 and all(0.0 <= v <= 400.0 for v in ext),
            "six extensions in [0, 400] mm (-x, +x, -y, +y, -z, +z)",
        )
        object.__setattr__(self, "fov_extend_mm", ext)
        for name in ("left_atrium_hu", "right_heart_hu", "svc_hu", "ivc_hu"):
            v = getattr(self, name)
            check(name, v is None or -1024.0 <= v <= 3000.0, "None or -1024 to 3000 HU")
        for name in ("abdomen_hu", "kidney_hu"):
            check(name, -1024.0 <= getattr(self, name) <= 3000.0, "-1024 to 3000 HU")
        check("neighbour_gap_mm", 0.5 <= self.neighbour_gap_mm <= 20.0, "0.5 to 20 mm")
        check("streak_hu", 0.0 <= self.streak_hu <= 1000.0, "0 to 1000 HU")
        check("n_streaks", 0 <= int(self.n_streaks) <= 64, "0 to 64 lines")
        ch = tuple(float(v) for v in self.coronary_ostium_heights_mm)
        check(
            "coronary_ostium_heights_mm",
            len(ch) == 2 and all(5.0 <= v <= self.stj_height_mm - 2.0 for v in ch),
            f"(left, right) heights in [5, {self.stj_height_mm - 2.0:g}] mm (below the STJ)",
        )
        object.__setattr__(self, "coronary_ostium_heights_mm", ch)
        check("coronary_diameter_mm", 2.0 <= self.coronary_diameter_mm <= 5.0, "2 to 5 mm")
        check("valve_cusps", self.valve_cusps in (2, 3), "3 (tricuspid) or 2 (bicuspid)")
        check("orifice_aspect_ratio", 0.2 <= self.orifice_aspect_ratio <= 1.0, "0.2 to 1")
        a_or = math.sqrt(self.valve_orifice_area_mm2 / (math.pi * self.orifice_aspect_ratio))
        a_ann = 0.5 * self.annulus_diameter_mm / math.sqrt(self.annulus_aspect_ratio)
        check(
            "orifice_aspect_ratio",
            a_or <= a_ann - 2.0,
            f"an orifice whose major semi-axis ({a_or:.1f} mm) stays 2 mm inside the annulus "
            f"major semi-axis ({a_ann:.1f} mm): a rounder or smaller orifice",
        )
        check("ascending_taper_mm", 5.0 <= self.ascending_taper_mm <= 50.0, "5 to 50 mm")
        check(
            "dissection",
            self.dissection in ("none", "stanford_a", "stanford_b"),
            "'none', 'stanford_a' or 'stanford_b'",
        )
        check("dissection_start_mm", 2.0 <= self.dissection_start_mm <= 40.0, "2 to 40 mm")
        check("flap_thickness_mm", 0.5 <= self.flap_thickness_mm <= 3.0, "0.5 to 3 mm")
        v = self.false_lumen_hu
        check("false_lumen_hu", v is None or -1024.0 <= v <= 3000.0, "None or -1024 to 3000 HU")
        check(
            "annulus_calcium_fraction", 0.0 <= self.annulus_calcium_fraction <= 0.8, "0 to 0.8"
        )


@dataclass(frozen=True, eq=False)
class PhantomTruth:
    """Exact ground truth of a phantom (LPS mm).

    Attributes
    ----------
    landmarks : AorticRootLandmarks
        Aortic-root measurements from the construction (calcium volume as voxelised).
    parameters : PhantomParameters
        The parameters the phantom was built with.
    seed : int
        Seed of the random parts (calcium placement, noise).
    branch_names : tuple of str
        Names of the arch branches, in the order of ``branch_centrelines_mm``.
    aorta_centreline_mm : (N, 3) array
        Aortic centreline inside the FOV, from 15 mm below the annulus (LVOT) through the root,
        ascending aorta and arch, down the descending aorta to the inferior FOV face, 1 mm apart.
    aorta_radius_mm : (N,) array
        Lumen radius along ``aorta_centreline_mm`` (equivalent radius in the LVOT/root).
    branch_centrelines_mm : tuple of (M, 3) arrays
        Centrelines of the arch branches from their origin on the aortic centreline to the
        superior FOV face.
    branch_radii_mm : tuple of float
        Branch radii.
    outlet_faces : dict
        Vessel name → FOV face it leaves through (``"inferior"`` or ``"superior"``).
    lv_centre_mm, lv_long_axis, lv_apex_mm : arrays
        LV cavity ellipsoid centre, unit long axis (base → apex), endocardial apex.
    lv_semi_axes_mm : (3,) float
        Semi-axes of the cavity ellipsoid (long, short, short).
    cusp_directions : dict
        Unit vectors from the annulus centre towards the three sinus lobes
        (``"non_coronary"``, ``"right_coronary"``, ``"left_coronary"``).
    calcium_nodules_mm : (K, 4) array
        Centres (x, y, z) and radii of the calcium spheres before clipping.
    coronary_ostia_mm : dict
        ``"left"``/``"right"`` → (3,) LPS point where the coronary centreline crosses the sinus
        wall (empty without ``coronary_arteries``).
    coronary_ostium_heights_mm : dict
        ``"left"``/``"right"`` → height of that point above the annulus plane (mm).
    coronary_centrelines_mm : dict
        ``"left"``/``"right"`` → (M, 3) coronary centreline from inside the sinus to its end.
    coronary_radius_mm : float
        Coronary lumen radius (0 without coronary arteries).
    """

    landmarks: AorticRootLandmarks
    parameters: PhantomParameters
    seed: int
    branch_names: tuple[str, ...] = BRANCH_NAMES
    aorta_centreline_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    aorta_radius_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    branch_centrelines_mm: tuple[np.ndarray, ...] = ()
    branch_radii_mm: tuple[float, ...] = ()
    outlet_faces: dict[str, str] = field(default_factory=dict)
    lv_centre_mm: np.ndarray = field(default_factory=lambda: np.zeros(3))
    lv_long_axis: np.ndarray = field(default_factory=lambda: np.zeros(3))
    lv_apex_mm: np.ndarray = field(default_factory=lambda: np.zeros(3))
    lv_semi_axes_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cusp_directions: dict[str, np.ndarray] = field(default_factory=dict)
    calcium_nodules_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    coronary_ostia_mm: dict[str, np.ndarray] = field(default_factory=dict)
    coronary_ostium_heights_mm: dict[str, float] = field(default_factory=dict)
    coronary_centrelines_mm: dict[str, np.ndarray] = field(default_factory=dict)
    coronary_radius_mm: float = 0.0


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic contrast CT with its labels and ground truth.

    Attributes
    ----------
    ct : Volume
        float32 CT values in HU (integers), axial, LPS mm.
    labels : LabelMap
        uint8 labels (:data:`cardiotwin.imaging.volume.LABELS`) at the voxel centres.
    truth : PhantomTruth
        Exact construction values.
    """

    ct: Volume
    labels: LabelMap
    truth: PhantomTruth


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _resample_polyline(points: np.ndarray, step: float) -> np.ndarray:
    """Resample a dense polyline at (almost) uniform arc-length steps."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(math.ceil(s[-1] / step)), 1)
    t = np.linspace(0.0, s[-1], n + 1)
    return np.stack([np.interp(t, s, points[:, d]) for d in range(3)], axis=1)


def _arc_length(points: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def _smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class _Grid:
    """Axis-aligned voxel grid (direction identity)."""

    origin: np.ndarray  # centre of voxel (0,0,0), LPS
    spacing: np.ndarray  # (di, dj, dk)
    shape: tuple[int, int, int]  # (nk, nj, ni)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Array slices (k, j, i) of the voxels whose centres may lie in [lo, hi]."""
        n = np.array(self.shape[::-1])
        i0 = np.maximum(np.floor((lo - self.origin) / self.spacing).astype(int), 0)
        i1 = np.minimum(np.ceil((hi - self.origin) / self.spacing).astype(int) + 1, n)
        if np.any(i1 <= i0):
            return None
        return (slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0]))

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable LPS coordinates (x[None,None,:], y[None,:,None], z[:,None,None])."""
        x = self.origin[0] + self.spacing[0] * np.arange(sl[2].start, sl[2].stop)
        y = self.origin[1] + self.spacing[1] * np.arange(sl[1].start, sl[1].stop)
        z = self.origin[2] + self.spacing[2] * np.arange(sl[0].start, sl[0].stop)
        return x[None, None, :], y[None, :, None], z[:, None, None]

    def points(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Voxel-centre coordinates ``(n, 3)`` of a box and the box shape ``(nk, nj, ni)``."""
        x, y, z = self.coords(sl)
        shp = (z.shape[0], y.shape[1], x.shape[2])
        return np.stack(np.broadcast_arrays(x, y, z), axis=-1).reshape(-1, 3), shp


class _Layout:
    """All deterministic geometry derived from the parameters (no voxels)."""

    def __init__(self, p: PhantomParameters) -> None:
        self.p = p
        self.A = np.asarray(p.annulus_centre_mm, dtype=float)
        tilt = math.radians(p.valve_axis_tilt_deg)
        az = math.radians(p.valve_axis_azimuth_deg)
        self.n = np.array(
            [math.sin(tilt) * math.cos(az), math.sin(tilt) * math.sin(az), math.cos(tilt)]
        )
        post = np.array([0.0, 1.0, 0.0])
        self.e1 = _unit(post - post.dot(self.n) * self.n)  # towards the non-coronary sinus
        self.e2 = np.cross(self.n, self.e1)
        # annulus ellipse: major semi-axis a along e2, minor b along e1
        r_eq = p.annulus_diameter_mm / 2
        self.ann_a = r_eq / math.sqrt(p.annulus_aspect_ratio)
        self.ann_b = r_eq * math.sqrt(p.annulus_aspect_ratio)
        self.r_lvot = p.lvot_diameter_mm / 2
        self.r_stj = p.stj_diameter_mm / 2
        self.h_stj = p.stj_height_mm
        self.r_orifice = math.sqrt(p.valve_orifice_area_mm2 / math.pi)
        # elliptical orifice: major semi-axis along e2 (the annulus major axis)
        self.or_a = self.r_orifice / math.sqrt(p.orifice_aspect_ratio)
        self.or_b = self.r_orifice * math.sqrt(p.orifice_aspect_ratio)
        self.h_orifice = p.valve_orifice_height_mm
        self.z_lvot_start = -(p.lvot_length_mm + 10.0)  # the LVOT tube reaches into the cavity
        self.leaflet_power = 1.6
        self.sinus_amp = self._solve_sinus_amplitude()
        # LV ellipsoid
        self.u = _LV_AXIS.copy()
        self.lv_a = p.lv_length_mm / 2
        self.lv_b = p.lv_diameter_mm / 2
        un = float(self.u.dot(self.n))
        if un > -0.2:
            raise InputError(
                f"valve axis tilt/azimuth give an LV axis almost perpendicular to the valve axis "
                f"(cos = {un:.2f}); use the default valve_axis_tilt_deg/azimuth"
            )
        # the cavity's highest point along the valve axis is the LVOT entry point E (so the LVOT is
        # a distinct tube from E up to the annulus and the LVOT tube dips 10 mm into the cavity)
        support = math.sqrt(self.lv_a**2 * un**2 + self.lv_b**2 * (1 - un**2))
        top = (self.lv_a**2 * un * self.u + self.lv_b**2 * (self.n - un * self.u)) / support
        self.lv_c = self.A - p.lvot_length_mm * self.n - top
        # aortic centreline after the STJ
        stj = self.A + self.h_stj * self.n
        ctrl = np.vstack([stj, self.A + _AORTA_CONTROL_MM])
        t = _arc_length(ctrl)
        spline = CubicSpline(t, ctrl, bc_type=((1, self.n), (2, np.zeros(3))))
        dense = spline(np.linspace(0.0, t[-1], int(t[-1] / 0.1) + 1))
        self.aorta_pts = _resample_polyline(dense, _SAMPLE_MM)
        s = _arc_length(self.aorta_pts)
        self.aorta_s = s
        # radius profile: STJ → ascending over 15 mm, constant up to the arch, taper across it
        s_ctrl = np.array(
            [
                np.argmin(np.linalg.norm(self.aorta_pts - (self.A + c), axis=1))
                for c in _AORTA_CONTROL_MM
            ]
        )
        s_arch0 = s[s_ctrl[1]]  # top of the ascending aorta
        s_arch1 = s[s_ctrl[5]]  # start of the descending aorta
        r_asc = p.ascending_diameter_mm / 2
        r_desc = p.descending_diameter_mm / 2
        self.aorta_r = (
            self.r_stj
            + (r_asc - self.r_stj) * _smoothstep(s / p.ascending_taper_mm)
            + (r_desc - r_asc) * _smoothstep((s - s_arch0) / (s_arch1 - s_arch0))
        )
        self.s_arch = (s_arch0, s_arch1)
        # branches
        self.branch_pts: list[np.ndarray] = []
        self.branch_r = [d / 2 for d in p.branch_diameters_mm]
        for frac, d0, far in _BRANCH_LAYOUT:
            s0 = s_arch0 + frac * (s_arch1 - s_arch0)
            p0 = self.aorta_pts[np.searchsorted(s, s0)]
            p1 = p0 + 35.0 * _unit(d0)
            p2 = p0 + far
            tt = np.linspace(0.0, 1.0, 4000)[:, None]
            bez = (1 - tt) ** 2 * p0 + 2 * (1 - tt) * tt * p1 + tt**2 * p2
            self.branch_pts.append(_resample_polyline(bez, _SAMPLE_MM))
        # vertebral body: posterior-right of the descending aorta
        desc_xy = self.A[:2] + _AORTA_CONTROL_MM[-3, :2]
        self.spine_c = desc_xy + np.array([-17.0, 34.0])
        self.spine_ax = (20.0, 16.0)
        self.fov_lo, self.fov_hi = self._fov()

    # ---- aortic root in cylindrical coordinates (z along n from the annulus centre) ----------

    def r_ellipse(self, th: np.ndarray) -> np.ndarray:
        a, b = self.ann_a, self.ann_b
        return a * b / np.sqrt((a * np.cos(th)) ** 2 + (b * np.sin(th)) ** 2)

    def _root_radius(self, th: np.ndarray, z: np.ndarray, amp: float) -> np.ndarray:
        """Lumen radius of the LVOT/root at angle ``th`` and height ``z`` above the annulus."""
        re = self.r_ellipse(th)
        h = self.h_stj
        zz = np.clip(z / h, 0.0, 1.0)
        lobe = 0.5 * (1.0 + np.cos(3.0 * th))
        above = re + (self.r_stj - re) * zz + amp * np.sin(np.pi * zz) * lobe
        below = self.r_lvot + (re - self.r_lvot) * _smoothstep((z + 6.0) / 4.0)
        return np.where(z < 0.0, below, above)

    def root_radius(self, th: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self._root_radius(th, z, self.sinus_amp)

    def _max_sinus_diameter(self, amp: float) -> tuple[float, float]:
        th = np.linspace(0.0, 2 * np.pi, 2048, endpoint=False)
        zs = np.linspace(0.0, self.h_stj, 381)
        r = self._root_radius(th[None, :], zs[:, None], amp)
        area = 0.5 * np.mean(r**2, axis=1) * 2 * np.pi
        k = int(np.argmax(area))
        return 2.0 * math.sqrt(area[k] / math.pi), float(zs[k])

    def _solve_sinus_amplitude(self) -> float:
        target = self.p.sinus_diameter_mm
        return brentq(lambda a: self._max_sinus_diameter(a)[0] - target, 0.0, 30.0, xtol=1e-6)

    def orifice_radius(self, th: np.ndarray) -> np.ndarray | float:
        """Radius of the (elliptical) valve orifice at angle ``th`` (the scalar when round)."""
        if self.p.orifice_aspect_ratio == 1.0:
            return self.r_orifice
        a, b = self.or_a, self.or_b
        return a * b / np.sqrt((a * np.cos(th)) ** 2 + (b * np.sin(th)) ** 2)

    def leaflet_profile(self, th: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Leaflet mid-surface height and vertical half thickness at (th, r)."""
        re = self.r_ellipse(th)
        width = re - self.orifice_radius(th)
        t = np.clip((re - r) / width, 0.0, 1.0)
        pw = self.leaflet_power
        zp = self.h_orifice * (1.0 - (1.0 - t) ** pw)
        dzdr = self.h_orifice * pw * (1.0 - t) ** (pw - 1.0) / width
        hv = 0.5 * self.p.leaflet_thickness_mm * np.sqrt(1.0 + dzdr**2)
        if self.p.valve_cusps == 2:
            # raphe of the fused right/left leaflet: a ridge along th = pi (direction -e1)
            d = r * np.abs(np.sin(th))
            ridge = np.where(np.cos(th) < 0.0, np.exp(-((d / 1.5) ** 2)), 0.0)
            hv = hv * (1.0 + 1.5 * ridge)
        return zp, hv

    def leaflet_point(self, th: float, t: float) -> np.ndarray:
        re = float(self.r_ellipse(np.array(th)))
        r = re - t * (re - float(self.orifice_radius(np.array(th))))
        z = self.h_orifice * (1.0 - (1.0 - t) ** self.leaflet_power)
        return self.A + z * self.n + r * (math.cos(th) * self.e1 + math.sin(th) * self.e2)

    def cyl(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        """Cylindrical coordinates (r, theta, height) about the valve axis."""
        d = [x - self.A[0], y - self.A[1], z - self.A[2]]
        h = d[0] * self.n[0] + d[1] * self.n[1] + d[2] * self.n[2]
        q1 = d[0] * self.e1[0] + d[1] * self.e1[1] + d[2] * self.e1[2]
        q2 = d[0] * self.e2[0] + d[1] * self.e2[1] + d[2] * self.e2[2]
        return np.hypot(q1, q2), np.arctan2(q2, q1), h

    def lv_q(self, x, y, z, extra: float = 0.0):
        """Ellipsoid function (≤ 1 inside) of the LV cavity grown by ``extra`` mm."""
        d0, d1, d2 = x - self.lv_c[0], y - self.lv_c[1], z - self.lv_c[2]
        along = d0 * self.u[0] + d1 * self.u[1] + d2 * self.u[2]
        perp2 = d0 * d0 + d1 * d1 + d2 * d2 - along * along
        return (along / (self.lv_a + extra)) ** 2 + perp2 / (self.lv_b + extra) ** 2

    def lv_bounds(self, extra: float) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.lv_a + extra, self.lv_b + extra
        half = np.sqrt(a**2 * self.u**2 + b**2 * (1 - self.u**2))
        return self.lv_c - half, self.lv_c + half

    # ---- field of view --------------------------------------------------------------------

    def _fov(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.p.fov_margin_mm
        lo, hi = self.lv_bounds(self.p.myocardium_thickness_mm)
        rr = 0.5 * self.p.sinus_diameter_mm
        lo = np.minimum(lo, self.A - rr)
        hi = np.maximum(hi, self.A + self.h_stj * self.n + rr)
        # the arch (everything of the aorta above the start of the descending part)
        arch = self.aorta_s <= self.s_arch[1]
        pts, r = self.aorta_pts[arch], self.aorta_r[arch][:, None]
        lo = np.minimum(lo, (pts - r).min(axis=0))
        hi = np.maximum(hi, (pts + r).max(axis=0))
        z_lo, z_hi = lo[2] - m, hi[2] + m
        # x/y extent: every vessel inside the z range
        for pts, r in [(self.aorta_pts, self.aorta_r)] + [
            (b, np.full(len(b), rb)) for b, rb in zip(self.branch_pts, self.branch_r, strict=True)
        ]:
            inside = (pts[:, 2] >= z_lo) & (pts[:, 2] <= z_hi)
            lo[:2] = np.minimum(lo[:2], (pts[inside, :2] - r[inside, None]).min(axis=0))
            hi[:2] = np.maximum(hi[:2], (pts[inside, :2] + r[inside, None]).max(axis=0))
        lo, hi = lo - m, hi + m
        hi[1] = max(hi[1], self.spine_c[1] + 4.0)  # show the front of the vertebral body
        lo[2], hi[2] = z_lo, z_hi
        ext = np.asarray(self.p.fov_extend_mm, dtype=float)
        lo = lo - ext[0::2]
        hi = hi + ext[1::2]
        return lo, hi


def _tube_mask(
    grid: _Grid, pts: np.ndarray, radii: np.ndarray, out: np.ndarray, *, chunk_mm: float = 30.0
) -> None:
    """OR into ``out`` the voxels within ``radii`` of a sampled centreline (end caps excluded).

    The tube is the union of the balls swept along the samples; the first and last sample are
    not used so a tube ends flat at its end points (where it joins another structure or
    leaves the FOV).
    """
    tree = cKDTree(pts)
    rmax = float(radii.max())
    step = max(int(chunk_mm / _SAMPLE_MM), 2)
    for i0 in range(0, len(pts), step):
        seg = pts[i0 : i0 + step + 1]
        sl = grid.box(seg.min(axis=0) - rmax - 1.0, seg.max(axis=0) + rmax + 1.0)
        if sl is None:
            continue
        xyz, shp = grid.points(sl)
        sub = out[sl]
        todo = ~sub.reshape(-1)
        if not todo.any():
            continue
        d, idx = tree.query(xyz[todo], distance_upper_bound=rmax + 0.5)
        ok = np.isfinite(d) & (idx > 0) & (idx < len(pts) - 1)
        hit = np.zeros(len(d), dtype=bool)
        hit[ok] = d[ok] <= radii[idx[ok]]
        flat = sub.reshape(-1)
        flat[np.flatnonzero(todo)[hit]] = True
        out[sl] = flat.reshape(shp)


# --------------------------------------------------------------------------------------------
# realism options: neighbouring blood pools, body, streaks (all off by default)
# --------------------------------------------------------------------------------------------


def _polyline(*points_mm: np.ndarray) -> np.ndarray:
    """A straight-segment polyline through ``points_mm`` sampled every ``_SAMPLE_MM``."""
    pts = np.asarray(points_mm, dtype=float)
    dense = np.vstack(
        [np.linspace(a, b, max(int(np.linalg.norm(b - a) / 0.1), 2)) for a, b in zip(pts[:-1], pts[1:], strict=True)]
    )
    return _resample_polyline(dense, _SAMPLE_MM)


def _ellipsoid(grid: _Grid, centre: np.ndarray, semi_axes: tuple[float, float, float]) -> np.ndarray:
    """Mask of an axis-aligned ellipsoid (LPS mm)."""
    out = np.zeros(grid.shape, dtype=bool)
    ax = np.asarray(semi_axes, dtype=float)
    sl = grid.box(centre - ax, centre + ax)
    if sl is None:
        return out
    x, y, z = grid.coords(sl)
    q = ((x - centre[0]) / ax[0]) ** 2 + ((y - centre[1]) / ax[1]) ** 2 + ((z - centre[2]) / ax[2]) ** 2
    out[sl] = q <= 1.0
    return out


def _neighbour_pools(L: _Layout, grid: _Grid, labels: np.ndarray
                     ) -> list[tuple[np.ndarray, float, str]]:
    """Masks, CT values and label names of LA, right heart, pulmonary arteries, SVC and IVC.

    Positions are relative to the annulus centre ``A`` (LPS): the LA posterior to the aortic root,
    the right atrium and ventricle right-anterior of the LV, the pulmonary trunk anterior-left of
    the root bifurcating under the arch, the SVC right of the ascending aorta and the IVC entering
    the right atrium from below. Every pool is clipped to background voxels at least
    ``neighbour_gap_mm`` from the LV/aortic blood, valve and calcium (the vessel walls). The
    names are keys of :data:`NEIGHBOUR_LABELS` (RA, RV, trunk and pulmonary arteries are
    ``right_heart``; the caval veins outside the RA are ``svc`` and ``ivc``).
    """
    p, A = L.p, L.A
    blood_hu = p.blood_hu
    la_hu = blood_hu if p.left_atrium_hu is None else p.left_atrium_hu
    rh_hu = blood_hu if p.right_heart_hu is None else p.right_heart_hu
    svc_hu = blood_hu if p.svc_hu is None else p.svc_hu
    ivc_hu = p.tissue_hu if p.ivc_hu is None else p.ivc_hu
    spacing = grid.spacing[::-1]
    left_blood = labels > 0
    left_blood &= labels != LABELS["myocardium"]
    free = ndimage.distance_transform_edt(~left_blood, sampling=spacing) > p.neighbour_gap_mm
    free &= labels == 0
    z_lo = L.fov_lo[2] - 20.0
    z_hi = L.fov_hi[2] + 20.0

    def tube(points: list[np.ndarray], radius: float) -> np.ndarray:
        m = np.zeros(grid.shape, dtype=bool)
        pts = _polyline(*points)
        _tube_mask(grid, pts, np.full(len(pts), radius), m)
        return m

    ra = _ellipsoid(grid, A + np.array([-48.0, -2.0, -28.0]), (22.0, 22.0, 26.0))
    rv = _ellipsoid(grid, L.lv_c + np.array([-32.0, -24.0, 8.0]), (30.0, 16.0, 34.0))
    bif = A + np.array([15.0, 5.0, 50.0])
    trunk = tube([A + np.array([24.0, -34.0, -8.0]), A + np.array([22.0, -18.0, 32.0]), bif], 13.0)
    lpa = tube([bif, A + np.array([45.0, 30.0, 55.0]), A + np.array([90.0, 45.0, 45.0])], 9.5)
    rpa = tube([bif, A + np.array([-20.0, 16.0, 46.0]), A + np.array([-80.0, 22.0, 40.0])], 9.5)
    svc = tube([A + np.array([-44.0, 2.0, -10.0]), A + np.array([-44.0, 4.0, z_hi - A[2]])], 9.0)
    ivc = tube([A + np.array([-38.0, 30.0, z_lo - A[2]]), A + np.array([-42.0, 10.0, -35.0])], 11.0)
    la = _ellipsoid(grid, A + np.array([8.0, 38.0, -4.0]), (28.0, 17.0, 22.0))
    pools = [
        (ra | rv | trunk | lpa | rpa, rh_hu, "right_heart"),
        (ivc & ~ra, ivc_hu, "ivc"),
        (svc & ~ra, svc_hu, "svc"),
        (la, la_hu, "la"),
    ]
    taken = np.zeros(grid.shape, dtype=bool)
    out = []
    for mask, value, name in pools:
        m = mask & free & ~taken
        taken |= m
        out.append((m, float(value), name))
    return out


def _body_frame(L: _Layout) -> tuple[np.ndarray, float, float, float]:
    """Body outline ellipse centre (x, y), semi-axes (lateral, antero-posterior), diaphragm z."""
    centre = np.array([L.spine_c[0], L.spine_c[1] - 60.0])
    lo, _ = L.lv_bounds(L.p.myocardium_thickness_mm)
    return centre, 170.0, 125.0, float(lo[2]) - 5.0


def _paint_body_inside(L: _Layout, grid: _Grid, hu: np.ndarray) -> None:
    """Air outside the body outline, upper-abdominal organs and kidneys below the diaphragm."""
    p = L.p
    c, a, b, z_d = _body_frame(L)
    x, y, z = grid.coords(tuple(slice(0, s) for s in grid.shape))
    rho = np.sqrt(((x - c[0]) / a) ** 2 + ((y - c[1]) / b) ** 2)
    hu[np.broadcast_to(rho > 1.0, hu.shape)] = -1000.0
    abdomen = (rho <= 1.0) & (z < z_d)
    hu[abdomen] = p.abdomen_hu
    for side in (-1.0, 1.0):
        kc = np.array([L.spine_c[0] + side * 62.0, L.spine_c[1] - 2.0, z_d - 85.0])
        kidney = _ellipsoid(grid, kc, (26.0, 20.0, 55.0)) & abdomen
        hu[kidney] = p.kidney_hu


def _paint_body_wall(L: _Layout, grid: _Grid, hu: np.ndarray) -> None:
    """Chest/abdominal wall (subcutaneous fat, muscle), ribs every 25 mm and the sternum."""
    p = L.p
    c, a, b, z_d = _body_frame(L)
    x, y, z = grid.coords(tuple(slice(0, s) for s in grid.shape))
    dx, dy = x - c[0], y - c[1]
    rho = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
    depth = (1.0 - rho) * b  # approximate depth below the skin, mm
    shape = hu.shape
    wall = (rho <= 1.0) & (depth <= 22.0)
    hu[np.broadcast_to(wall, shape)] = p.tissue_hu + 10.0
    hu[np.broadcast_to(wall & (depth <= 8.0), shape)] = p.fat_hu
    ang = np.degrees(np.arctan2(dx, -dy))  # 0 = anterior
    rib_ring = (np.abs(depth - 27.0) <= 4.0) & (np.abs(ang) > 25.0) & (np.abs(ang) < 165.0)
    rib_z = ((z - L.A[2]) % 25.0) < 10.0
    hu[np.broadcast_to(rib_ring, shape) & np.broadcast_to(rib_z, shape)] = p.bone_hu
    sternum = (((dx / 16.0) ** 2 + ((depth - 28.0) / 6.0) ** 2) <= 1.0) & (np.abs(ang) < 30.0)
    hu[np.broadcast_to(sternum, shape) & np.broadcast_to(z >= z_d, shape)] = p.bone_hu


def _add_streaks(L: _Layout, grid: _Grid, hu: np.ndarray, rng: np.random.Generator) -> None:
    """Alternating bright/dark lines through a dense source in the axial slices (beam hardening).

    The line angles are drawn anew every 4 mm of z.

    The source is the superior vena cava (undiluted contrast) over its height when
    ``neighbours`` is set, otherwise the annulus centre over ±30 mm.
    """
    p = L.p
    if p.neighbours:
        src = L.A[:2] + np.array([-44.0, 3.0])
        z0, z1 = L.A[2] - 10.0, L.fov_hi[2]
    else:
        src = L.A[:2]
        z0, z1 = L.A[2] - 30.0, L.A[2] + 30.0
    sl = grid.box(np.array([L.fov_lo[0], L.fov_lo[1], z0]), np.array([L.fov_hi[0], L.fov_hi[1], z1]))
    if sl is None:
        return
    x, y, z = grid.coords(sl)
    dx, dy = x[0] - src[0], y[0] - src[1]
    r = np.hypot(dx, dy)
    decay = np.exp(-r / 120.0)
    # new random angles every 4 mm of z (the streaks change with the projection set of a slice)
    slab = np.floor((z[:, 0, 0] - z0) / 4.0).astype(int)
    sub = hu[sl]
    for b in np.unique(slab):
        pattern = np.zeros(np.broadcast_shapes(dx.shape, dy.shape), dtype=np.float32)
        for k in range(int(p.n_streaks)):
            th = rng.uniform(0.0, np.pi)
            d_perp = np.abs(-np.sin(th) * dx + np.cos(th) * dy)
            sign = 1.0 if k % 2 == 0 else -1.0
            pattern += sign * np.exp(-((d_perp / 1.2) ** 2)) * decay
        sub[slab == b] += (p.streak_hu * pattern)[None, :, :]
    hu[sl] = sub


# --------------------------------------------------------------------------------------------
# coronary arteries (off by default)
# --------------------------------------------------------------------------------------------

#: Sinus lobe (angle about the valve axis from ``e1``, degrees) each coronary leaves from and the
#: way it turns in the atrioventricular groove (+1 / -1 = increasing / decreasing angle). The
#: lobes are those of :class:`PhantomTruth`'s ``cusp_directions``.
_CORONARY_LAYOUT = {"left": (240.0, 1.0), "right": (120.0, -1.0)}


def _paint_coronary_arteries(
    L: _Layout, grid: _Grid, labels: np.ndarray
) -> dict[str, tuple[np.ndarray, float, np.ndarray]]:
    """Paint the left and right coronary arteries (label ``aorta``) and return their geometry.

    Each artery is a tube of ``coronary_diameter_mm`` whose centreline starts 2 mm inside the
    lumen at the centre of its sinus lobe (left- / right-coronary cusp) at the ostium height
    ``coronary_ostium_heights_mm`` above the annulus, leaves the sinus wall *horizontally*
    (perpendicular to the valve axis, so the ostium height is exact) for 6 mm, then runs ~30 mm
    round the aortic root in the atrioventricular groove (7 mm outside the widest sinus)
    descending to 3 mm above the annulus plane, where it ends. It stays above the myocardium
    (which ends 2 mm below the annulus plane) and inside the field of view. The coronaries are
    labelled ``aorta``: a lumen segmentation grows into them from the sinus, and a measurement
    finds them as thin side branches of the aortic lumen. Only background voxels are painted.

    Returns
    -------
    dict
        ``name → (ostium point (3,), ostium height, centreline (M, 3))`` (LPS mm).
    """
    p = L.p
    r_cor = 0.5 * p.coronary_diameter_mm
    r_groove = 0.5 * p.sinus_diameter_mm + 7.0
    out: dict[str, tuple[np.ndarray, float, np.ndarray]] = {}
    heights = dict(zip(("left", "right"), p.coronary_ostium_heights_mm, strict=True))
    for name, (ang, turn) in _CORONARY_LAYOUT.items():
        h = heights[name]
        th = math.radians(ang)
        d = math.cos(th) * L.e1 + math.sin(th) * L.e2
        r_wall = float(L.root_radius(np.array([th]), np.array([h]))[0])
        base = L.A + h * L.n
        ostium = base + r_wall * d
        pts = [base + (r_wall - 2.0) * d, ostium, base + (r_wall + 6.0) * d]
        for t in np.linspace(0.0, 1.0, 16):
            a = th + turn * math.radians(75.0) * t
            hh = h + (3.0 - h) * _smoothstep(t)
            pts.append(L.A + hh * L.n + r_groove * (math.cos(a) * L.e1 + math.sin(a) * L.e2))
        cl = _polyline(*pts)
        inside = np.all((cl >= L.fov_lo + r_cor) & (cl <= L.fov_hi - r_cor), axis=1)
        if not inside.all():
            cl = cl[: int(np.argmin(inside))]  # end inside the field of view
        m = np.zeros(grid.shape, dtype=bool)
        _tube_mask(grid, cl, np.full(len(cl), r_cor), m)
        labels[m & (labels == 0)] = LABELS["aorta"]
        out[name] = (ostium, float(h), cl)
    return out


def _coronary_truth(
    p: PhantomParameters, coronaries: dict[str, tuple[np.ndarray, float, np.ndarray]] | None
) -> dict[str, object]:
    """The :class:`PhantomTruth` fields of the coronary arteries (empty ones without them)."""
    if not coronaries:
        return {}
    return {
        "coronary_ostia_mm": {k: v[0].copy() for k, v in coronaries.items()},
        "coronary_ostium_heights_mm": {k: v[1] for k, v in coronaries.items()},
        "coronary_centrelines_mm": {k: v[2].copy() for k, v in coronaries.items()},
        "coronary_radius_mm": 0.5 * p.coronary_diameter_mm,
    }


# --------------------------------------------------------------------------------------------
# pathologies: annular/LVOT calcium, aortic dissection (off by default)
# --------------------------------------------------------------------------------------------


def _annulus_nodules(L: _Layout, volume_mm3: float, rng: np.random.Generator) -> np.ndarray:
    """Calcium spheres ``(K, 4)`` on the annulus and the LVOT wall (6 mm below to 0.5 mm above
    the annulus), centred within 1 mm of the lumen edge so they protrude into the lumen."""
    out: list[np.ndarray] = []
    vol = 0.0
    while vol < volume_mm3:
        rad = rng.uniform(*L.p.calcium_nodule_radius_mm)
        th = rng.uniform(0.0, 2 * np.pi)
        hh = rng.uniform(-6.0, 0.5)
        rr = float(L.root_radius(np.array(th), np.array(hh))) + rng.uniform(-1.0, 1.0)
        c = L.A + hh * L.n + rr * (math.cos(th) * L.e1 + math.sin(th) * L.e2)
        out.append(np.array([*c, rad]))
        vol += 4.0 / 3.0 * math.pi * rad**3
    return np.array(out).reshape(-1, 4)


def _dissection(
    L: _Layout, grid: _Grid, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the intimal flap and of the false lumen inside the aorta label.

    The flap is a slab ``flap_thickness_mm`` thick, parallel to the local centreline tangent,
    offset from the centreline by a quarter of the radius (the false lumen is the larger part)
    and turning slowly about the centreline (half a turn over 250 mm, a spiral as in real
    dissections). It starts at the entry tear (its proximal edge) and runs to the FOV face.
    """
    p = L.p
    pts, s, rad = L.aorta_pts, L.aorta_s, L.aorta_r
    if p.dissection == "stanford_a":
        s0 = p.dissection_start_mm
    else:  # Stanford B: distal to the left subclavian artery
        s0 = L.s_arch[0] + _BRANCH_LAYOUT[2][0] * (L.s_arch[1] - L.s_arch[0]) + 15.0
    # rotation-minimising frame (u1, u2) along the centreline
    tan = np.gradient(pts, axis=0)
    tan /= np.linalg.norm(tan, axis=1)[:, None]
    u1 = np.zeros_like(pts)
    v = _unit(np.cross(tan[0], [1.0, 0.0, 0.0]))
    for i in range(len(pts)):
        v = _unit(v - v.dot(tan[i]) * tan[i])
        u1[i] = v
    u2 = np.cross(tan, u1)
    phi = rng.uniform(0.0, 2 * np.pi) + np.pi * (s - s0) / 250.0
    m = np.cos(phi)[:, None] * u1 + np.sin(phi)[:, None] * u2
    offset = -0.25 * rad
    aorta = labels == LABELS["aorta"]
    idx = np.argwhere(aorta)
    xyz = grid.origin + idx[:, ::-1] * grid.spacing
    _, near = cKDTree(pts).query(xyz)
    d = np.einsum("ij,ij->i", xyz - pts[near], m[near]) - offset[near]
    in_range = s[near] >= s0
    half = 0.5 * p.flap_thickness_mm
    flap = np.zeros(labels.shape, dtype=bool)
    false_lumen = np.zeros(labels.shape, dtype=bool)
    sel = idx[in_range & (np.abs(d) <= half)]
    flap[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    sel = idx[in_range & (d > half)]
    false_lumen[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    return flap, false_lumen


def make_phantom(params: PhantomParameters | None = None, *, seed: int = 0) -> Phantom:
    """Build the contrast-CT phantom with its labels and exact ground truth.

    Parameters
    ----------
    params : PhantomParameters, optional
        Anatomy, CT values and image formation; defaults to :class:`PhantomParameters()`
        (1 mm isotropic, 23 mm annulus, 0.8 cm² calcified stenotic valve).
    seed : int
        Seed of the calcium placement and the noise; the same seed gives identical arrays.

    Returns
    -------
    Phantom
        ``ct`` (float32 HU), ``labels`` (uint8, :data:`LABELS`) and ``truth``.

    Raises
    ------
    InputError
        If a parameter is out of range (raised by :class:`PhantomParameters`) or ``seed`` is
        negative.
    """
    p = params if params is not None else PhantomParameters()
    if not isinstance(p, PhantomParameters):
        raise InputError(f"params must be a PhantomParameters; got {type(p).__name__}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")
    t_start = time.perf_counter()
    L = _Layout(p)
    spacing = np.asarray(p.spacing_mm, dtype=float)
    n_vox = np.maximum(np.ceil((L.fov_hi - L.fov_lo) / spacing).astype(int), 1)
    origin = L.fov_lo + 0.5 * spacing
    shape = (int(n_vox[2]), int(n_vox[1]), int(n_vox[0]))
    grid = _Grid(origin, spacing, shape)
    labels = np.zeros(shape, dtype=np.uint8)
    lab = LABELS

    # ---- LV cavity and myocardium -----------------------------------------------------------
    T = p.myocardium_thickness_mm
    lo, hi = L.lv_bounds(T)
    sl = grid.box(lo, hi)
    x, y, z = grid.coords(sl)
    q_in = L.lv_q(x, y, z)
    q_out = L.lv_q(x, y, z, T)
    _, _, h = L.cyl(x, y, z)
    sub = labels[sl]
    sub[(q_out <= 1.0) & (h <= -2.0)] = lab["myocardium"]
    sub[q_in <= 1.0] = lab["lv_blood"]

    # ---- arch branches (the aorta overrides them where they overlap) ----------------------------
    for pts, rb in zip(L.branch_pts, L.branch_r, strict=True):
        m = np.zeros(shape, dtype=bool)
        _tube_mask(grid, pts, np.full(len(pts), rb), m)
        labels[m] = lab["branches"]

    # ---- aorta tube after the STJ ---------------------------------------------------------
    m = np.zeros(shape, dtype=bool)
    _tube_mask(grid, L.aorta_pts, L.aorta_r, m)
    labels[m] = lab["aorta"]

    # ---- LVOT, root, valve, calcium (cylindrical coordinates about the valve axis) -----------------
    rmax = 0.5 * p.sinus_diameter_mm + 1.0
    corners = np.array(
        [
            L.A + hh * L.n + s1 * rmax * L.e1 + s2 * rmax * L.e2
            for hh in (L.z_lvot_start, L.h_stj + 2.0)
            for s1 in (-1, 1)
            for s2 in (-1, 1)
        ]
    )
    sl = grid.box(corners.min(axis=0), corners.max(axis=0))
    x, y, z = grid.coords(sl)
    r, th, h = L.cyl(x, y, z)
    R = L.root_radius(th, h)
    R = np.where(h > L.h_stj, L.r_stj, R)
    in_root = (r <= R) & (h >= L.z_lvot_start) & (h <= L.h_stj + 2.0)
    sub = labels[sl]
    sub[in_root & (h < 0.0)] = lab["lv_blood"]
    sub[in_root & (h >= 0.0)] = lab["aorta"]
    lumen = (sub == lab["aorta"]) | (sub == lab["lv_blood"])
    zp, hv = L.leaflet_profile(th, r)
    r_or = L.orifice_radius(th)
    valve = lumen & (np.abs(h - zp) <= hv) & (h >= 0.0) & (r >= r_or)
    sub[valve] = lab["valve"]

    # calcium nodules: spheres centred on the leaflet mid-surface, away from the free edge
    rng_ca = np.random.default_rng([int(seed), 1])
    nodules: list[np.ndarray] = []
    vol = 0.0
    v_leaflets = p.calcium_volume_mm3 * (1.0 - p.annulus_calcium_fraction)
    while vol < v_leaflets:
        rad = rng_ca.uniform(*p.calcium_nodule_radius_mm)
        ang = rng_ca.uniform(0.0, 2 * np.pi)
        if p.valve_cusps == 2 and rng_ca.uniform() < 0.4:  # the raphe calcifies
            ang = math.pi + rng_ca.uniform(-0.08, 0.08)
        c = L.leaflet_point(ang, rng_ca.uniform(0.05, 0.7))
        nodules.append(np.array([*c, rad]))
        vol += 4.0 / 3.0 * math.pi * rad**3
    nod = np.array(nodules).reshape(-1, 4)
    calc = np.zeros(sub.shape, dtype=bool)
    for cx, cy, cz, rad in nod:
        calc |= (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= rad**2
    calc &= (lumen | valve) & (h >= 0.0) & (r >= r_or + 0.5)
    if p.annulus_calcium_fraction > 0:
        ann_nod = _annulus_nodules(L, p.calcium_volume_mm3 * p.annulus_calcium_fraction, rng_ca)
        for cx, cy, cz, rad in ann_nod:
            calc |= (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= rad**2
        nod = np.vstack([nod, ann_nod])
    sub[calc] = lab["calcium"]
    labels[sl] = sub
    coronaries = _paint_coronary_arteries(L, grid, labels) if p.coronary_arteries else None

    # ---- aortic dissection: intimal flap (background) between a true and a false lumen ----------
    flap = false_lumen = None
    if p.dissection != "none":
        flap, false_lumen = _dissection(L, grid, labels, np.random.default_rng([int(seed), 4]))
        labels[flap] = 0

    # ---- neighbouring blood pools (labelled after the CT values are painted) ------------------
    pools = _neighbour_pools(L, grid, labels) if p.neighbours else []

    # ---- surroundings and CT values ------------------------------------------------------------
    hu = np.full(shape, p.lung_hu, dtype=np.float32)
    if p.body:
        _paint_body_inside(L, grid, hu)
    structures = labels > 0
    for mask, *_ in pools:
        structures |= mask
    f = 2  # distances on a 2× coarser grid are plenty for fat boundaries
    dist = ndimage.distance_transform_edt(~structures[::f, ::f, ::f], sampling=f * spacing[::-1])
    kk, jj, ii = (np.arange(s) // f for s in shape)
    dist = dist[kk[:, None, None], jj[None, :, None], ii[None, None, :]]
    hu[dist <= 12.0] = p.fat_hu
    x, y, z = grid.coords(tuple(slice(0, s) for s in shape))
    ax, ay = L.spine_ax
    qs = ((x - L.spine_c[0]) / ax) ** 2 + ((y - L.spine_c[1]) / ay) ** 2
    hu[np.broadcast_to(qs <= 1.6, shape)] = p.tissue_hu  # paravertebral soft tissue
    disc = np.abs(((z - L.A[2]) % 30.0) - 15.0) <= 3.0  # 6 mm discs every 30 mm
    bone_val = np.where(disc, p.tissue_hu + 40.0, p.bone_hu).astype(np.float32)
    bone = np.broadcast_to(qs <= 1.0, shape)
    hu[bone] = np.broadcast_to(bone_val, shape)[bone]
    if p.body:
        _paint_body_wall(L, grid, hu)
    for mask, value, _ in pools:
        hu[mask] = value
    blood = (labels == lab["lv_blood"]) | (labels == lab["aorta"]) | (labels == lab["branches"])
    hu[blood] = p.blood_hu
    if flap is not None:
        hu[false_lumen] = p.blood_hu if p.false_lumen_hu is None else p.false_lumen_hu
        hu[flap] = p.tissue_hu
    hu[labels == lab["myocardium"]] = p.myocardium_hu
    hu[labels == lab["valve"]] = p.valve_hu
    hu[labels == lab["calcium"]] = p.calcium_hu
    if p.blur_sigma_mm > 0:
        hu = ndimage.gaussian_filter(hu, sigma=p.blur_sigma_mm / spacing[::-1], mode="nearest")
    if p.streak_hu > 0 and p.n_streaks > 0:
        _add_streaks(L, grid, hu, np.random.default_rng([int(seed), 3]))
    if p.noise_hu > 0:
        rng_noise = np.random.default_rng([int(seed), 2])
        hu += p.noise_hu * rng_noise.standard_normal(shape, dtype=np.float32)
    hu = np.rint(hu).astype(np.float32)
    for mask, _, name in pools:
        labels[mask] = NEIGHBOUR_LABELS[name]

    # ---- truth ---------------------------------------------------------------------------
    meta = {"modality": "CT", "description": "cardiotwin CT phantom", "seed": int(seed)}
    ct = Volume(hu, tuple(spacing), tuple(origin), np.eye(3), meta)
    label_vol = Volume(
        labels,
        tuple(spacing),
        tuple(origin),
        np.eye(3),
        {"description": "cardiotwin CT phantom ground-truth labels"},
    )
    label_names = {**LABELS, **NEIGHBOUR_LABELS} if p.neighbours else dict(LABELS)
    truth = _truth(L, p, seed, grid, labels, nod, coronaries=coronaries)
    log.info(
        "phantom %s voxels at %s mm built in %.2f s",
        shape,
        tuple(spacing),
        time.perf_counter() - t_start,
    )
    return Phantom(ct=ct, labels=LabelMap(label_vol, label_names), truth=truth)


def _truth(
    L: _Layout,
    p: PhantomParameters,
    seed: int,
    grid: _Grid,
    labels: np.ndarray,
    nodules: np.ndarray,
    *,
    coronaries: dict[str, tuple[np.ndarray, float, np.ndarray]] | None = None,
) -> PhantomTruth:
    a, b = L.ann_a, L.ann_b
    th = np.linspace(0.0, 2 * np.pi, 20001)
    re = L.r_ellipse(th)
    pts2 = np.stack([re * np.cos(th), re * np.sin(th)], axis=1)
    perimeter = float(np.linalg.norm(np.diff(pts2, axis=0), axis=1).sum())
    area = math.pi * a * b
    sinus_d, _ = L._max_sinus_diameter(L.sinus_amp)
    z_lo, z_hi = L.fov_lo[2], L.fov_hi[2]
    # aortic centreline: LVOT (15 mm below the annulus) → root → aorta, clipped to the FOV
    root = L.A + np.linspace(-15.0, L.h_stj, 200)[:, None] * L.n
    r_root = np.full(len(root), np.nan)
    hh = np.linspace(-15.0, L.h_stj, 200)
    thq = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
    for i, hq in enumerate(hh):
        rq = L.root_radius(thq, np.full_like(thq, hq))
        r_root[i] = math.sqrt(np.mean(rq**2))  # equivalent radius sqrt(A/π)
    pts = np.vstack([root, L.aorta_pts[1:]])
    rad = np.concatenate([r_root, L.aorta_r[1:]])
    inside = np.flatnonzero((pts[:, 2] >= z_lo) & (pts[:, 2] <= z_hi))
    last = inside[-1]
    # keep the first run (the descending aorta leaves at the bottom and never comes back)
    below = np.flatnonzero(pts[:, 2] < z_lo)
    if below.size:
        last = below[0] - 1
    s = _arc_length(pts[: last + 1])
    n_out = max(int(math.ceil(s[-1])), 1) + 1
    t = np.linspace(0.0, s[-1], n_out)
    cl = np.stack([np.interp(t, s, pts[: last + 1, d]) for d in range(3)], axis=1)
    cl_r = np.interp(t, s, rad[: last + 1])
    branches = []
    for bp in L.branch_pts:
        keep = bp[bp[:, 2] <= z_hi]
        branches.append(_resample_polyline(keep, 1.0))
    calcium_mm3 = float((labels == LABELS["calcium"]).sum()) * float(np.prod(grid.spacing))
    lm = AorticRootLandmarks(
        annulus_centre_mm=tuple(float(v) for v in L.A),
        annulus_normal=tuple(float(v) for v in L.n),
        annulus_area_mm2=area,
        annulus_perimeter_mm=perimeter,
        annulus_diameter_mm=2.0 * math.sqrt(area / math.pi),
        annulus_perimeter_diameter_mm=perimeter / math.pi,
        annulus_min_diameter_mm=2.0 * b,
        annulus_max_diameter_mm=2.0 * a,
        lvot_diameter_mm=2.0 * L.r_lvot,
        sinus_diameter_mm=sinus_d,
        valve_orifice_area_mm2=math.pi * L.r_orifice**2,
        valve_orifice_centre_mm=tuple(float(v) for v in L.A + L.h_orifice * L.n),
        valve_orifice_height_mm=L.h_orifice,
        calcium_volume_mm3=calcium_mm3,
        centreline_mm=cl,
    )
    cusps = {}
    for name, ang in (("non_coronary", 0.0), ("right_coronary", 120.0), ("left_coronary", 240.0)):
        tr = math.radians(ang)
        cusps[name] = math.cos(tr) * L.e1 + math.sin(tr) * L.e2
    faces = {"descending_aorta": "inferior", **{nm: "superior" for nm in BRANCH_NAMES}}
    return PhantomTruth(
        landmarks=lm,
        parameters=p,
        seed=int(seed),
        branch_names=BRANCH_NAMES,
        aorta_centreline_mm=cl,
        aorta_radius_mm=cl_r,
        branch_centrelines_mm=tuple(branches),
        branch_radii_mm=tuple(L.branch_r),
        outlet_faces=faces,
        lv_centre_mm=L.lv_c.copy(),
        lv_long_axis=L.u.copy(),
        lv_apex_mm=L.lv_c + L.lv_a * L.u,
        lv_semi_axes_mm=(L.lv_a, L.lv_b, L.lv_b),
        cusp_directions=cusps,
        calcium_nodules_mm=nodules,
        **_coronary_truth(p, coronaries),
    )


#: Named phantom variants of :func:`variant_parameters`.
VARIANTS: tuple[str, ...] = ("default", "hard", "dilated", "bicuspid", "dissection", "heavy_calcium")

#: The pathology variants: each is the ``"hard"`` draw of the same seed plus its pathology.
PATHOLOGY_VARIANTS: tuple[str, ...] = ("dilated", "bicuspid", "dissection", "heavy_calcium")


def variant_parameters(name: str, *, seed: int = 0, **overrides: object) -> PhantomParameters:
    """Parameters of a named phantom variant, drawn from ``seed``.

    Parameters
    ----------
    name : {"default", "hard", "dilated", "bicuspid", "dissection", "heavy_calcium"}
        ``"default"``: :class:`PhantomParameters()` (the demo sample). ``"hard"``: as hard as a
        real chest CT angiogram — contrast ``blood_hu`` drawn in 200–700 HU, myocardium
        50 HU + 0.15 × blood ± 10 HU (it enhances with the blood), noise 15–30 HU,
        point-spread σ 0.5–1.0 mm, bone 700–1200 HU, neighbouring
        blood pools (LA at 0.9–1.05 × blood, right heart at 0.4–1.2 × blood, SVC with dense
        contrast at 0.8–3 × blood, IVC 60–160 HU), a body with chest wall, ribs, sternum, liver
        (80–130 HU) and kidneys (150–300 HU), streaks of 40–150 HU, and a field of view extended
        100–160 mm into the abdomen and 20–60 mm to the right, so the heart is high and
        off-centre.

        The pathology variants are the ``"hard"`` draw of the same seed plus (drawn from the
        seed; ranges and sources in docs/validation.md, "Phantom variants"):

        * ``"dilated"``: ascending aortic aneurysm, 45–55 mm (55 mm: the surgical threshold of
          Erbel R et al., 2014 ESC Guidelines on aortic diseases, Eur Heart J
          2014;35:2873–2926), STJ 32–38 mm, sinus 4–7 mm wider, a 30–40 mm taper.
        * ``"bicuspid"``: Sievers type 1 bicuspid valve (right–left fusion with a raphe;
          Sievers HH, Schmidtke C, J Thorac Cardiovasc Surg 2007;133:1226–33), a fish-mouth
          orifice (aspect 0.3–0.5, 60–120 mm²), a larger and more elliptical annulus
          (25–29 mm, aspect 0.65–0.78) and a mildly dilated ascending aorta (34–42 mm).
        * ``"dissection"``: an intimal flap 1–2 mm thick, Stanford A (from 5–20 mm above the
          STJ) or B (distal to the left subclavian artery), the false lumen at 0.7–1.0 × the
          blood contrast.
        * ``"heavy_calcium"``: 600–1600 mm³ of nominal calcium (about 500–1500 mm³ once
          clipped to the valve and wall), nodules of 2–3.5 mm radius, 15–30 % of it on the
          annulus and the LVOT wall.
    seed : int, keyword-only
        Seed of the drawn parameters (pass the same seed to :func:`make_phantom` for the noise).
    **overrides
        Fields of :class:`PhantomParameters` that replace the drawn values (e.g. ``blood_hu``,
        ``spacing_mm``).

    Returns
    -------
    PhantomParameters

    Raises
    ------
    InputError
        If ``name`` is unknown or an override is not a field / out of range.
    """
    if name not in VARIANTS:
        raise InputError(f"unknown phantom variant {name!r}; choose one of {', '.join(VARIANTS)}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")
    base = PhantomParameters()
    if name != "default":
        rng = np.random.default_rng([int(seed), 101])
        blood = float(rng.uniform(200.0, 700.0))
        u = rng.uniform
        base = replace(
            base,
            blood_hu=round(blood),
            myocardium_hu=round(50.0 + 0.15 * blood + float(u(-10.0, 10.0))),
            noise_hu=round(float(u(15.0, 30.0)), 1),
            blur_sigma_mm=round(float(u(0.5, 1.0)), 2),
            bone_hu=round(float(u(700.0, 1200.0))),
            neighbours=True,
            left_atrium_hu=round(blood * float(u(0.9, 1.05))),
            right_heart_hu=round(blood * float(u(0.4, 1.2))),
            svc_hu=round(min(3000.0, blood * float(u(0.8, 3.0)))),
            ivc_hu=round(float(u(60.0, 160.0))),
            body=True,
            abdomen_hu=round(float(u(80.0, 130.0))),
            kidney_hu=round(float(u(150.0, 300.0))),
            streak_hu=round(float(u(40.0, 150.0))),
            fov_extend_mm=(
                round(float(u(20.0, 60.0))),
                round(float(u(0.0, 20.0))),
                round(float(u(10.0, 40.0))),
                round(float(u(20.0, 40.0))),
                round(float(u(100.0, 160.0))),
                round(float(u(0.0, 20.0))),
            ),
        )
    if name in PATHOLOGY_VARIANTS:
        base = replace(base, **_pathology(name, seed, base))
    fields = set(PhantomParameters.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"unknown PhantomParameters field(s) {', '.join(unknown)}")
    return replace(base, **overrides)


def _pathology(name: str, seed: int, base: PhantomParameters) -> dict[str, object]:
    """Drawn parameters of a pathology variant (its own random stream per variant)."""
    stream = {"dilated": 201, "bicuspid": 202, "dissection": 203, "heavy_calcium": 204}[name]
    u = np.random.default_rng([int(seed), stream]).uniform
    if name == "dilated":
        stj = round(float(u(32.0, 38.0)), 1)
        return {
            "ascending_diameter_mm": round(float(u(45.0, 55.0)), 1),
            "stj_diameter_mm": stj,
            "sinus_diameter_mm": round(stj + float(u(4.0, 7.0)), 1),
            "ascending_taper_mm": round(float(u(30.0, 40.0)), 1),
        }
    if name == "bicuspid":
        d_ann = round(float(u(25.0, 29.0)), 1)
        aspect = round(float(u(0.65, 0.78)), 3)
        stj = round(d_ann + float(u(2.0, 5.0)), 1)
        return {
            "valve_cusps": 2,
            "annulus_diameter_mm": d_ann,
            "annulus_aspect_ratio": aspect,
            "lvot_diameter_mm": round(min(d_ann * math.sqrt(aspect) - 1.0, float(u(20.0, 24.0))), 1),
            "orifice_aspect_ratio": round(float(u(0.3, 0.5)), 3),
            "valve_orifice_area_mm2": round(float(u(60.0, 120.0))),
            "stj_diameter_mm": stj,
            "sinus_diameter_mm": round(stj + float(u(4.0, 7.0)), 1),
            "ascending_diameter_mm": round(max(stj, float(u(34.0, 42.0))), 1),
            "ascending_taper_mm": 25.0,
        }
    if name == "dissection":
        return {
            "dissection": "stanford_a" if u() < 0.5 else "stanford_b",
            "dissection_start_mm": round(float(u(5.0, 20.0)), 1),
            "flap_thickness_mm": round(float(u(1.0, 2.0)), 2),
            "false_lumen_hu": round(base.blood_hu * float(u(0.7, 1.0))),
        }
    return {  # heavy_calcium
        "calcium_volume_mm3": round(float(u(600.0, 1600.0))),
        "calcium_nodule_radius_mm": (2.0, 3.5),
        "annulus_calcium_fraction": round(float(u(0.15, 0.3)), 3),
    }


def variant(name: str, *, seed: int = 0, **overrides: object) -> Phantom:
    """Build a named phantom variant (see :func:`variant_parameters`) with ``seed``.

    Examples
    --------
    >>> ph = variant("hard", seed=3, spacing_mm=(1.5, 1.5, 1.5))  # doctest: +SKIP
    """
    return make_phantom(variant_parameters(name, seed=seed, **overrides), seed=seed)
