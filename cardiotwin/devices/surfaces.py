"""Device geometry as a parametric, watertight triangle surface in its placed pose, and its export.

Every device is built from closed profiles in the (r, z) half-plane of the device's own frame
(z along the device axis from its inflow centre, r the distance from the axis), each revolved
around the axis into one closed body (a *part*). The bodies are

* transcatheter aortic valve: ``frame`` (the frame's envelope, a wall of ``wall_mm`` between the
  outer profile and the profile ``wall_mm`` inside it; a cylinder or frustum for balloon-expandable
  frames, a cylindrical inflow up to the skirt top flaring to the outflow diameter for
  self-expanding frames), ``skirt`` (the outer sealing skirt from the inflow edge up to
  ``skirt_height_mm``) and ``leaflets`` (the open leaflets: a conical shell from the frame's inner
  wall at the leaflet base to the open orifice at the leaflet top);
* aortic stent: ``frame`` (a tube);
* left atrial appendage occluder: ``disc`` (on the atrial side of the ostium, z < 0) and ``lobe``
  (a waist from the ostium plane into the appendage, then the anchoring lobe);
* septal occluder: ``frame`` (right-atrial disc, waist through the defect, left-atrial disc, one
  body centred on the defect).

Parts never share a vertex (they stand :data:`PART_GAP_MM` apart), so each part stays a closed,
separate body after the vertex merging of STL readers. A profile point on the axis becomes a single
pole vertex. With ``segments`` facets around the axis the cross-sections are regular polygons
inscribed in the circles, so areas and volumes are those of the revolved profile times the polygon
factors (see the tests): ``sin(2π/n)·n/(2π)`` for volumes.

Catalog fields (contract D of issue 22) are read when present, with documented fallbacks from the
fields of today's balloon-expandable family (:func:`device_shape`).
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import trimesh

from cardiotwin.errors import DeviceError, InputError

if TYPE_CHECKING:
    from cardiotwin.devices.placement import DevicePlacement

__all__ = [
    "DEVICE_KINDS", "PART_IDS", "DeviceShape", "DeviceSurface", "device_shape", "device_surface",
    "part_profiles", "read_device_surface", "revolve_profile", "save_device_surface",
]

log = logging.getLogger(__name__)

VALVE = "transcatheter_aortic_valve"
STENT = "aortic_stent"
LAA = "laa_occluder"
SEPTAL = "septal_occluder"
DEVICE_KINDS = (VALVE, STENT, LAA, SEPTAL)
"""Family kinds the surfaces and placement know (catalog ``kind``)."""

PART_IDS: Mapping[str, int] = {"frame": 1, "skirt": 2, "leaflets": 3, "disc": 4, "lobe": 5}
"""Part id of each body, stored per triangle (VTP cell array ``part``; STL facet attribute)."""

PART_GAP_MM = 0.02
"""Clearance between touching parts (skirt on frame, leaflets in frame, disc and lobe) so that
no two parts share a vertex position; far below any imaging resolution."""

# Modelling defaults (assumptions of ours, not manufacturer figures) used when the catalog does not
# give the value; later catalog data replaces them.
SKIRT_THICKNESS_MM = 0.2          # PET/pericardial skirt
LEAFLET_THICKNESS_MM = 0.4        # pericardial leaflet
DEFAULT_WALL_MM = {VALVE: 0.6, STENT: 0.5, LAA: 2.0, SEPTAL: 1.5}  # frame wall / disc thickness
DEFAULT_SKIRT_FRACTION = 0.45     # skirt height / frame height
DEFAULT_LEAFLET_FRACTION = 0.5    # leaflet height / frame height
DEFAULT_ORIFICE_FRACTION = 0.65   # open-leaflet orifice area / internal frame area
LAA_DISC_EXTRA_MM = 6.0           # disc diameter = lobe diameter + this (Amulet-like proportions)
LAA_WAIST_FRACTION = 0.4          # waist diameter / lobe diameter
LAA_WAIST_LENGTH_MM = 4.0         # ostium plane to the lobe's proximal face
SEPTAL_LEFT_EXTRA_MM = 12.0       # left-atrial disc diameter = waist diameter + this
SEPTAL_RIGHT_EXTRA_MM = 8.0       # right-atrial disc diameter = waist diameter + this


@dataclass(frozen=True)
class DeviceShape:
    """The dimensions a device surface is built from (mm), resolved from one catalog size.

    Meaning per ``kind``:

    * ``transcatheter_aortic_valve``: ``height_mm`` frame height; ``inflow_diameter_mm`` /
      ``outflow_diameter_mm`` outer frame diameters at the two edges; ``wall_mm`` radial frame
      wall; ``skirt_height_mm``, ``leaflet_height_mm``; ``orifice_diameter_mm`` of the open
      leaflets; ``expansion`` ``"balloon"`` (straight frame) or ``"self"`` (cylindrical inflow up
      to the skirt top, flared outflow).
    * ``aortic_stent``: a tube of ``inflow_diameter_mm`` → ``outflow_diameter_mm``, length
      ``height_mm``, wall ``wall_mm``.
    * ``laa_occluder``: lobe of ``outflow_diameter_mm`` and length ``height_mm``; disc of
      ``inflow_diameter_mm`` and thickness ``wall_mm``; waist ``waist_diameter_mm`` over
      ``waist_length_mm``.
    * ``septal_occluder``: waist of ``waist_diameter_mm`` (the nominal size) and length
      ``height_mm``; right-atrial disc ``inflow_diameter_mm``, left-atrial disc
      ``outflow_diameter_mm``, each ``wall_mm`` thick.
    """

    kind: str
    expansion: str
    nominal_diameter_mm: float
    height_mm: float
    inflow_diameter_mm: float
    outflow_diameter_mm: float
    wall_mm: float
    skirt_height_mm: float = 0.0
    leaflet_height_mm: float = 0.0
    orifice_diameter_mm: float = 0.0
    waist_diameter_mm: float = 0.0
    waist_length_mm: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in DEVICE_KINDS:
            raise DeviceError(f"device kind {self.kind!r} has no surface model; known kinds: "
                              f"{', '.join(DEVICE_KINDS)}")
        for name in ("nominal_diameter_mm", "height_mm", "inflow_diameter_mm",
                     "outflow_diameter_mm", "wall_mm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DeviceError(f"device {name} must be positive; got {value!r}")
        if self.kind in (VALVE, STENT):
            thinnest = min(self.inflow_diameter_mm, self.outflow_diameter_mm) / 2
            if self.wall_mm >= thinnest:
                raise DeviceError(f"frame wall {self.wall_mm:g} mm is not below the smallest frame "
                                  f"radius {thinnest:g} mm")
        if self.kind == VALVE:
            if not 0 < self.skirt_height_mm <= self.height_mm:
                raise DeviceError(f"skirt height {self.skirt_height_mm:g} mm must be within the "
                                  f"frame height {self.height_mm:g} mm")
            if not 0 < self.leaflet_height_mm <= self.height_mm:
                raise DeviceError(f"leaflet height {self.leaflet_height_mm:g} mm must be within "
                                  f"the frame height {self.height_mm:g} mm")
            inner = self.inflow_diameter_mm / 2 - self.wall_mm
            if not 0 < self.orifice_diameter_mm / 2 < inner - LEAFLET_THICKNESS_MM:
                raise DeviceError(f"open-leaflet orifice diameter {self.orifice_diameter_mm:g} mm "
                                  f"must be below the frame's inner diameter {2 * inner:g} mm")
        narrowest = min(self.inflow_diameter_mm, self.outflow_diameter_mm)
        if self.kind in (LAA, SEPTAL) and not 0 < self.waist_diameter_mm < narrowest:
            raise DeviceError(f"occluder waist diameter {self.waist_diameter_mm:g} mm must be "
                              "positive and below both disc/lobe diameters")

    @property
    def inner_radius_mm(self) -> float:
        """Inner frame radius at the inflow edge (mm)."""
        return self.inflow_diameter_mm / 2 - self.wall_mm

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeviceShape:
        return cls(**dict(d))


def _field(obj: Any, name: str) -> float | None:
    value = getattr(obj, name, None)
    return None if value is None else float(value)


def device_shape(family: Any, size: Any) -> DeviceShape:
    """Resolve a catalog family and one of its sizes into a :class:`DeviceShape`.

    Reads the fields of contract D when the catalog has them and falls back otherwise:

    ==========================  ===========================================================
    shape field                 catalog field → fallback
    ==========================  ===========================================================
    kind, expansion             ``family.kind``; ``family.expansion`` → ``"balloon"`` for valves
    height_mm                   ``size.frame_height_mm``
    inflow/outflow diameter     ``size.inflow_diameter_mm`` / ``outflow_diameter_mm`` → valves and
                                stents: nominal; LAA: disc = nominal + 6 mm, lobe = nominal;
                                septal: right disc = nominal + 8 mm, left disc = nominal + 12 mm
    wall_mm                     ``family.frame_wall_mm`` → :data:`DEFAULT_WALL_MM` of the kind
    skirt_height_mm             ``size.skirt_height_mm`` → ``family.skirt_fraction`` × height →
                                0.45 × height
    leaflet_height_mm           ``size.leaflet_height_mm`` → 0.5 × height
    orifice_diameter_mm         inner inflow diameter × sqrt(``family.leaflet_orifice_fraction``
                                → 0.65)
    ==========================  ===========================================================

    Parameters
    ----------
    family : a catalog ``DeviceFamily`` (or any object with its attributes).
    size : one of its ``DeviceSize`` entries.
    """
    kind = str(getattr(family, "kind", VALVE))
    expansion = str(getattr(family, "expansion", None) or ("balloon" if kind == VALVE else ""))
    nominal = float(size.nominal_diameter_mm)
    height = float(size.frame_height_mm)
    wall = _field(family, "frame_wall_mm") or DEFAULT_WALL_MM.get(kind, 0.6)
    inflow = _field(size, "inflow_diameter_mm")
    outflow = _field(size, "outflow_diameter_mm")
    if kind == LAA:
        inflow = inflow or nominal + LAA_DISC_EXTRA_MM
        outflow = outflow or nominal
        return DeviceShape(kind, expansion, nominal, height, inflow, outflow, wall,
                           waist_diameter_mm=LAA_WAIST_FRACTION * outflow,
                           waist_length_mm=LAA_WAIST_LENGTH_MM)
    if kind == SEPTAL:
        return DeviceShape(kind, expansion, nominal, height,
                           inflow or nominal + SEPTAL_RIGHT_EXTRA_MM,
                           outflow or nominal + SEPTAL_LEFT_EXTRA_MM, wall,
                           waist_diameter_mm=nominal, waist_length_mm=height)
    inflow = inflow or nominal
    outflow = outflow or nominal
    if kind != VALVE:
        return DeviceShape(kind, expansion, nominal, height, inflow, outflow, wall)
    skirt = _field(size, "skirt_height_mm")
    if skirt is None:
        skirt = (_field(family, "skirt_fraction") or DEFAULT_SKIRT_FRACTION) * height
    leaflet = _field(size, "leaflet_height_mm") or DEFAULT_LEAFLET_FRACTION * height
    fraction = _field(family, "leaflet_orifice_fraction") or DEFAULT_ORIFICE_FRACTION
    orifice = 2 * (inflow / 2 - wall) * math.sqrt(fraction)
    return DeviceShape(kind, expansion, nominal, height, inflow, outflow, wall,
                       skirt_height_mm=skirt, leaflet_height_mm=leaflet,
                       orifice_diameter_mm=orifice)


# ---------------------------------------------------------------------------------------------
# Profiles in the (r, z) half-plane
# ---------------------------------------------------------------------------------------------

def frame_outer_profile(shape: DeviceShape) -> np.ndarray:
    """Stations ``(r, z)`` (K, 2) of the frame's outer radius, inflow (z = 0) to outflow (mm).

    Balloon-expandable frames and stents are straight between the inflow and outflow diameters;
    self-expanding frames keep the inflow diameter up to the skirt top, then flare linearly to the
    outflow diameter.
    """
    r_in, r_out, h = shape.inflow_diameter_mm / 2, shape.outflow_diameter_mm / 2, shape.height_mm
    if shape.kind == VALVE and shape.expansion == "self" and 0 < shape.skirt_height_mm < h:
        return np.array([[r_in, 0.0], [r_in, shape.skirt_height_mm], [r_out, h]])
    return np.array([[r_in, 0.0], [r_out, h]])


def _outer_radius_at(stations: np.ndarray, z: float) -> float:
    return float(np.interp(z, stations[:, 1], stations[:, 0]))


def _stations_between(stations: np.ndarray, z0: float, z1: float) -> np.ndarray:
    zs = [z0, *[z for z in stations[:, 1] if z0 < z < z1], z1]
    return np.array([[_outer_radius_at(stations, z), z] for z in zs])


def part_profiles(shape: DeviceShape) -> dict[str, np.ndarray]:
    """The closed profile of each part: name → (M, 2) polygon of ``(r, z)`` in mm.

    Each polygon runs counter-clockwise in the (r, z) plane without repeating its first point;
    points with r = 0 lie on the axis.
    """
    g = PART_GAP_MM
    if shape.kind in (VALVE, STENT):
        outer = frame_outer_profile(shape)
        inner = outer - [shape.wall_mm, 0.0]
        parts = {"frame": np.vstack([outer, inner[::-1]])}
        if shape.kind == STENT:
            return parts
        skirt = _stations_between(outer, 0.0, shape.skirt_height_mm) + [g, 0.0]
        parts["skirt"] = np.vstack([skirt, (skirt + [SKIRT_THICKNESS_MM, 0.0])[::-1]])
        # open leaflets: base on the frame's inner wall, top at the open orifice; balloon frames
        # carry them in the outflow part of the frame, self-expanding (supra-annular) ones from
        # the skirt top upwards
        if shape.expansion == "self":
            z_b = min(shape.skirt_height_mm, shape.height_mm - shape.leaflet_height_mm)
        else:
            z_b = shape.height_mm - shape.leaflet_height_mm
        z_t = z_b + shape.leaflet_height_mm
        r_b = _outer_radius_at(outer, z_b) - shape.wall_mm - g
        r_t = shape.orifice_diameter_mm / 2
        t = LEAFLET_THICKNESS_MM
        parts["leaflets"] = np.array([[r_b - t, z_b], [r_b, z_b], [r_t + t, z_t], [r_t, z_t]])
        return parts
    t = shape.wall_mm
    if shape.kind == LAA:
        r_disc, r_lobe = shape.inflow_diameter_mm / 2, shape.outflow_diameter_mm / 2
        r_w, z_w = shape.waist_diameter_mm / 2, shape.waist_length_mm
        z_end = z_w + shape.height_mm
        return {
            "disc": np.array([[0.0, -t - g], [r_disc, -t - g], [r_disc, -g], [0.0, -g]]),
            "lobe": np.array([[0.0, 0.0], [r_w, 0.0], [r_w, z_w], [r_lobe, z_w], [r_lobe, z_end],
                              [0.0, z_end]]),
        }
    # septal occluder: right disc, waist, left disc, centred on the defect (z = 0)
    r_ra, r_la = shape.inflow_diameter_mm / 2, shape.outflow_diameter_mm / 2
    r_w, h = shape.waist_diameter_mm / 2, shape.waist_length_mm / 2
    return {"frame": np.array([
        [0.0, -h - t], [r_ra, -h - t], [r_ra, -h], [r_w, -h], [r_w, h], [r_la, h],
        [r_la, h + t], [0.0, h + t]])}


def revolve_profile(profile: np.ndarray, *, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Revolve a closed (r, z) polygon around the z axis into a closed triangle surface.

    Parameters
    ----------
    profile : (M, 2) polygon of ``(r, z)`` (mm), r ≥ 0, not repeating its first point; points with
        r = 0 become single pole vertices.
    segments : facets around the axis (≥ 3).

    Returns
    -------
    vertices : (N, 3) in the device frame (x, y across, z along the axis), mm.
    faces : (F, 3) triangles with outward normals.
    """
    p = np.asarray(profile, dtype=float)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3 or (p[:, 0] < 0).any():
        raise InputError(f"a profile is an (M ≥ 3, 2) array of (r ≥ 0, z); got shape {p.shape}")
    if segments < 3:
        raise InputError(f"segments must be at least 3; got {segments}")
    theta = 2 * np.pi * np.arange(segments) / segments
    cos, sin = np.cos(theta), np.sin(theta)
    on_axis = p[:, 0] <= 1e-12
    verts: list[np.ndarray] = []
    first: list[int] = []   # index of each profile point's first vertex
    count = 0
    for (r, z), pole in zip(p, on_axis, strict=True):
        first.append(count)
        if pole:
            verts.append(np.array([[0.0, 0.0, z]]))
            count += 1
        else:
            verts.append(np.column_stack([r * cos, r * sin, np.full(segments, z)]))
            count += segments
    j = np.arange(segments)
    jn = (j + 1) % segments
    faces = []
    m = len(p)
    for i in range(m):
        k = (i + 1) % m
        a, b = first[i], first[k]
        if on_axis[i] and on_axis[k]:
            continue
        if on_axis[i]:
            faces.append(np.column_stack([np.full(segments, a), b + j, b + jn]))
        elif on_axis[k]:
            faces.append(np.column_stack([a + j, np.full(segments, b), a + jn]))
        else:
            faces.append(np.column_stack([a + j, b + j, b + jn]))
            faces.append(np.column_stack([a + j, b + jn, a + jn]))
    vertices = np.vstack(verts)
    tri = np.vstack(faces)
    if _signed_volume(vertices, tri) < 0:
        tri = tri[:, ::-1]
    return vertices, np.ascontiguousarray(tri)


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


# ---------------------------------------------------------------------------------------------
# The placed surface
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class DeviceSurface:
    """A device's closed triangle surface in patient coordinates (LPS mm), one part id per face.

    Attributes
    ----------
    vertices : (N, 3) mm.
    faces : (F, 3) vertex indices, outward normals.
    part : (F,) part id of each face (:data:`PART_IDS`).
    label : what the device is (family and size).
    """

    vertices: np.ndarray
    faces: np.ndarray
    part: np.ndarray
    label: str = ""

    @property
    def mesh(self) -> trimesh.Trimesh:
        """The whole surface as a :class:`trimesh.Trimesh` (not processed)."""
        return trimesh.Trimesh(self.vertices, self.faces, process=False)

    @property
    def part_names(self) -> tuple[str, ...]:
        """Names of the parts present, in id order."""
        ids = set(np.unique(self.part).tolist())
        return tuple(n for n, i in sorted(PART_IDS.items(), key=lambda kv: kv[1]) if i in ids)

    def part_mesh(self, name: str) -> trimesh.Trimesh:
        """One part as its own mesh (only its vertices); :class:`DeviceError` if absent."""
        if name not in self.part_names:
            raise DeviceError(f"this device surface has no part {name!r}; parts: "
                              f"{', '.join(self.part_names)}")
        faces = self.faces[self.part == PART_IDS[name]]
        used, inverse = np.unique(faces, return_inverse=True)
        return trimesh.Trimesh(self.vertices[used], inverse.reshape(-1, 3), process=False)


def device_surface(placement: DevicePlacement, *, segments: int = 128) -> DeviceSurface:
    """The placed device as one closed surface with part ids.

    The device frame's z axis is ``placement.axis`` and its origin ``placement.inflow_centre_mm``
    (for occluders: the ostium or defect centre); x is a direction perpendicular to the axis
    (irrelevant to these axisymmetric bodies except for where the facets start).

    Parameters
    ----------
    placement : from :func:`cardiotwin.devices.placement.place_device`.
    segments : facets around the axis; 128 keeps the polygon's area within 0.04 % of the circle's.
    """
    shape = placement.shape
    if shape is None:
        raise DeviceError("this placement carries no device shape (stored before shapes were "
                          "recorded); place the device again")
    a = np.asarray(placement.axis, dtype=float)
    a /= np.linalg.norm(a)
    ref = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    ex = ref - (ref @ a) * a
    ex /= np.linalg.norm(ex)
    ey = np.cross(a, ex)
    rot = np.column_stack([ex, ey, a])
    origin = np.asarray(placement.inflow_centre_mm, dtype=float)
    verts, faces, parts = [], [], []
    offset = 0
    for name, prof in part_profiles(shape).items():
        v, f = revolve_profile(prof, segments=segments)
        verts.append(v @ rot.T + origin)
        faces.append(f + offset)
        parts.append(np.full(len(f), PART_IDS[name], dtype=np.int32))
        offset += len(v)
    label = f"{placement.family} {placement.nominal_diameter_mm:g} mm"
    return DeviceSurface(np.vstack(verts), np.vstack(faces), np.concatenate(parts), label)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

_STL_HEADER = b"cardiotwin device surface; facet attribute = part id"
_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("part", "<u2")])


def save_device_surface(surface: DeviceSurface, path: str | Path) -> Path:
    """Write a device surface: ``.vtp``/``.vtk`` (VTK PolyData with a per-cell ``part`` array and
    the part names in field data) or ``.stl`` (binary; the part id in each facet's 16-bit
    attribute, which viewers ignore or show as colour).

    The file is written to a temporary name and renamed, so a failure leaves no partial file.

    Raises
    ------
    InputError
        Another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    tmp = path.with_name(path.name + ".part" + suffix)
    if suffix in (".vtp", ".vtk"):
        import pyvista as pv

        cells = np.hstack([np.full((len(surface.faces), 1), 3), surface.faces]).ravel()
        poly = pv.PolyData(np.asarray(surface.vertices, dtype=float), cells)
        poly.cell_data["part"] = surface.part.astype(np.int32)
        poly.field_data["part_names"] = np.array(
            [f"{i}={n}" for n, i in PART_IDS.items()])
        poly.field_data["label"] = np.array([surface.label])
        poly.save(str(tmp))
    elif suffix == ".stl":
        tri = surface.vertices[surface.faces]
        rec = np.zeros(len(tri), dtype=_STL_RECORD)
        rec["normal"] = trimesh.Trimesh(surface.vertices, surface.faces, process=False).face_normals
        rec["vertices"] = tri
        rec["part"] = surface.part
        with open(tmp, "wb") as fh:
            fh.write(_STL_HEADER.ljust(80, b" "))
            fh.write(struct.pack("<I", len(tri)))
            fh.write(rec.tobytes())
    else:
        raise InputError(f"unsupported device surface format {suffix!r}; use .stl, .vtp or .vtk")
    tmp.replace(path)
    log.info("device surface %s: %d faces, parts %s -> %s", surface.label, len(surface.faces),
             ", ".join(surface.part_names), path)
    return path


def read_device_surface(path: str | Path) -> DeviceSurface:
    """Read a surface written by :func:`save_device_surface` (vertices merged, part ids kept).

    Raises
    ------
    InputError
        A missing or unreadable file, or one without a part id per face.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"device surface file {path} does not exist")
    suffix = path.suffix.lower()
    label = ""
    if suffix in (".vtp", ".vtk"):
        import pyvista as pv

        poly = pv.read(path)
        if "part" not in poly.cell_data:
            raise InputError(f"device surface {path} has no per-cell 'part' array")
        faces = np.asarray(poly.faces).reshape(-1, 4)[:, 1:]
        verts = np.asarray(poly.points, dtype=float)
        part = np.asarray(poly.cell_data["part"], dtype=np.int32)
        if "label" in poly.field_data:
            label = str(np.asarray(poly.field_data["label"])[0])
    elif suffix == ".stl":
        data = path.read_bytes()
        if len(data) < 84:
            raise InputError(f"device surface {path} is not a binary STL")
        (n,) = struct.unpack("<I", data[80:84])
        if len(data) != 84 + n * _STL_RECORD.itemsize:
            raise InputError(f"device surface {path} is not a binary STL of {n} facets")
        rec = np.frombuffer(data, dtype=_STL_RECORD, count=n, offset=84)
        tri = rec["vertices"].astype(float).reshape(-1, 3)
        verts, inverse = np.unique(tri, axis=0, return_inverse=True)
        faces = inverse.reshape(-1, 3)
        part = rec["part"].astype(np.int32)
    else:
        raise InputError(f"unsupported device surface format {suffix!r}; use .stl, .vtp or .vtk")
    return DeviceSurface(verts, faces, part, label)
