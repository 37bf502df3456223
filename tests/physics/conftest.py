"""Small gmsh fluid domains (mm, FluidDomain .msh 4.1) for the physics tests.

Every builder writes a ``.msh`` with the physical groups a CT-derived :class:`FluidDomain` has:
volume ``fluid``, surfaces ``wall``, ``inlet`` and ``outlet:<name>``, and returns the domain with
its caps (centre, outward normal, area). Geometries are axis-aligned so analytic references apply.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cardiotwin.geometry.volume_mesh import BoundaryCap, FluidDomain


def _start(name: str) -> None:
    import gmsh

    if gmsh.isInitialized():
        gmsh.finalize()
    gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.option.setNumber("General.NumThreads", 1)
    gmsh.model.add(name)


def _finish(path: Path, caps_spec: list[tuple[str, list[int], tuple[float, float, float]]],
            volumes: list[int], *, h_max_mm: float) -> FluidDomain:
    """Tag, mesh, write ``path`` and return the FluidDomain.

    ``caps_spec``: (name, surface tags, outward normal) for the inlet and each outlet; every other
    boundary surface is ``wall``.
    """
    import gmsh

    gmsh.model.occ.synchronize()
    boundary = {abs(t) for _, t in gmsh.model.getBoundary([(3, v) for v in volumes],
                                                           oriented=False)}
    cap_tags = {t for _, ts, _ in caps_spec for t in ts}
    wall = sorted(boundary - cap_tags)
    facet_tags = {"wall": 1}
    gmsh.model.addPhysicalGroup(3, volumes, tag=1, name="fluid")
    gmsh.model.addPhysicalGroup(2, wall, tag=1, name="wall")
    caps = []
    for i, (name, ts, normal) in enumerate(caps_spec):
        tag = 2 + i
        gmsh.model.addPhysicalGroup(2, ts, tag=tag, name=name)
        facet_tags[name] = tag
        area = sum(gmsh.model.occ.getMass(2, t) for t in ts)
        centre = np.sum([np.array(gmsh.model.occ.getCenterOfMass(2, t)) * gmsh.model.occ.getMass(2, t)
                         for t in ts], axis=0) / area
        caps.append(BoundaryCap(name, tag, tuple(float(c) for c in centre),
                                tuple(float(c) for c in normal), float(area)))
    gmsh.option.setNumber("Mesh.MeshSizeMax", h_max_mm)
    gmsh.option.setNumber("Mesh.Algorithm3D", 10)  # HXT: fast, deterministic in 1 thread
    gmsh.model.mesh.generate(3)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.write(str(path))
    _, elem_tags, _ = gmsh.model.mesh.getElements(3)
    n_cells = int(sum(len(e) for e in elem_tags))
    n_vertices = len(gmsh.model.mesh.getNodes()[0])
    gmsh.finalize()
    return FluidDomain(mesh_path=Path(path), facet_tags=facet_tags, cell_tags={"fluid": 1},
                       caps=tuple(caps), n_cells=n_cells, n_vertices=n_vertices)


def _cap_of(surfaces, point, tol=1e-3) -> list[int]:
    import gmsh

    out = []
    for _, t in surfaces:
        c = np.array(gmsh.model.occ.getCenterOfMass(2, t))
        if np.linalg.norm(c - np.asarray(point)) < tol:
            out.append(t)
    assert out, f"no cap at {point}"
    return out


def _refine_box(z0: float, z1: float, r: float, h_fine: float, h_coarse: float) -> None:
    """Element size h_fine in the slab z0 <= z <= z1 (|x|,|y| <= r), graded to h_coarse."""
    import gmsh

    f = gmsh.model.mesh.field.add("Box")
    gmsh.model.mesh.field.setNumber(f, "VIn", h_fine)
    gmsh.model.mesh.field.setNumber(f, "VOut", h_coarse)
    for k, v in (("XMin", -r), ("XMax", r), ("YMin", -r), ("YMax", r), ("ZMin", z0), ("ZMax", z1)):
        gmsh.model.mesh.field.setNumber(f, k, v)
    gmsh.model.mesh.field.setNumber(f, "Thickness", 3 * h_coarse)
    gmsh.model.mesh.field.setAsBackgroundMesh(f)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)


def make_pipe(path: Path, *, radius_mm: float = 5.0, length_mm: float = 60.0, h_mm: float = 1.25,
              refine_z_mm: tuple[float, float] | None = None, h_fine_mm: float | None = None
              ) -> FluidDomain:
    """Straight pipe along +z from z=0 (``inlet``) to z=length (``outlet:out``)."""
    import gmsh

    _start("pipe")
    v = gmsh.model.occ.addCylinder(0, 0, 0, 0, 0, length_mm, radius_mm)
    gmsh.model.occ.synchronize()
    surfs = gmsh.model.getBoundary([(3, v)], oriented=False)
    if refine_z_mm is not None:
        _refine_box(*refine_z_mm, radius_mm + 1, h_fine_mm, h_mm)
    else:
        gmsh.option.setNumber("Mesh.MeshSizeMin", h_mm)
    return _finish(path, [("inlet", _cap_of(surfs, (0, 0, 0)), (0, 0, -1)),
                          ("outlet:out", _cap_of(surfs, (0, 0, length_mm)), (0, 0, 1))],
                   [v], h_max_mm=h_mm)


def make_tee(path: Path, *, radius_mm: float = 4.0, branch_radius_mm: float = 3.0,
             length_mm: float = 40.0, branch_length_mm: float = 25.0, h_mm: float = 1.2
             ) -> FluidDomain:
    """Pipe along +z (``inlet`` z=0, ``outlet:main`` z=length) with a side branch along +x at mid
    length ending in ``outlet:branch``."""
    import gmsh

    _start("tee")
    a = gmsh.model.occ.addCylinder(0, 0, 0, 0, 0, length_mm, radius_mm)
    zb = length_mm / 2
    b = gmsh.model.occ.addCylinder(0, 0, zb, branch_length_mm, 0, 0, branch_radius_mm)
    vols, _ = gmsh.model.occ.fuse([(3, a)], [(3, b)])
    gmsh.model.occ.synchronize()
    vol_tags = [t for _, t in vols]
    surfs = gmsh.model.getBoundary(vols, oriented=False)
    return _finish(path, [("inlet", _cap_of(surfs, (0, 0, 0)), (0, 0, -1)),
                          ("outlet:main", _cap_of(surfs, (0, 0, length_mm)), (0, 0, 1)),
                          ("outlet:branch", _cap_of(surfs, (branch_length_mm, 0, zb)), (1, 0, 0))],
                   vol_tags, h_max_mm=h_mm)


def make_aortic_like(path: Path, *, radius_mm: float = 11.0, length_mm: float = 130.0,
                     valve_z_mm: float = 20.0, h_fine_mm: float = 1.2, h_mm: float = 3.0
                     ) -> FluidDomain:
    """Benchmark stand-in for a CT aortic root: a trunk (LVOT inlet at z=0, descending outlet at
    z=length) with three arch branches along +x, refined to ``h_fine_mm`` around the valve."""
    import gmsh

    _start("aorta")
    trunk = gmsh.model.occ.addCylinder(0, 0, 0, 0, 0, length_mm, radius_mm)
    branches = [("outlet:brachiocephalic", 65.0, 5.0), ("outlet:carotid", 80.0, 3.5),
                ("outlet:subclavian", 95.0, 4.0)]
    tools = [(3, gmsh.model.occ.addCylinder(0, 0, z, radius_mm + 25.0, 0, 0, r))
             for _, z, r in branches]
    vols, _ = gmsh.model.occ.fuse([(3, trunk)], tools)
    gmsh.model.occ.synchronize()
    surfs = gmsh.model.getBoundary(vols, oriented=False)
    _refine_box(valve_z_mm - 12, valve_z_mm + 25, radius_mm + 1, h_fine_mm, h_mm)
    caps = [("inlet", _cap_of(surfs, (0, 0, 0)), (0, 0, -1)),
            ("outlet:descending", _cap_of(surfs, (0, 0, length_mm)), (0, 0, 1))]
    caps += [(n, _cap_of(surfs, (radius_mm + 25.0, 0, z)), (1, 0, 0)) for n, z, _ in branches]
    return _finish(path, caps, [t for _, t in vols], h_max_mm=h_mm)


REPO = Path(__file__).resolve().parents[2]


def run_mpi(script: Path, *args: object, n: int = 2, timeout_s: float = 300.0) -> None:
    """Run ``script`` under the venv's ``mpiexec -n n`` from the repository root; fail the test
    with the tail of stderr when it exits non-zero."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    proc = subprocess.run([str(mpiexec), "-n", str(n), sys.executable, str(script),
                           *(str(a) for a in args)],
                          capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]


def save_domain(domain: FluidDomain, path: Path) -> Path:
    """Write ``domain.to_dict()`` as JSON (for subprocess runs)."""
    Path(path).write_text(json.dumps(domain.to_dict()))
    return Path(path)


@pytest.fixture(scope="session")
def physics_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("physics")


@pytest.fixture(scope="session")
def pipe_domain(physics_tmp) -> FluidDomain:
    return make_pipe(physics_tmp / "pipe.msh", radius_mm=5.0, length_mm=60.0, h_mm=1.25)


@pytest.fixture(scope="session")
def tee_domain(physics_tmp) -> FluidDomain:
    return make_tee(physics_tmp / "tee.msh")


@pytest.fixture(scope="session")
def plate_pipe_domain(physics_tmp) -> FluidDomain:
    """Pipe R=6 mm, L=40 mm, refined to 1 mm in 8–26 mm around the Brinkman plate at z=12 mm."""
    return make_pipe(physics_tmp / "plate_pipe.msh", radius_mm=6.0, length_mm=40.0, h_mm=2.0,
                     refine_z_mm=(8.0, 26.0), h_fine_mm=1.0)


