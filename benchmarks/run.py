"""Stage benchmark of the demo pipeline, with baselines measured in the same run.

Run with ``make bench``. Writes ``benchmarks/results/<date>-<host>.json`` and prints a table.
Figures are wall-clock medians over ``--repeat`` runs on this machine; ratios (ours / baseline) are
what to compare across machines, never the absolute seconds.

Baselines in the same run:
* DICOM series read: SimpleITK ``ImageSeriesReader`` on the same files (the phantom's 212 small
  slices). ``--dicom-read`` also runs ``benchmarks/dicom_read.py``: a 512 x 512 x 400 CT in three
  transfer syntaxes against SimpleITK and dcm2niix, with peak memory, in fresh processes.
* Pulsatile flow solver: ``--pulsatile`` runs ``benchmarks/pulsatile.py`` (time per IPCS step
  against oasisx on the same meshes at three sizes, PETSc share, peak memory, cost exponent).
* Anatomy chain: ``--anatomy`` runs ``benchmarks/anatomy_chain.py`` (DICOM → labels → landmarks →
  surface → fluid mesh for a 512 x 512 x 300 phantom, each stage in its own process with its
  peak memory; the iso-surface step against dicom2stl on the same series).
* Live twin: ``--monitoring`` runs ``benchmarks/monitoring.py`` (filter and ingest latency per
  observation; 1,000 twins at 1 Hz for 60 s through mosquitto into the service; about 4 minutes).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spacing", type=float, default=1.0, help="phantom voxel size (mm)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--dicom-read", action="store_true",
                    help="also run benchmarks/dicom_read.py (512x512x400 CT; several minutes)")
    ap.add_argument("--pulsatile", action="store_true",
                    help="also run benchmarks/pulsatile.py (IPCS vs oasisx at three mesh sizes; "
                         "~25 minutes on 2 cores)")
    ap.add_argument("--anatomy", action="store_true",
                    help="also run benchmarks/anatomy_chain.py (512x512x300 phantom, DICOM to "
                         "fluid mesh per stage, and dicom2stl; a few minutes)")
    ap.add_argument("--monitoring", action="store_true",
                    help="also run benchmarks/monitoring.py (update latency; 1,000 patients at "
                         "1 Hz for 60 s through mosquitto; about 4 minutes)")
    ap.add_argument("--mechanics", action="store_true",
                    help="also run benchmarks/mechanics.py (device-wall contact on the demo twin at "
                         "three wall mesh sizes; about 10 minutes)")
    ap.add_argument("--only-monitoring", action="store_true",
                    help="run benchmarks/monitoring.py alone (skip the pipeline stages)")
    args = ap.parse_args()
    if args.only_monitoring:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        import monitoring

        monitoring.main(["--out", str(args.out)])
        return

    import SimpleITK as sitk

    from cardiotwin.geometry import landmarks as lm_mod
    from cardiotwin.geometry import surface, volume_mesh
    from cardiotwin.imaging import dicom, phantom, segment

    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t, ph = _median_time(lambda: phantom.make_phantom(
            phantom.PhantomParameters(spacing_mm=(args.spacing,) * 3), seed=0), args.repeat)
        rows["phantom"] = {"s": t}
        t, _ = _median_time(lambda: dicom.write_ct_series(ph.ct, tmp / f"d{time.time_ns()}"), 1)
        rows["dicom write"] = {"s": t}
        ddir = next(tmp.glob("d*"))
        t_ours, ct = _median_time(lambda: dicom.read_series(ddir), args.repeat)

        def sitk_read():
            r = sitk.ImageSeriesReader()
            r.SetFileNames(r.GetGDCMSeriesFileNames(str(ddir)))
            return sitk.GetArrayFromImage(r.Execute())

        t_sitk, _ = _median_time(sitk_read, args.repeat)
        rows["dicom read"] = {"s": t_ours, "baseline_sitk_s": t_sitk, "ratio": t_ours / t_sitk}
        t, seg = _median_time(lambda: segment.segment_heart(ct), args.repeat)
        rows["segmentation"] = {"s": t}
        t, lms = _median_time(lambda: lm_mod.measure_aortic_root(ct, seg), args.repeat)
        rows["landmarks"] = {"s": t}
        t, fs = _median_time(lambda: surface.fluid_surface(seg.labels, lms), 1)
        rows["fluid surface"] = {"s": t}
        import numpy as np

        from cardiotwin.workflows import BuildSettings

        refine = tuple(np.asarray(lms.annulus_centre_mm) + 8.0 * np.asarray(lms.annulus_normal))
        bs = BuildSettings()  # the demo's mesh settings
        t, dom = _median_time(lambda: volume_mesh.mesh_fluid_domain(
            fs, tmp / "m.msh", h_max_mm=bs.h_max_mm, h_min_mm=bs.h_min_mm, refine_centre_mm=refine,
            refine_radius_mm=bs.refine_radius_mm), 1)
        rows["volume mesh"] = {"s": t, "tets": dom.n_cells}
    result = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "spacing_mm": args.spacing, "repeat": args.repeat, "stages": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{platform.node()}.json"
    path.write_text(json.dumps(result, indent=2))
    for k, v in rows.items():
        extra = "  ".join(f"{a}={b:.3g}" for a, b in v.items() if a != "s")
        print(f"{k:16s} {v['s']:8.2f} s  {extra}")
    print(f"written {path}")
    if args.dicom_read:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        import dicom_read

        dicom_read.main(["--repeat", str(args.repeat), "--out", str(args.out)])
    if args.mechanics:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        import mechanics

        mechanics.main(["--out", str(args.out)])
    if args.pulsatile:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        import pulsatile

        pulsatile.main(["--out", str(args.out)])
    if args.anatomy:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        import anatomy_chain

        anatomy_chain.main(["--out", str(args.out)])
    if args.monitoring:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        import monitoring

        monitoring.main(["--out", str(args.out)])


if __name__ == "__main__":
    main()
