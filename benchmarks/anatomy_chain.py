"""Anatomy chain benchmark: DICOM → labels → landmarks → surface → fluid mesh at 512 x 512 x 300.

Run with ``python benchmarks/anatomy_chain.py`` (``--help`` for options), or
``python benchmarks/run.py --anatomy``. Writes
``benchmarks/results/<date>-<host>-anatomy_chain.json`` and prints Markdown tables for
``docs/performance.md``.

What is measured
----------------
* The series: a phantom variant (:func:`cardiotwin.imaging.phantom.variant`, seed 0; ``default``
  unless ``--variant hard``) with its field of view
  extended (``fov_extend_mm``) and its voxels sized (``spacing_mm``) so that the grid is exactly
  512 x 512 x 300 (0.42 x 0.42 x 0.72 mm by default, like a cardiac CT angiogram), written as a
  DICOM series by :func:`cardiotwin.imaging.dicom.write_ct_series` in a process of its own and
  cached in ``benchmarks/.cache/``.
* Stages, each in its **own fresh process** (``python -c``), the previous stage's results passed
  through pickle files in a temporary folder:

  ======== ============================================================================
  read     :func:`cardiotwin.imaging.dicom.read_series` (folder → float32 ``Volume``)
  segment  :func:`cardiotwin.imaging.segment.segment_heart`
  landmark :func:`cardiotwin.geometry.landmarks.measure_aortic_root`
  surface  :func:`cardiotwin.geometry.surface.fluid_surface` (default options)
  mesh     :func:`cardiotwin.geometry.volume_mesh.mesh_fluid_domain` with the sizes of
           ``twin build`` (:class:`cardiotwin.workflows.BuildSettings`), refined at the valve
  ======== ============================================================================

  ``s`` is the wall-clock of the stage call alone; imports and the pickle load/save are
  reported separately (``import_s``, ``io_s``). Peak memory is the stage process's own
  high-water mark, ``VmHWM`` of ``/proc/self/status`` read inside that process, so it is that
  stage's alone (imports and the pickles included). Not ``RUSAGE_CHILDREN`` of the runner, which is
  a maximum over all children, and not ``ru_maxrss`` of the child, which on Linux can carry the
  high-water mark of the process it was forked from (kept as ``ru_maxrss_self_mib``); the phantom
  is built in a process of its own so that the runner stays small. The mesher runs gmsh in a
  child process of its own: its peak (``RUSAGE_CHILDREN`` inside the stage process, whose only
  child it is) is ``peak_rss_children_mib``, and ``peak_rss_mib`` is the larger of the two.
* Iso-surface baseline, in the same run on the same series: ``dicom2stl`` 0.5.0 (PyPI; SimpleITK
  read + VTK ``vtkContourFilter`` + clean/largest + small-part removal + 25 smoothing iterations +
  90 % decimation + STL write), with ``--isovalue`` = our blood threshold from the segment stage,
  ``--enable largest`` and ``--disable shrink`` (its default halves every axis above 256 voxels;
  we mesh at full resolution), called through its ``Dicom2STL(args)`` entry point in a fresh
  process, imports excluded. Ours on the same series and threshold, also in a fresh process:
  ``read_series`` + ``CT >= threshold`` + :func:`cardiotwin.geometry.surface.mask_surface`
  (largest component, marching cubes, repair, 20 Taubin iterations, repair, quadric decimation
  to 1.8 mm edges as in ``fluid_surface``) + STL export. The ratio is ours / dicom2stl
  (< 1 = ours faster); the iso-surface part alone (ours without read and write) is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAGES = ("read", "segment", "landmarks", "surface", "mesh")
TARGET_S = 60.0

# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def phantom_parameters(variant: str, shape_ijk: tuple[int, int, int],
                       spacing_mm: tuple[float, float, float], seed: int = 0):
    """Variant parameters whose field of view gives exactly ``shape_ijk`` voxels.

    The variant's own extensions are kept where they fit (right, anterior, inferior first; the
    rest of each axis goes to the opposite side); without any, the anatomy is centred.
    """
    from cardiotwin.imaging import phantom

    p = phantom.variant_parameters(variant, seed=seed, fov_extend_mm=(0.0,) * 6)
    layout = phantom._Layout(p)  # the anatomy's own extent (no extension)
    base = layout.fov_hi - layout.fov_lo
    own = phantom.variant_parameters(variant, seed=seed).fov_extend_mm
    ext = []
    for a in range(3):
        # (n - 0.5) voxels: ceil() in make_phantom then gives exactly n
        extra = (shape_ijk[a] - 0.5) * spacing_mm[a] - base[a]
        if extra < 0:
            raise SystemExit(f"axis {'xyz'[a]}: {shape_ijk[a]} x {spacing_mm[a]} mm is smaller "
                             f"than the anatomy ({base[a]:.1f} mm); use a larger spacing")
        lo = min(own[2 * a], extra) if any(own) else 0.5 * extra
        ext += [lo, extra - lo]
    return phantom.variant_parameters(variant, seed=seed, spacing_mm=tuple(spacing_mm),
                                      fov_extend_mm=tuple(ext))


def make_series(cache: Path, variant: str, shape_ijk: tuple[int, int, int],
                spacing_mm: tuple[float, float, float], seed: int = 0) -> tuple[Path, dict]:
    """Write (or reuse) the phantom series; returns the folder and a description."""
    from dataclasses import asdict

    from cardiotwin.imaging import phantom
    from cardiotwin.imaging.dicom import write_ct_series

    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")
    tag = "x".join(map(str, shape_ijk)) + "_" + "x".join(f"{s:g}" for s in spacing_mm)
    folder = cache / f"{variant}{seed}_{tag}"
    meta_path = folder / "phantom.json"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        params = phantom_parameters(variant, shape_ijk, spacing_mm, seed)
        t0 = time.perf_counter()
        ph = phantom.make_phantom(params, seed=seed)
        t_ph = time.perf_counter() - t0
        if ph.ct.shape != shape_ijk[::-1]:
            raise SystemExit(f"phantom grid is {ph.ct.shape[::-1]} (ijk), not {shape_ijk}")
        t0 = time.perf_counter()
        write_ct_series(ph.ct, folder, series_description=f"benchmark anatomy chain ({variant} phantom)")
        t_wr = time.perf_counter() - t0
        meta = {"variant": variant, "seed": seed, "shape_ijk": list(shape_ijk),
                "spacing_mm": list(spacing_mm), "blood_hu": params.blood_hu,
                "fov_extend_mm": list(params.fov_extend_mm),
                "phantom_s": t_ph, "dicom_write_s": t_wr,
                "parameters": {k: v for k, v in asdict(params).items()
                               if isinstance(v, (int, float, bool))}}
        meta_path.write_text(json.dumps(meta, indent=2))
        (folder / ".complete").write_text("")
        print(f"phantom {t_ph:.1f} s, DICOM write {t_wr:.1f} s → {folder}", flush=True)
    meta = json.loads(meta_path.read_text())
    meta["bytes"] = sum(f.stat().st_size for f in folder.glob("*.dcm"))
    meta["files"] = len(list(folder.glob("*.dcm")))
    return folder, meta


# ---------------------------------------------------------------------------------------------
# one stage = one child process
# ---------------------------------------------------------------------------------------------

_CHILD = r"""
import json, pickle, resource, sys, time
from pathlib import Path
t_import = time.perf_counter()
stage, series, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
import numpy as np
from cardiotwin.imaging.dicom import read_series
from cardiotwin.imaging.segment import segment_heart
from cardiotwin.geometry.landmarks import measure_aortic_root
from cardiotwin.geometry.surface import fluid_surface, mask_surface
from cardiotwin.geometry.volume_mesh import mesh_fluid_domain
from cardiotwin.workflows import BuildSettings
import_s = time.perf_counter() - t_import
io = 0.0
def load(name):
    global io
    t = time.perf_counter()
    with open(work / f"{name}.pkl", "rb") as fh:
        out = pickle.load(fh)
    io += time.perf_counter() - t
    return out
def save(name, obj):
    global io
    t = time.perf_counter()
    with open(work / f"{name}.pkl", "wb") as fh:
        pickle.dump(obj, fh, protocol=5)
    io += time.perf_counter() - t
info = {}
if stage == "read":
    t0 = time.perf_counter(); ct = read_series(series); s = time.perf_counter() - t0
    save("ct", ct)
    info = {"shape_kji": list(ct.shape), "spacing_mm": list(ct.spacing_mm)}
elif stage == "segment":
    ct = load("ct")
    t0 = time.perf_counter(); seg = segment_heart(ct); s = time.perf_counter() - t0
    save("seg", seg)
    info = {"blood_threshold_hu": float(seg.blood_threshold_hu),
            "calcium_threshold_hu": float(seg.calcium_threshold_hu),
            "steps_s": seg.report.get("timings")}
elif stage == "landmarks":
    ct, seg = load("ct"), load("seg")
    t0 = time.perf_counter(); lms = measure_aortic_root(ct, seg); s = time.perf_counter() - t0
    save("lms", lms)
    info = {"annulus_diameter_mm": float(lms.annulus_diameter_mm)}
elif stage == "surface":
    seg, lms = load("seg"), load("lms")
    t0 = time.perf_counter(); fs = fluid_surface(seg.labels, lms); s = time.perf_counter() - t0
    save("fs", fs)
    info = {"faces": int(len(fs.mesh.faces)), "caps": len(fs.caps),
            "steps_s": fs.provenance.get("timings_s")}
elif stage == "mesh":
    fs, lms = load("fs"), load("lms")
    bs = BuildSettings()
    refine = tuple(np.asarray(lms.annulus_centre_mm) + 8.0 * np.asarray(lms.annulus_normal))
    t0 = time.perf_counter()
    dom = mesh_fluid_domain(fs, work / "fluid.msh", h_max_mm=bs.h_max_mm, h_min_mm=bs.h_min_mm,
                            refine_centre_mm=refine, refine_radius_mm=bs.refine_radius_mm,
                            timeout_s=float(sys.argv[4]))
    s = time.perf_counter() - t0
    info = {"tets": int(dom.n_cells)}
elif stage == "iso_ours":
    thr = float(sys.argv[4])
    t0 = time.perf_counter(); ct = read_series(series); t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    surf = mask_surface(np.asarray(ct.array) >= thr, ct, target_edge_mm=1.8)
    t_iso = time.perf_counter() - t0
    t0 = time.perf_counter(); surf.export(work / "ours.stl"); t_write = time.perf_counter() - t0
    s = t_read + t_iso + t_write
    info = {"read_s": t_read, "iso_s": t_iso, "write_s": t_write, "faces": int(len(surf.faces))}
elif stage == "iso_dicom2stl":
    import contextlib, io as _io
    from dicom2stl.Dicom2STL import Dicom2STL
    from dicom2stl.utils.parseargs import parseargs
    sys.argv = ["dicom2stl", "--isovalue", sys.argv[4], "--enable", "largest",
                "--disable", "shrink", "-o", str(work / "dicom2stl.stl"),
                "-T", str(work / "d2s_tmp"), series]
    args = parseargs()
    buf = _io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        Dicom2STL(args)
    s = time.perf_counter() - t0
    import vtk
    r = vtk.vtkSTLReader(); r.SetFileName(str(work / "dicom2stl.stl")); r.Update()
    log = buf.getvalue()
    import re
    steps = {m[0]: float(m[1]) for m in re.findall(
        r"(Surface extracted|Surface cleaned|Small parts cleaned|Surface smoothed|Surface reduced)"
        r"\s+\d+ polygons\s+([\d.]+) seconds", log)}
    info = {"faces": int(r.GetOutput().GetNumberOfPolys()), "steps_s": steps,
            "iso_s": sum(steps.values()), "log": log[-2000:]}
else:
    sys.exit(f"unknown stage {stage}")
# VmHWM belongs to this process image alone (a fresh one at exec); ru_maxrss may carry the
# high-water mark of the process it was forked from, so it is recorded for reference only
with open("/proc/self/status") as fh:
    hwm_kib = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM"))
self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"s": s, "import_s": import_s, "io_s": io,
                  "peak_rss_self_mib": hwm_kib / 1024, "ru_maxrss_self_mib": self_kib / 1024,
                  "peak_rss_children_mib": child_kib / 1024,
                  "peak_rss_mib": max(hwm_kib, child_kib) / 1024, **info}))
"""


def run_stage(stage: str, series: Path, work: Path, *extra: str, profile: Path | None = None
              ) -> dict:
    """Run one stage in a fresh Python process; returns its JSON record."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable]
    if profile is not None:
        code = (f"import cProfile,sys; sys.argv=['-c',*sys.argv[1:]]; "
                f"cProfile.run(compile({_CHILD!r}, '<stage>', 'exec'), {str(profile)!r})")
        cmd += ["-c", code]
    else:
        cmd += ["-c", _CHILD]
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, stage, str(series), str(work), *extra],
                          capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        # a failed stage (e.g. the mesher's time bound) is recorded, not raised
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": err, "s": wall, "process_s": wall, "import_s": float("nan"),
                "io_s": float("nan"), "peak_rss_mib": float("nan")}
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["process_s"] = wall
    return rec


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("cardiotwin", "numpy", "scipy", "scikit-image", "trimesh", "gmsh", "pydicom",
                 "SimpleITK", "vtk", "dicom2stl"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["git_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True,
                                       check=False).stdout.strip()
    return out


def tables(record: dict) -> str:
    st = record["stages"]
    lines = ["| stage | s | peak RSS MiB | import s | pickle I/O s |", "|---|---|---|---|---|"]
    for name, r in st.items():
        if "error" in r:
            lines.append(f"| {name} | failed after {r['s']:.1f} ({r['error'][:60]}) | | | |")
            continue
        lines.append(f"| {name} | {r['s']:.1f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['import_s']:.1f} | {r['io_s']:.1f} |")
    done = "" if record["chain_complete"] else " (incomplete)"
    lines.append(f"| **chain**{done} | **{record['chain_s']:.1f}** | "
                 f"{max(r['peak_rss_mib'] for r in st.values() if 'error' not in r):.0f} (max) "
                 f"| | |")
    iso = record.get("isosurface")
    if iso:
        o, d = iso["ours"], iso["dicom2stl"]
        lines += ["", "| iso-surface at blood threshold | s | peak RSS MiB | faces |",
                  "|---|---|---|---|",
                  f"| cardiotwin: read + threshold + mask_surface + STL | {o['s']:.1f} "
                  f"(read {o['read_s']:.1f}, surface {o['iso_s']:.1f}, write {o['write_s']:.1f}) "
                  f"| {o['peak_rss_mib']:.0f} | {o['faces']} |",
                  f"| dicom2stl 0.5.0 (read + contour + clean + smooth + decimate + STL) | "
                  f"{d['s']:.1f} | {d['peak_rss_mib']:.0f} | {d['faces']} |",
                  f"| ratio ours / dicom2stl | {iso['ratio']:.2f} | "
                  f"{o['peak_rss_mib'] / d['peak_rss_mib']:.2f} | |"]
        if iso.get("ratio_surface_only"):
            lines.append(f"| surface steps only (ours {o['iso_s']:.1f} s, dicom2stl "
                         f"{d['iso_s']:.1f} s) | {iso['ratio_surface_only']:.2f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 512, 300),
                    metavar=("NI", "NJ", "NK"))
    ap.add_argument("--spacing", type=float, nargs=3, default=(0.42, 0.42, 0.72),
                    metavar=("DI", "DJ", "DK"), help="voxel size (mm)")
    ap.add_argument("--variant", choices=("default", "hard"), default="default",
                    help="phantom variant (cardiotwin.imaging.phantom.variant; see "
                         "docs/performance.md)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mesh-timeout", type=float, default=180.0,
                    help="time bound of the mesher (s); a mesh stage that hits it is recorded as "
                         "failed with its time")
    ap.add_argument("--no-dicom2stl", action="store_true", help="skip the iso-surface baseline")
    ap.add_argument("--profile", type=Path, default=None,
                    help="also write a cProfile file per stage into this folder (slower)")
    ap.add_argument("--cache", type=Path, default=HERE / ".cache")
    ap.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    if args.write_only:
        make_series(args.cache, args.variant, tuple(args.shape), tuple(args.spacing), args.seed)
        return {}
    # the phantom (several GiB at this size) is built in a process of its own, so that this
    # process stays small and nothing it spawns inherits its memory
    cmd = [sys.executable, __file__, "--write-only", "--shape", *map(str, args.shape),
           "--spacing", *map(str, args.spacing), "--seed", str(args.seed),
           "--variant", args.variant, "--cache", str(args.cache)]
    subprocess.run(cmd, check=True)
    series, meta = make_series(args.cache, args.variant, tuple(args.shape), tuple(args.spacing),
                               args.seed)
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    stages: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="anatomy_chain_") as tmp:
        work = Path(tmp)
        for name in STAGES:
            prof = None
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                prof = args.profile / f"{name}.prof"
            extra = (f"{args.mesh_timeout:g}",) if name == "mesh" else ()
            stages[name] = r = run_stage(name, series, work, *extra, profile=prof)
            if "error" in r:
                print(f"{name:10s} FAILED after {r['s']:.1f} s: {r['error']}", flush=True)
                break
            print(f"{name:10s} {r['s']:7.2f} s  peak {r['peak_rss_mib']:6.0f} MiB  "
                  f"(import {r['import_s']:.1f} s, io {r['io_s']:.1f} s)", flush=True)
        iso = None
        if not args.no_dicom2stl and "blood_threshold_hu" in stages.get("segment", {}):
            thr = f"{stages['segment']['blood_threshold_hu']:.1f}"
            ours = run_stage("iso_ours", series, work, thr)
            print(f"iso ours      {ours['s']:7.2f} s  peak {ours['peak_rss_mib']:6.0f} MiB",
                  flush=True)
            base = run_stage("iso_dicom2stl", series, work, thr)
            print(f"iso dicom2stl {base['s']:7.2f} s  peak {base['peak_rss_mib']:6.0f} MiB",
                  flush=True)
            iso = {"threshold_hu": float(thr), "ours": ours, "dicom2stl": base,
                   "ratio": ours["s"] / base["s"],
                   # surface steps alone: ours without read/write; dicom2stl's own step timings
                   # (contour, clean, small parts, smooth, reduce) from its log
                   "ratio_surface_only": (ours["iso_s"] / base["iso_s"] if base.get("iso_s")
                                          else None),
                   "dicom2stl_options": "--isovalue THR --enable largest --disable shrink"}
    chain = sum(r["s"] for r in stages.values())
    complete = len(stages) == len(STAGES) and not any("error" in r for r in stages.values())
    record = {
        "benchmark": "anatomy_chain",
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average_at_start": load_at_start},
        "versions": versions(),
        "series": meta,
        "stages": stages,
        "chain_s": chain,
        "chain_complete": complete,
        "chain_with_io_s": chain + sum(r["io_s"] for r in stages.values() if "error" not in r),
        "mesh_timeout_s": args.mesh_timeout,
        "target_s": TARGET_S,
        "isosurface": iso,
        "profiled": args.profile is not None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{platform.node()}-anatomy_chain.json"
    path.write_text(json.dumps(record, indent=2))
    print(tables(record))
    print(f"chain {chain:.1f} s (target {TARGET_S:.0f} s); written {path}")
    return record


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
