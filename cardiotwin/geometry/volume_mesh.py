"""Tetrahedral fluid meshes (gmsh) with named boundary tags.

Units: mm, DICOM patient coordinates (LPS). The conversion to SI happens in
:mod:`cardiotwin.physics.mesh` when the mesh is loaded.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cardiotwin.errors import GeometryError, InputError
from cardiotwin.geometry.quality import tet_quality
from cardiotwin.provenance import Provenance, sha256_bytes

if TYPE_CHECKING:
    from cardiotwin.geometry.surface import FluidSurface

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoundaryCap:
    """A flat inlet or outlet of the fluid domain.

    Attributes
    ----------
    name : ``"inlet"`` or ``"outlet:<name>"``.
    tag : the gmsh physical tag of its facets in the mesh file.
    centre_mm : (3,) centroid of the cap (LPS mm).
    normal : (3,) unit normal pointing **out of** the fluid domain.
    area_mm2 : cap area.
    """

    name: str
    tag: int
    centre_mm: tuple[float, float, float]
    normal: tuple[float, float, float]
    area_mm2: float


@dataclass(frozen=True)
class FluidDomain:
    """A tagged tetrahedral fluid mesh written by gmsh (``.msh`` v4.1, mm).

    Attributes
    ----------
    mesh_path : path of the ``.msh`` file (physical groups: volume ``fluid``, surfaces ``wall``,
        ``inlet``, ``outlet:<name>``).
    facet_tags : name → physical tag for every boundary (``"wall"``, ``"inlet"``, ``"outlet:..."``).
    cell_tags : name → physical tag of volume groups (at least ``"fluid"``).
    caps : the inlet and outlets with centre, outward normal and area.
    n_cells, n_vertices : mesh size.
    quality : mesh-quality summary (e.g. ``min_dihedral_deg``, ``min_radius_ratio``, ``h_min_mm``).
    provenance : :meth:`cardiotwin.provenance.Provenance.to_dict` of the meshing step.
    """

    mesh_path: Path
    facet_tags: dict[str, int]
    cell_tags: dict[str, int]
    caps: tuple[BoundaryCap, ...]
    n_cells: int
    n_vertices: int
    quality: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def inlet(self) -> BoundaryCap:
        return next(c for c in self.caps if c.name == "inlet")

    @property
    def outlets(self) -> tuple[BoundaryCap, ...]:
        return tuple(c for c in self.caps if c.name.startswith("outlet:"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mesh_path"] = str(self.mesh_path)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FluidDomain:
        d = dict(d)
        d["mesh_path"] = Path(d["mesh_path"])
        d["caps"] = tuple(
            BoundaryCap(**{**c, "centre_mm": tuple(c["centre_mm"]), "normal": tuple(c["normal"])})
            for c in d["caps"]
        )
        return cls(**d)


# ------------------------------------------------------------------------------------------------
# meshing (functions below the contract dataclasses)
# ------------------------------------------------------------------------------------------------


#: physical tag of the fluid volume and of the wall; the inlet is 2, outlets 3, 4, ... by name.
FLUID_TAG = 1
WALL_TAG = 1
INLET_TAG = 2

#: gmsh 3-D algorithms by name
_ALGORITHMS_3D = {"delaunay": 1, "hxt": 10}
#: gmsh 2-D algorithms by name (MeshAdapt gives the best triangles on reparametrised patches)
_ALGORITHMS_2D = {"meshadapt": 1, "delaunay": 5, "frontal-delaunay": 6}

# gmsh is a process-wide singleton: one meshing at a time in this process.
_GMSH_LOCK = threading.Lock()


@contextmanager
def gmsh_session(n_threads: int, *, kind: str = "fluid") -> Iterator[object]:
    """An initialised gmsh with a fresh model named after ``kind``, removed on exit."""
    import gmsh

    with _GMSH_LOCK:
        owner = not gmsh.isInitialized()
        if owner:
            gmsh.initialize(
                [],
                readConfigFiles=False,
                interruptible=threading.current_thread() is threading.main_thread(),
            )
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.Verbosity", 2)
        gmsh.option.setNumber("General.NumThreads", int(n_threads))
        name = f"cardiotwin_{kind}_{os.getpid()}_{time.monotonic_ns()}"
        gmsh.model.add(name)
        try:
            yield gmsh
        finally:
            gmsh.model.setCurrent(name)
            gmsh.model.remove()
            if owner:
                gmsh.finalize()


def _cap_tags(caps: list) -> dict[str, int]:
    names = ["wall", "inlet"] + sorted(c.name for c in caps if c.name != "inlet")
    tags = {"wall": WALL_TAG, "inlet": INLET_TAG}
    for i, n in enumerate(names[2:]):
        tags[n] = INLET_TAG + 1 + i
    return tags


def _match_cap(coords: np.ndarray, caps: list, tol_mm: float) -> str | None:
    """Name of the cap whose plane holds every node of a gmsh surface, else None (wall)."""
    centroid = coords.mean(axis=0)
    best = None
    for c in caps:
        n = np.asarray(c.normal)
        off = np.abs((coords - np.asarray(c.centre_mm)) @ n)
        if off.max() > tol_mm:
            continue
        r_eq = math.sqrt(c.area_mm2 / math.pi)
        dist = float(np.linalg.norm(centroid - np.asarray(c.centre_mm)))
        if dist <= 1.5 * r_eq and (best is None or dist < best[1]):
            best = (c.name, dist)
    return None if best is None else best[0]


def _add_discrete_surface(gmsh: Any, surface: FluidSurface) -> None:
    """Load the triangles into gmsh as discrete surfaces: one per cap and one for the wall."""
    mesh = surface.mesh
    markers = surface.face_markers()
    for i in range(len(surface.caps) + 1):
        gmsh.model.addDiscreteEntity(2, i + 1)
    gmsh.model.mesh.addNodes(
        2, 1, np.arange(1, len(mesh.vertices) + 1), np.asarray(mesh.vertices, dtype=float).ravel()
    )
    for i in range(len(surface.caps) + 1):
        faces = np.asarray(mesh.faces[markers == i], dtype=np.int64) + 1
        gmsh.model.mesh.addElementsByType(i + 1, 2, [], faces.ravel())
    gmsh.model.mesh.createTopology()


#: Default time bound of the gmsh steps of :func:`mesh_fluid_domain` (s).
DEFAULT_MESH_TIMEOUT_S = 900.0

#: What to try when a gmsh step runs out of time, by step.
_STEP_ADVICE = {
    "start": "the meshing process did not start; check that gmsh imports in a fresh Python",
    "classify": (
        "gmsh's surface classification (classifySurfaces/createGeometry) is stuck, which happens "
        "on noisy, self-touching or very fine surfaces: smooth or decimate the lumen surface "
        "(segment on a coarser grid), remove tiny islands and degenerate caps, or check the "
        "segmentation (a twin needs one aorta and one LV)"
    ),
    "mesh_2d": ("raise h_min_mm/h_max_mm or use surface_algorithm='frontal-delaunay' "
                "(`twin build --h-min/--h-max`, `--surface-mesh-algorithm frontal-delaunay`)"),
    "mesh_3d": ("raise h_min_mm/h_max_mm, use algorithm='hxt' or optimize_netgen=False "
                "(`twin build --mesh-algorithm hxt`, `--no-netgen`)"),
    "extract": "the mesh is too large to read back; raise h_min_mm/h_max_mm",
    "write": "the mesh is too large to write; raise h_min_mm/h_max_mm",
}


def _check_caps(surface: FluidSurface, min_area_mm2: float) -> None:
    """Refuse caps without faces or with an area below ``min_area_mm2`` before meshing."""
    areas = np.asarray(surface.mesh.area_faces, dtype=float)
    bad = []
    for c in surface.caps:
        faces = np.asarray(surface.cap_faces.get(c.name, []), dtype=np.int64)
        area = float(areas[faces].sum()) if faces.size else 0.0
        if faces.size == 0 or area < min_area_mm2 or c.area_mm2 < min_area_mm2:
            bad.append(f"{c.name} ({min(area, c.area_mm2):.1f} mm², {faces.size} faces)")
    if bad:
        raise GeometryError(
            f"degenerate cap(s) {', '.join(bad)} (< {min_area_mm2:g} mm²) — not meshed, gmsh "
            "would hang or fail on them. A vessel cut at a corner of the field of view or a "
            "small segmentation island makes such caps: check the segmentation (one aorta, one "
            "LV, branches leaving through the FOV faces), crop the labels, or build the surface "
            "from labels of your own.")


def _worker_main(job_path: str, result_path: str) -> int:
    """Entry point of the meshing child process (see :func:`run_gmsh_in_child`).

    Reads ``(target, args)`` from the pickle ``job_path``, calls ``target(*args, on_step)`` where
    ``target`` is ``"package.module:function"`` and ``on_step(name)`` prints ``step <name>`` on
    stdout before each gmsh step, and pickles ``("ok", result)`` or ``("error", exception)`` to
    ``result_path``.
    """
    import importlib
    import pickle

    target, args = pickle.loads(Path(job_path).read_bytes())
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)

    def on_step(step: str) -> None:
        print(f"step {step}", flush=True)

    try:
        result: tuple[str, Any] = ("ok", func(*args, on_step))
    except Exception as exc:  # every failure goes back to the parent
        result = ("error", exc)
    try:
        data = pickle.dumps(result)
    except Exception:
        data = pickle.dumps(("error", GeometryError(f"meshing failed: {result[1]}")))
    Path(result_path).write_bytes(data)
    return 0


def run_gmsh_in_child(target: str, args: tuple[Any, ...], *, timeout_s: float,
                      advice: dict[str, str], bound_hint: str,
                      partial_path: Path | None = None) -> Any:
    """Run a gmsh meshing function in a child Python process, killed after ``timeout_s``.

    A plain subprocess (not :mod:`multiprocessing`), so the caller's main script is never
    re-imported in the child; the job and result travel as pickles in a private temporary
    folder, the steps as lines on the child's stdout. gmsh cannot be interrupted from another
    thread, so a process is the only reliable time bound.

    Parameters
    ----------
    target : ``"package.module:function"``, called as ``function(*args, on_step)``; it calls
        ``on_step(name)`` before each gmsh step and returns a picklable result.
    args : picklable positional arguments.
    timeout_s : time bound (s) of the whole run.
    advice : step name → what to try when that step runs out of time or dies.
    bound_hint : how the user raises the bound, e.g. ``"mesh_fluid_domain(timeout_s=...)"``.
    partial_path : a file the target may leave half-written; removed in every case.

    Returns
    -------
    The target's result.

    Raises
    ------
    GeometryError
        The bound was reached (the message names the step), or the child died; whatever the
        target raised is re-raised.
    """
    import pickle
    import queue
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cardiotwin-gmsh-") as tmp:
        job, res, err = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl", Path(tmp) / "stderr.txt"
        job.write_bytes(pickle.dumps((target, args)))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this cardiotwin
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        code = ("import sys; from cardiotwin.geometry.volume_mesh import _worker_main; "
                "sys.exit(_worker_main(sys.argv[1], sys.argv[2]))")
        t0 = time.monotonic()
        with open(err, "wb") as err_file:
            proc = subprocess.Popen([sys.executable, "-c", code, str(job), str(res)],
                                    stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.DEVNULL,
                                    text=True, env=env)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.strip())
            lines.put(None)

        reader = threading.Thread(target=pump, name="cardiotwin-gmsh-steps", daemon=True)
        reader.start()
        step, step_t0 = "start", t0
        try:
            while True:
                left = timeout_s - (time.monotonic() - t0)
                try:
                    line = lines.get(timeout=max(left, 0.0)) if left > 0 else lines.get_nowait()
                except queue.Empty:
                    raise GeometryError(
                        f"meshing did not finish within {timeout_s:g} s: stopped in gmsh step "
                        f"'{step}' after {time.monotonic() - step_t0:.0f} s in it. "
                        f"{advice.get(step, '')}. The bound is {bound_hint}.") from None
                if line is None:
                    break
                if line.startswith("step "):
                    step, step_t0 = line[5:], time.monotonic()
                    logger.debug("gmsh step %s", step)
            proc.wait(timeout=30.0)
            if not res.exists():
                tail = err.read_text(errors="replace")[-2000:]
                raise GeometryError(
                    f"the meshing process died in gmsh step '{step}' (exit code "
                    f"{proc.returncode}); {advice.get(step, '')}. Its last output: {tail}")
            kind, payload = pickle.loads(res.read_bytes())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(5.0)
            if proc.stdout is not None:
                proc.stdout.close()
            if partial_path is not None:
                partial_path.unlink(missing_ok=True)
    if kind == "error":
        raise payload
    logger.debug("%s ran in a child process (%.1f s)", target, time.monotonic() - t0)
    return payload


def _mesh_in_child(surface: FluidSurface, out_path: Path, prov: Provenance,
                   options: dict[str, Any], timeout_s: float) -> FluidDomain:
    """:func:`_mesh_with_gmsh` in a child process (:func:`run_gmsh_in_child`)."""
    t0 = time.monotonic()
    domain: FluidDomain = run_gmsh_in_child(
        "cardiotwin.geometry.volume_mesh:_mesh_with_gmsh", (surface, out_path, prov, options),
        timeout_s=timeout_s, advice=_STEP_ADVICE,
        bound_hint="mesh_fluid_domain(timeout_s=...) (`twin build --mesh-timeout S`)",
        partial_path=out_path.with_name(out_path.name + ".part.msh"))
    logger.info("fluid mesh %s: %d tets, %d vertices in a child process (%.1f s)",
                out_path.name, domain.n_cells, domain.n_vertices, time.monotonic() - t0)
    return domain

def mesh_fluid_domain(
    surface: FluidSurface,
    out_path: str | Path,
    *,
    h_max_mm: float = 3.0,
    h_min_mm: float = 1.2,
    refine_centre_mm: tuple[float, float, float] | np.ndarray | None = None,
    refine_radius_mm: float = 20.0,
    refine_transition_mm: float | None = None,
    seed: int = 0,
    n_threads: int = 1,
    algorithm: str = "delaunay",
    surface_algorithm: str = "meshadapt",
    classify_angle_deg: float = 120.0,
    elements_per_2pi: int = 0,
    optimize_netgen: bool = True,
    binary: bool = False,
    gmsh_options: dict[str, float] | None = None,
    timeout_s: float | None = DEFAULT_MESH_TIMEOUT_S,
    min_cap_area_mm2: float = 1.0,
) -> FluidDomain:
    """Tetrahedral mesh of a capped lumen surface, with named boundary tags (gmsh).

    The triangles are loaded into gmsh as discrete surfaces (each cap and the wall separate, from
    ``surface.cap_faces``), the wall split into patches that can be reparametrised
    (``classifySurfaces`` + ``createGeometry``) and remeshed with a
    size field: ``h_min_mm`` within ``refine_radius_mm`` of ``refine_centre_mm`` (use the valve:
    annulus centre + ~8 mm along the annulus normal), growing linearly to ``h_max_mm`` over
    ``refine_transition_mm``. Tetrahedra by Delaunay (or HXT) with gmsh optimisation
    (and Netgen's when ``optimize_netgen``).

    Physical groups: volume ``fluid``; surfaces ``wall``, ``inlet``, ``outlet:<name>``; each gmsh
    surface is assigned to a cap when all its nodes lie on that cap's plane near its centre.

    Parameters
    ----------
    surface : FluidSurface
        From :func:`cardiotwin.geometry.surface.fluid_surface`.
    out_path : path of the ``.msh`` (v4.1, mm) to write; written to a temporary name first.
    h_max_mm, h_min_mm : coarse and fine element sizes (mm), ``0 < h_min ≤ h_max``.
    refine_centre_mm : (3,) LPS centre of the fine region; ``None`` = uniform ``h_max_mm``.
    refine_radius_mm : radius of the fine region (mm).
    refine_transition_mm : width of the size transition (mm); default ``(h_max - h_min) / 0.3``
        (sizes grow by 0.3 mm per mm, a gradation that keeps the tetrahedra well shaped).
    seed : gmsh random seed (``Mesh.RandomSeed``), for reproducible meshes.
    n_threads : gmsh threads (1–2 on a shared machine).
    algorithm : ``"delaunay"`` (gmsh 3-D Delaunay) or ``"hxt"``.
    surface_algorithm : ``"meshadapt"`` (default: fewest skinny wall triangles, hence the best
        minimum dihedral angle), ``"delaunay"`` or ``"frontal-delaunay"`` (faster).
    classify_angle_deg : angle (°) between neighbouring wall triangles above which an edge becomes
        a feature curve; the default (120°) keeps the wall smooth (caps are separate anyway).
    elements_per_2pi : when > 0, surface sizes are also bounded by the curvature radius R
        (``2πR / elements_per_2pi``), which resolves small branches.
    optimize_netgen : also run Netgen's optimiser after gmsh's (on by default: it removes the
        slivers gmsh's own optimiser leaves between four boundary nodes).
    binary : write a binary ``.msh`` (smaller, same content).
    gmsh_options : extra numeric gmsh options (``{"Mesh.Smoothing": 10}``), applied last.
    timeout_s : time bound (s) of the gmsh steps. gmsh runs in a child Python process that is
        killed when the bound is reached (gmsh cannot be interrupted from another thread);
        ``None`` runs gmsh in this process without a bound. The result is the same either way.
    min_cap_area_mm2 : caps smaller than this (mm²) are refused before meshing (a degenerate
        cap makes gmsh's surface classification hang or fail).

    Returns
    -------
    FluidDomain
        Tags, caps measured on the volume mesh's boundary, size, quality (see
        :func:`cardiotwin.geometry.quality.tet_quality`) and provenance.

    Raises
    ------
    InputError
        Bad sizes or algorithm.
    GeometryError
        A cap is degenerate, a cap is not recovered as its own gmsh surface, meshing fails, gives
        inverted cells or does not finish within ``timeout_s`` (the message names the step).
    """
    from cardiotwin.geometry.surface import FluidSurface

    if not isinstance(surface, FluidSurface):
        raise InputError(
            f"surface must be a FluidSurface (from fluid_surface); got {type(surface).__name__}"
        )
    if not (0 < h_min_mm <= h_max_mm):
        raise InputError(
            f"need 0 < h_min_mm <= h_max_mm; got h_min_mm={h_min_mm}, h_max_mm={h_max_mm}"
        )
    if refine_radius_mm <= 0:
        raise InputError(f"refine_radius_mm must be > 0; got {refine_radius_mm}")
    if refine_transition_mm is None:
        refine_transition_mm = max((h_max_mm - h_min_mm) / 0.3, 1e-3)
    if refine_transition_mm <= 0:
        raise InputError(f"refine_transition_mm must be > 0; got {refine_transition_mm}")
    if algorithm not in _ALGORITHMS_3D:
        raise InputError(f"algorithm must be one of {sorted(_ALGORITHMS_3D)}; got {algorithm!r}")
    if surface_algorithm not in _ALGORITHMS_2D:
        raise InputError(
            f"surface_algorithm must be one of {sorted(_ALGORITHMS_2D)}; got {surface_algorithm!r}"
        )
    if not any(c.name == "inlet" for c in surface.caps):
        raise GeometryError("the surface has no inlet cap; build it with fluid_surface()")
    if timeout_s is not None and not timeout_s > 0:
        raise InputError(f"timeout_s must be > 0 or None; got {timeout_s}")
    _check_caps(surface, min_cap_area_mm2)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    digest = sha256_bytes(
        np.ascontiguousarray(surface.mesh.vertices, dtype="<f8").tobytes()
        + np.ascontiguousarray(surface.mesh.faces, dtype="<i8").tobytes()
        + np.ascontiguousarray(surface.face_markers(), dtype="<i4").tobytes()
    )
    prov = Provenance(
        step="geometry.mesh_fluid_domain",
        inputs={"surface": digest},
        parameters={
            "h_max_mm": h_max_mm,
            "h_min_mm": h_min_mm,
            "refine_centre_mm": None
            if refine_centre_mm is None
            else [float(v) for v in refine_centre_mm],
            "refine_radius_mm": refine_radius_mm,
            "refine_transition_mm": refine_transition_mm,
            "seed": seed,
            "n_threads": n_threads,
            "algorithm": algorithm,
            "surface_algorithm": surface_algorithm,
            "classify_angle_deg": classify_angle_deg,
            "elements_per_2pi": elements_per_2pi,
            "optimize_netgen": optimize_netgen,
            "gmsh_options": dict(gmsh_options or {}),
        },
    )
    options = {
        "h_max_mm": h_max_mm, "h_min_mm": h_min_mm, "refine_centre_mm": refine_centre_mm,
        "refine_radius_mm": refine_radius_mm, "refine_transition_mm": refine_transition_mm,
        "seed": seed, "n_threads": n_threads, "algorithm": algorithm,
        "surface_algorithm": surface_algorithm, "classify_angle_deg": classify_angle_deg,
        "elements_per_2pi": elements_per_2pi, "optimize_netgen": optimize_netgen,
        "binary": binary, "gmsh_options": gmsh_options,
    }
    if timeout_s is None:
        return _mesh_with_gmsh(surface, out_path, prov, options, lambda step: None)
    return _mesh_in_child(surface, out_path, prov, options, float(timeout_s))


def _mesh_with_gmsh(surface: FluidSurface, out_path: Path, prov: Provenance,
                    options: dict[str, Any], on_step: Any) -> FluidDomain:
    """The gmsh part of :func:`mesh_fluid_domain`; ``on_step(name)`` is called before each step."""
    h_max_mm = options["h_max_mm"]
    h_min_mm = options["h_min_mm"]
    refine_centre_mm = options["refine_centre_mm"]
    refine_radius_mm = options["refine_radius_mm"]
    refine_transition_mm = options["refine_transition_mm"]
    seed = options["seed"]
    n_threads = options["n_threads"]
    algorithm = options["algorithm"]
    surface_algorithm = options["surface_algorithm"]
    classify_angle_deg = options["classify_angle_deg"]
    elements_per_2pi = options["elements_per_2pi"]
    optimize_netgen = options["optimize_netgen"]
    binary = options["binary"]
    gmsh_options = options["gmsh_options"]

    caps = list(surface.caps)
    tags = _cap_tags(caps)
    extent = float(np.ptp(surface.mesh.bounds, axis=0).max())
    plane_tol = max(1e-3 * extent, 1e-4)

    with gmsh_session(n_threads) as gmsh:
        on_step("classify")
        with prov.timed("classify"):
            _add_discrete_surface(gmsh, surface)
            # Caps and wall are separate discrete entities already; classification only splits the
            # wall into patches that can be reparametrised (features below the angle are kept).
            try:
                gmsh.model.mesh.classifySurfaces(math.radians(classify_angle_deg), True, True,
                                                 math.pi)
                gmsh.model.mesh.createGeometry()
                surf_tags = [t for _, t in gmsh.model.getEntities(2)]
                groups: dict[str, list[int]] = {n: [] for n in tags}
                for st in surf_tags:
                    _, xyz, _ = gmsh.model.mesh.getNodes(2, st, includeBoundary=True)
                    name = _match_cap(np.asarray(xyz).reshape(-1, 3), caps, plane_tol)
                    groups[name or "wall"].append(st)
            except Exception as exc:  # gmsh raises bare Exception with its own message
                raise GeometryError(
                    f"gmsh could not reparametrise the lumen surface ({exc}) in its surface "
                    f"classification step. {_STEP_ADVICE['classify']}; a scan with much "
                    "thicker slices than pixels (e.g. 0.4 × 0.4 × 0.7 mm) is the usual cause: "
                    "try another series, or your own surface (`twin build --surface`)") from None
            missing = [n for n, g in groups.items() if not g]
            if missing:
                raise GeometryError(
                    f"boundary part(s) {missing} not recovered as gmsh surfaces after "
                    "reparametrisation; check that the caps of the FluidSurface are flat and "
                    "non-empty (surface.cap_faces)."
                )
            loop = gmsh.model.geo.addSurfaceLoop(surf_tags)
            vol = gmsh.model.geo.addVolume([loop])
            gmsh.model.geo.synchronize()

        opt = gmsh.option.setNumber
        opt("Mesh.RandomSeed", int(seed))
        opt("Mesh.MeshSizeMin", float(h_min_mm))
        opt("Mesh.MeshSizeMax", float(h_max_mm))
        opt("Mesh.MeshSizeExtendFromBoundary", 0)
        opt("Mesh.MeshSizeFromPoints", 0)
        opt("Mesh.MeshSizeFromCurvature", int(elements_per_2pi))
        opt("Mesh.Algorithm", _ALGORITHMS_2D[surface_algorithm])
        opt("Mesh.Algorithm3D", _ALGORITHMS_3D[algorithm])
        opt("Mesh.Optimize", 1)
        opt("Mesh.OptimizeNetgen", 1 if optimize_netgen else 0)
        opt("Mesh.MinimumCurveNodes", 2)  # short patch-boundary curves must not force tiny edges
        for key, value in (gmsh_options or {}).items():
            try:
                opt(key, float(value))
            except Exception as exc:
                raise InputError(f"gmsh option {key!r}={value!r} rejected: {exc}") from exc
        fld = gmsh.model.mesh.field
        if refine_centre_mm is not None:
            rc = np.asarray(refine_centre_mm, dtype=float).reshape(3)
            ball = fld.add("Ball")
            fld.setNumber(ball, "Radius", float(refine_radius_mm))
            fld.setNumber(ball, "Thickness", float(refine_transition_mm))
            fld.setNumber(ball, "VIn", float(h_min_mm))
            fld.setNumber(ball, "VOut", float(h_max_mm))
            for k, v in zip(("XCenter", "YCenter", "ZCenter"), rc, strict=True):
                fld.setNumber(ball, k, float(v))
            fld.setAsBackgroundMesh(ball)
        else:
            const = fld.add("MathEval")
            fld.setString(const, "F", repr(float(h_max_mm)))
            fld.setAsBackgroundMesh(const)

        gmsh.model.addPhysicalGroup(3, [vol], FLUID_TAG, name="fluid")
        for name, g in groups.items():
            gmsh.model.addPhysicalGroup(2, g, tags[name], name=name)

        try:
            on_step("mesh_2d")
            with prov.timed("mesh_2d"):
                gmsh.model.mesh.generate(2)
            on_step("mesh_3d")
            with prov.timed("mesh_3d"):
                gmsh.model.mesh.generate(3)
        except Exception as exc:
            raise GeometryError(
                f"gmsh failed to mesh the fluid domain: {exc}. Check the surface (self-intersections) "
                "or change h_min_mm/h_max_mm."
            ) from exc

        on_step("extract")
        with prov.timed("extract"):
            node_tags, xyz, _ = gmsh.model.mesh.getNodes()
            pts = np.asarray(xyz).reshape(-1, 3)
            index = np.full(int(node_tags.max()) + 1, -1, dtype=np.int64)
            index[node_tags] = np.arange(len(node_tags))
            _, tet_nodes = gmsh.model.mesh.getElementsByType(4)
            tets = index[np.asarray(tet_nodes, dtype=np.int64).reshape(-1, 4)]
            if len(tets) == 0:
                raise GeometryError(
                    "gmsh produced no tetrahedra; the surface may not enclose a volume"
                )
            tri_by_group: dict[str, np.ndarray] = {}
            for name, g in groups.items():
                tris = []
                for st in g:
                    _, ntags = gmsh.model.mesh.getElementsByType(2, st)
                    tris.append(index[np.asarray(ntags, dtype=np.int64).reshape(-1, 3)])
                tri_by_group[name] = np.concatenate(tris) if tris else np.zeros((0, 3), int)

        on_step("write")
        with prov.timed("write"):
            opt("Mesh.MshFileVersion", 4.1)
            opt("Mesh.Binary", 1 if binary else 0)
            opt("Mesh.SaveAll", 0)
            tmp = out_path.with_name(out_path.name + ".part.msh")
            gmsh.write(str(tmp))
            tmp.replace(out_path)

    quality = tet_quality(pts, tets)
    if quality["n_inverted"]:
        raise GeometryError(f"the mesh has {quality['n_inverted']} inverted tetrahedra")
    used = np.unique(tets)
    boundary_caps = []
    for c in caps:
        tri = tri_by_group[c.name]
        p = pts[tri]
        avec = 0.5 * np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        area = np.linalg.norm(avec, axis=1)
        centre = (p.mean(axis=1) * area[:, None]).sum(axis=0) / area.sum()
        n = np.asarray(c.normal)
        boundary_caps.append(
            BoundaryCap(
                name=c.name,
                tag=tags[c.name],
                centre_mm=tuple(float(v) for v in centre),
                normal=tuple(float(v) for v in n / np.linalg.norm(n)),
                area_mm2=float(area.sum()),
            )
        )
    domain = FluidDomain(
        mesh_path=out_path,
        facet_tags=dict(tags),
        cell_tags={"fluid": FLUID_TAG},
        caps=tuple(boundary_caps),
        n_cells=int(len(tets)),
        n_vertices=int(len(used)),
        quality=quality,
        provenance=prov.to_dict(),
    )
    logger.info(
        "fluid mesh %s: %d tets, %d vertices, min dihedral %.1f°, min radius ratio %.3f (%.1f s)",
        out_path.name,
        domain.n_cells,
        domain.n_vertices,
        quality["min_dihedral_deg"],
        quality["min_radius_ratio"],
        sum(prov.timings_s.values()),
    )
    return domain


def read_msh_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Points, tetrahedra and boundary triangles per physical name of a ``.msh`` file (meshio).

    Returns
    -------
    points : (N, 3) float array (mm).
    tets : (M, 4) int array.
    facets : name → (K, 3) int array of the triangles of each named surface group.
    """
    import meshio

    m = meshio.read(str(path))
    tag_name = {int(v[0]): k for k, v in m.field_data.items() if int(v[1]) == 2}
    tets = np.concatenate([b.data for b in m.cells if b.type == "tetra"])
    facets: dict[str, list[np.ndarray]] = {}
    phys = m.cell_data.get("gmsh:physical")
    if phys is None:
        raise GeometryError(f"{path}: no physical groups; not a cardiotwin fluid mesh")
    for block, tags in zip(m.cells, phys, strict=True):
        if block.type != "triangle":
            continue
        for t in np.unique(tags):
            facets.setdefault(tag_name.get(int(t), str(int(t))), []).append(block.data[tags == t])
    return np.asarray(m.points), tets, {k: np.concatenate(v) for k, v in facets.items()}


def write_vtu(domain: FluidDomain, path: str | Path) -> Path:
    """Write the tetrahedra and the tagged boundary triangles to a ``.vtu`` for ParaView.

    Cell data ``tag`` holds the physical tag (volume ``fluid`` and each boundary); the names are
    in the field data. Written to a temporary name and renamed.
    """
    import meshio

    pts, tets, facets = read_msh_arrays(domain.mesh_path)
    cells = [meshio.CellBlock("tetra", tets)]
    tag_data = [np.full(len(tets), domain.cell_tags["fluid"], dtype=np.int32)]
    for name, tri in facets.items():
        cells.append(meshio.CellBlock("triangle", tri))
        tag_data.append(np.full(len(tri), domain.facet_tags.get(name, -1), dtype=np.int32))
    m = meshio.Mesh(pts, cells, cell_data={"tag": tag_data})
    path = Path(path)
    tmp = path.with_name(path.name + ".part.vtu")
    meshio.write(str(tmp), m)
    tmp.replace(path)
    return path
