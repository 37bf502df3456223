"""Device–wall mechanics benchmark (issue 22 item 9): solve time and memory on the demo twin, and
how they grow with the wall mesh.

Run with ``python benchmarks/mechanics.py`` (``--help`` for options), or
``python benchmarks/run.py --mechanics``. Writes ``benchmarks/results/<date>-<host>-mechanics.json``
and prints the Markdown table of ``docs/performance.md``.

What is measured
----------------
* The twin: the demo's (phantom seed 0 at 1.0 mm voxels, ``twin build`` defaults, no baseline
  flow), built once in a temporary store.
* For each wall element size (``--sizes``, default 2.0, 1.5 and 1.0 mm), in a **fresh process**:
  the wall mesh from the twin's root wall surface
  (:func:`cardiotwin.geometry.wall_mesh.wall_domain_from_surface`, 2 mm thick, the twin's
  calcium) and the expansion of the recommended 23 mm balloon-expandable valve in it
  (:func:`cardiotwin.devices.mechanics.run_mechanics`: P2, linear wall, MUMPS). ``mesh_s`` and
  ``solve_s`` are wall-clock times of the two calls; ``peak_rss_mib`` is the process's ``VmHWM``
  (its own high-water mark, imports included); gmsh runs in a child process of its own, whose
  peak is ``peak_rss_children_mib``.
* The growth: least-squares exponents of solve time and peak memory against the number of
  unknowns, ``t ∝ n^a``, over the sizes.
* Figures of the result for each mesh (final diameter, radial force, contact and wall stress),
  so the cost is read next to how much the answer still moves.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
from cardiotwin import workflows
from cardiotwin.devices.mechanics import run_mechanics
from cardiotwin.devices.placement import place_device
from cardiotwin.geometry import wall_mesh
from cardiotwin.store import Actor

store_dir, size_mm, out = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
store = workflows.open_store(store_dir)
actor = Actor(username="bench", role="clinician", client="benchmark")
pseudonym = workflows.list_patients(store=store, actor=actor)[0].pseudonym
twin = workflows.open_twin(pseudonym, store=store, actor=actor)
surface = out / "root_wall_surface.stl"
surface.write_bytes(store.artifact_path(twin.mesh["root_surface_sha256"]).read_bytes())
calcium = np.asarray(twin.anatomy["device_context"]["calcium_points_mm"])
t0 = time.perf_counter()
wall = wall_mesh.wall_domain_from_surface(surface, twin.landmarks, out_path=out / "wall.msh",
                                          size_mm=size_mm, calcium_points_mm=calcium)
mesh_s = time.perf_counter() - t0
placement = place_device(twin.landmarks, family="balloon_expandable_thv", nominal_diameter_mm=23.0)
t0 = time.perf_counter()
mech = run_mechanics(placement, wall, model="linear", degree=2)
solve_s = time.perf_counter() - t0
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("RESULT " + json.dumps({
    "size_mm": size_mm, "cells": wall.n_cells, "nodes": wall.n_nodes,
    "unknowns": mech.solution.n_dofs, "mesh_s": mesh_s, "solve_s": solve_s,
    "contact_s": mech.solution.solve_time_s, "wall_solves": mech.solution.wall_solves,
    "peak_rss_mib": hwm / 1024, "peak_rss_children_mib": children / 1024,
    "final_diameter_mm": mech.frame_final_diameter_mm, "radial_force_n": mech.radial_force_n,
    "max_contact_pressure_kpa": mech.max_contact_pressure_kpa,
    "mean_contact_pressure_kpa": mech.mean_contact_pressure_kpa,
    "max_wall_stress_kpa": mech.max_wall_stress_kpa, "p99_wall_stress_kpa": mech.p99_wall_stress_kpa}))
"""


def build_demo_twin(store_dir: Path) -> None:
    """The demo's twin (phantom seed 0, 1.0 mm) without baseline flow, in ``store_dir``."""
    from cardiotwin import workflows
    from cardiotwin.store import Actor

    work = store_dir.parent
    study = workflows.write_phantom(work / "phantom", seed=0, spacing_mm=1.0, write_labels=False)
    store = workflows.open_store(store_dir)
    actor = Actor(username="bench", role="clinician", client="benchmark")
    workflows.build_twin(study.dicom_dir, store=store, actor=actor,
                         settings=workflows.BuildSettings(run_baseline=False))


def exponent(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[2.0, 1.5, 1.0],
                    help="wall element sizes in mm (default: 2.0 1.5 1.0)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mech-") as tmp:
        store_dir = Path(tmp) / "store"
        t0 = time.perf_counter()
        build_demo_twin(store_dir)
        print(f"demo twin built in {time.perf_counter() - t0:.0f} s", flush=True)
        for size in args.sizes:
            out = Path(tmp) / f"size_{size:g}"
            out.mkdir()
            proc = subprocess.run([sys.executable, "-c", CHILD, str(store_dir), str(size), str(out)],
                                  capture_output=True, text=True, timeout=3600)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"size {size} mm failed (exit {proc.returncode})")
            row = json.loads(line.removeprefix("RESULT "))
            rows.append(row)
            print(f"{size:g} mm: {row['unknowns']} unknowns, mesh {row['mesh_s']:.1f} s, solve "
                  f"{row['solve_s']:.1f} s, {row['peak_rss_mib']:.0f} MiB", flush=True)
    n = [r["unknowns"] for r in rows]
    growth = {"time_exponent": exponent(n, [r["solve_s"] for r in rows]),
              "memory_exponent": exponent(n, [r["peak_rss_mib"] for r in rows])} if len(rows) > 1 else {}
    result = {"benchmark": "mechanics", "machine": machine_info(), "python": platform.python_version(),
              "utc": datetime.now(UTC).isoformat(timespec="seconds"), "rows": rows, "growth": growth}
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = args.out / f"{stamp}-{platform.node() or 'host'}-mechanics.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwritten {path}\n")
    print("| wall element (mm) | cells | unknowns (P2) | wall mesh (s) | solve (s) | peak memory (MiB) "
          "| final diameter (mm) | radial force (N) | max / mean contact pressure (kPa) "
          "| max wall stress (kPa) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size_mm']:g} | {r['cells']:,} | {r['unknowns']:,} | {r['mesh_s']:.1f} | "
              f"{r['solve_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['final_diameter_mm']:.2f} | "
              f"{r['radial_force_n']:.1f} | {r['max_contact_pressure_kpa']:.0f} / "
              f"{r['mean_contact_pressure_kpa']:.0f} | {r['max_wall_stress_kpa']:.0f} |")
    if growth:
        print(f"\nsolve time ∝ unknowns^{growth['time_exponent']:.2f}, peak memory ∝ "
              f"unknowns^{growth['memory_exponent']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
