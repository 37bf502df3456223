"""A lumen surface the user brings (geometry.surface_import): convention, caps, extensions, names.

The surfaces stand for what vmtk, SimVascular or 3D Slicer export: the phantom's lumen with flat
caps written in RAS as STL (Slicer's default convention), and the same lumen with its ends cut
open written in LPS as VTK PolyData.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from cardiotwin.errors import InputError
from cardiotwin.geometry.surface_import import import_lumen_surface
from cardiotwin.geometry.volume_mesh import mesh_fluid_domain

from .conftest import H_MAX_MM, H_MIN_MM


def _write_ras_stl(mesh: trimesh.Trimesh, path, shift=(0.0, 0.0, 0.0)):
    ras = trimesh.Trimesh(np.asarray(mesh.vertices) * [-1.0, -1.0, 1.0] + shift, mesh.faces)
    ras.export(path)
    return path


def _write_open_vtp(surface, path):
    import pyvista as pv

    keep = np.ones(len(surface.mesh.faces), bool)
    for idx in surface.cap_faces.values():
        keep[idx] = False
    faces = np.asarray(surface.mesh.faces)[keep]
    poly = pv.PolyData(np.asarray(surface.mesh.vertices),
                       np.column_stack([np.full(len(faces), 3), faces]).ravel())
    poly.clean().save(path)
    return path


def test_capped_ras_stl_and_open_lps_vtp_give_the_same_named_caps(coarse_phantom,
                                                                 phantom_fluid_surface, tmp_path):
    lm = coarse_phantom.truth.landmarks
    ref = {c.name: c for c in phantom_fluid_surface.caps}
    for path, convention in ((_write_ras_stl(phantom_fluid_surface.mesh, tmp_path / "lumen.stl"),
                              "RAS"),
                             (_write_open_vtp(phantom_fluid_surface, tmp_path / "lumen.vtp"),
                              "LPS")):
        fs = import_lumen_surface(path, lumen=coarse_phantom.labels, landmarks=lm)
        assert fs.provenance["convention"] == convention
        assert fs.mesh.is_watertight and fs.mesh.volume > 0
        assert {c.name for c in fs.caps} == set(ref)
        for cap in fs.caps:
            r = ref[cap.name]
            assert np.dot(cap.normal, r.normal) > 0.99, cap.name
            # one diameter of flow extension along the outward normal
            moved = np.subtract(cap.centre_mm, r.centre_mm)
            assert np.dot(moved, r.normal) == pytest.approx(r.equivalent_diameter_mm, rel=0.2)
            assert cap.area_mm2 == pytest.approx(r.area_mm2, rel=0.1), cap.name


def test_an_imported_surface_meshes_with_its_tags(coarse_phantom, phantom_fluid_surface, tmp_path):
    fs = import_lumen_surface(_write_ras_stl(phantom_fluid_surface.mesh, tmp_path / "l.stl"),
                              lumen=coarse_phantom.labels, landmarks=coarse_phantom.truth.landmarks)
    dom = mesh_fluid_domain(fs, tmp_path / "fluid.msh", h_max_mm=H_MAX_MM, h_min_mm=H_MIN_MM)
    assert {c.name for c in dom.caps} == {c.name for c in fs.caps}
    assert dom.n_cells > 1000


def test_a_surface_of_another_scan_is_refused(coarse_phantom, phantom_fluid_surface, tmp_path):
    path = _write_ras_stl(phantom_fluid_surface.mesh, tmp_path / "far.stl", shift=(0, 0, 200.0))
    with pytest.raises(InputError, match="does not lie on this scan"):
        import_lumen_surface(path, lumen=coarse_phantom.labels,
                             landmarks=coarse_phantom.truth.landmarks)
