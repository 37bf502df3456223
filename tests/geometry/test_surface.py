"""Tests of cardiotwin.geometry.surface: label surfaces and the capped fluid surface.

References for the expected numbers: sphere volume 4/3·π·r³ and area 4·π·r² (analytic); the
phantom's construction values (``PhantomTruth``: LVOT, descending and branch diameters, branch
centrelines) for the caps; an independent voxel count of the lumen for the enclosed volume.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cardiotwin.errors import GeometryError, InputError
from cardiotwin.geometry.surface import (
    ARCH_BRANCH_NAMES,
    FluidSurface,
    fluid_surface,
    label_surface,
    save_surface,
)
from cardiotwin.imaging.volume import LabelMap, Volume


def _sphere_labels(radius_mm: float, spacing_mm, direction: np.ndarray, centre_mm) -> LabelMap:
    """Voxelised sphere on an oblique, anisotropic grid (tests the (k, j, i) / affine handling)."""
    sp = np.asarray(spacing_mm, float)
    n = np.ceil(2 * radius_mm / sp).astype(int) + 8  # (ni, nj, nk)
    centre = np.asarray(centre_mm, float)
    origin = centre - direction @ (sp * (n - 1) / 2.0)
    vol0 = Volume(np.zeros((n[2], n[1], n[0]), np.int16), tuple(sp), tuple(origin), direction)
    k, j, i = np.meshgrid(*[np.arange(m) for m in n[::-1]], indexing="ij")
    xyz = vol0.index_to_physical(np.stack([i, j, k], axis=-1))
    inside = np.linalg.norm(xyz - centre, axis=-1) <= radius_mm
    return LabelMap(vol0.with_array(inside.astype(np.int16)), {"background": 0, "sphere": 1})


@pytest.mark.parametrize("radius_mm", [8.0, 14.0])
def test_label_surface_sphere_volume_and_area(radius_mm: float) -> None:
    direction = Rotation.from_euler("zyx", [20, -35, 10], degrees=True).as_matrix()
    centre = np.array([12.0, -40.0, 150.0])
    labels = _sphere_labels(radius_mm, (0.8, 0.9, 1.1), direction, centre)
    mesh = label_surface(labels, ["sphere"])
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.is_volume
    assert mesh.volume > 0  # outward normals
    # analytic: V = 4/3 π r³ (3 %), A = 4 π r² (5 %)
    assert mesh.volume == pytest.approx(4.0 / 3.0 * math.pi * radius_mm**3, rel=0.03)
    assert mesh.area == pytest.approx(4.0 * math.pi * radius_mm**2, rel=0.05)
    # the affine must place the surface around the physical centre (k, j, i order handled)
    np.testing.assert_allclose(mesh.center_mass, centre, atol=0.1)
    r = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert np.abs(r - radius_mm).max() < 0.6  # within about half a voxel after smoothing


def test_label_surface_keeps_largest_component() -> None:
    arr = np.zeros((30, 30, 40), np.int16)
    arr[5:25, 5:25, 5:25] = 1  # 20³ voxel cube
    arr[10:13, 10:13, 32:35] = 1  # small separate blob
    labels = LabelMap(Volume(arr, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), {"background": 0, "x": 1})
    mesh = label_surface(labels, ["x"], smoothing_iterations=0)
    assert mesh.body_count == 1
    # raw marching cubes at level 0.5 of a cube of 20 voxels: 20³ minus the cut edges and corners
    assert mesh.volume == pytest.approx(20.0**3, rel=0.03)
    assert mesh.bounds[1][0] < 26.0  # the blob at i = 32..34 is gone


def test_label_surface_errors() -> None:
    arr = np.zeros((10, 10, 10), np.int16)
    labels = LabelMap(Volume(arr, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    with pytest.raises(InputError, match="unknown label"):
        label_surface(labels, ["liver"])
    with pytest.raises(GeometryError, match="empty"):
        label_surface(labels, ["aorta"])


# ---- fluid surface on the phantom ---------------------------------------------------------------

EXPECTED_CAPS = {"inlet", "outlet:descending", *ARCH_BRANCH_NAMES}


def test_fluid_surface_is_closed_manifold(phantom_fluid_surface: FluidSurface) -> None:
    m = phantom_fluid_surface.mesh
    assert m.is_watertight and m.is_winding_consistent and m.is_volume
    assert m.volume > 0
    assert m.body_count == 1


def test_fluid_surface_cap_names_and_normals(
    phantom_fluid_surface: FluidSurface, coarse_phantom
) -> None:
    fs = phantom_fluid_surface
    assert [c.name for c in fs.caps][0] == "inlet"
    assert {c.name for c in fs.caps} == EXPECTED_CAPS
    lm = coarse_phantom.truth.landmarks
    np.testing.assert_allclose(fs.inlet.normal, -np.asarray(lm.annulus_normal), atol=1e-9)
    np.testing.assert_allclose(fs.cap("outlet:descending").normal, [0, 0, -1], atol=1e-9)
    for name in ARCH_BRANCH_NAMES:
        np.testing.assert_allclose(fs.cap(name).normal, [0, 0, 1], atol=1e-9)
    # inlet plane: inlet_offset_mm (12) below the annulus along the normal
    d = np.dot(np.asarray(fs.inlet.centre_mm) - lm.annulus_centre_mm, lm.annulus_normal)
    assert d == pytest.approx(-12.0, abs=1e-6)


def test_fluid_surface_caps_are_flat_and_outward(phantom_fluid_surface: FluidSurface) -> None:
    fs = phantom_fluid_surface
    m = fs.mesh
    for cap in fs.caps:
        faces = fs.cap_faces[cap.name]
        assert len(faces) > 0
        v = m.vertices[np.unique(m.faces[faces])]
        off = (v - np.asarray(cap.centre_mm)) @ np.asarray(cap.normal)
        assert np.abs(off).max() < 1e-6, cap.name
        # face normals of a cap all point out of the fluid along the cap normal
        assert (m.face_normals[faces] @ np.asarray(cap.normal)).min() > 0.99
        assert m.area_faces[faces].sum() == pytest.approx(cap.area_mm2, rel=1e-12)


def test_fluid_surface_outlets_match_phantom_vessels(
    phantom_fluid_surface: FluidSurface, coarse_phantom
) -> None:
    """Each named outlet sits on the end of the right vessel, with its cross-section area."""
    truth = coarse_phantom.truth
    fs = phantom_fluid_surface
    for name, line, radius in zip(
        truth.branch_names, truth.branch_centrelines_mm, truth.branch_radii_mm, strict=True
    ):
        cap = fs.cap(f"outlet:{name}")
        dist = np.linalg.norm(np.asarray(line) - np.asarray(cap.centre_mm), axis=1).min()
        assert dist < 0.5 * radius, name
        # a tube of radius r cut by a plane: area π r² / cos(angle) ≥ π r²; within 15 % here
        assert cap.area_mm2 == pytest.approx(math.pi * radius**2, rel=0.15), name
    desc = fs.cap("outlet:descending")
    r_desc = 0.5 * truth.parameters.descending_diameter_mm
    assert np.linalg.norm(truth.aorta_centreline_mm - desc.centre_mm, axis=1).min() < 0.5 * r_desc
    assert desc.area_mm2 == pytest.approx(math.pi * r_desc**2, rel=0.10)


def test_fluid_surface_inlet_area_matches_lvot(
    phantom_fluid_surface: FluidSurface, coarse_phantom
) -> None:
    lm = coarse_phantom.truth.landmarks
    # phantom truth: circular LVOT of lvot_diameter_mm below the annulus (15 %)
    assert phantom_fluid_surface.inlet.area_mm2 == pytest.approx(
        math.pi * (lm.lvot_diameter_mm / 2) ** 2, rel=0.15
    )


def test_fluid_surface_volume_matches_voxel_count(
    phantom_fluid_surface: FluidSurface, coarse_phantom
) -> None:
    """Independent count: lumen labels + LVOT voxels above the inlet plane, between the outlet planes."""
    labels = coarse_phantom.labels
    lm = coarse_phantom.truth.landmarks
    vol = labels.volume
    nk, nj, ni = vol.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    xyz = vol.index_to_physical(np.stack([i, j, k], axis=-1))
    rel = xyz - np.asarray(lm.annulus_centre_mm)
    d = rel @ np.asarray(lm.annulus_normal)
    r = np.linalg.norm(rel - d[..., None] * np.asarray(lm.annulus_normal), axis=-1)
    lvot = labels.mask("lv_blood") & (d >= -12.0) & (r <= 1.05 * lm.lvot_diameter_mm / 2)
    lumen = labels.mask("aorta", "branches", "valve", "calcium") | lvot
    z = xyz[..., 2]
    inset = 3.0  # outlet planes 3 mm inside the first/last slice centres
    lumen &= (z >= z.min() + inset) & (z <= z.max() - inset)
    voxel_mm3 = lumen.sum() * vol.voxel_volume_mm3
    assert phantom_fluid_surface.mesh.volume == pytest.approx(voxel_mm3, rel=0.05)


def test_fluid_surface_fills_unlabelled_leaflets(coarse_phantom) -> None:
    """Segmentation output has no valve label: leaflet gaps are closed locally, volume ≈ truth."""
    labels = coarse_phantom.labels
    arr = labels.array.copy()
    arr[np.isin(arr, [labels.names["valve"]])] = 0  # leaflet tissue becomes an unlabelled gap
    seg = LabelMap(labels.volume.with_array(arr), dict(labels.names))
    lm = coarse_phantom.truth.landmarks
    with_gap = fluid_surface(seg, lm)
    reference = fluid_surface(labels, lm)
    assert with_gap.mesh.is_watertight
    assert {c.name for c in with_gap.caps} == EXPECTED_CAPS
    # the closing restores the lumen (the valve label is ~1.3 mL of a ~170 mL lumen)
    assert with_gap.mesh.volume == pytest.approx(reference.mesh.volume, rel=0.01)


def test_fluid_surface_errors(coarse_phantom) -> None:
    labels = coarse_phantom.labels
    lm = coarse_phantom.truth.landmarks
    far = dataclasses.replace(lm, annulus_centre_mm=(500.0, 500.0, 500.0))
    with pytest.raises(GeometryError, match="no inlet"):
        fluid_surface(labels, far)
    names = {k: v for k, v in labels.names.items() if k != "lv_blood"}
    with pytest.raises(GeometryError, match="lv_blood"):
        fluid_surface(LabelMap(labels.volume, names), lm)
    with pytest.raises(InputError, match="inlet_offset_mm"):
        fluid_surface(labels, lm, inlet_offset_mm=-1.0)


def test_save_surface_formats(phantom_fluid_surface: FluidSurface, tmp_path) -> None:
    import trimesh

    stl = save_surface(phantom_fluid_surface, tmp_path / "lumen.stl")
    back = trimesh.load_mesh(stl)
    assert len(back.faces) == len(phantom_fluid_surface.mesh.faces)
    assert back.volume == pytest.approx(phantom_fluid_surface.mesh.volume, rel=1e-6)
    vtp = save_surface(phantom_fluid_surface, tmp_path / "lumen.vtp")
    assert vtp.stat().st_size > 0
    with pytest.raises(InputError, match="unsupported"):
        save_surface(phantom_fluid_surface, tmp_path / "lumen.xyz")
