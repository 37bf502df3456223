"""DICOM series read benchmark: cardiotwin vs SimpleITK vs dcm2niix on a 512 x 512 x 400 CT.

Run with ``python benchmarks/dicom_read.py`` (``--help`` for options). Writes
``benchmarks/results/<date>-<host>-dicom_read.json`` and prints a Markdown table for
``docs/performance.md``.

What is measured
----------------
* The series: a synthetic chest-like CT (body ellipse with noise, contrast-filled vessels, spine,
  lungs), 400 slices of 512 x 512, int16 with RescaleIntercept -1024, written by
  :func:`cardiotwin.imaging.dicom.write_ct_series` (Explicit VR Little Endian), then transcoded
  with pydicom 3's encoders to RLE Lossless and JPEG 2000 Lossless (pylibjpeg-openjpeg). The files
  are cached in ``benchmarks/.cache/`` (git-ignored by the ``.gitignore`` written inside it).
* Readers, each in a **fresh subprocess per repeat** so that the peak resident memory
  (``getrusage(...).ru_maxrss``, Linux KiB) is that reader's alone and no file cache of parsed
  headers carries over (the OS page cache does: every reader runs warm after the first):
    - ``cardiotwin``: ``read_series(folder)`` → float32 ``Volume``;
    - ``simpleitk``: ``ImageSeriesReader`` (GDCM) on ``GetGDCMSeriesFileNames`` + ``GetArrayFromImage``
      (int16 HU) — the numpy array is what a user needs, as in ``benchmarks/run.py``;
    - ``dcm2niix``: ``dcm2niix -z n`` to a temporary folder (its figure includes writing the
      200 MB NIfTI; it is a converter, not a library).
  Time is wall-clock of the read call inside the child (imports excluded) for the Python readers
  and of the whole process for dcm2niix. Memory is reported as the peak RSS of the child and as
  the peak above the RSS after imports ("increment").
* Medians over ``--repeat`` runs; ratios are cardiotwin / baseline (< 1 = cardiotwin faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import machine_info  # benchmarks/machine.py (scripts run from benchmarks/)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYNTAXES = {
    "explicit-le": "1.2.840.10008.1.2.1",
    "rle": "1.2.840.10008.1.2.5",
    "j2k-lossless": "1.2.840.10008.1.2.4.90",
}
READERS = ("cardiotwin", "simpleitk", "dcm2niix")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def _synthetic_ct(nk: int, nj: int, ni: int, seed: int = 0):
    """A chest-like CT (HU, float32) of shape (nk, nj, ni); 0.7 x 0.7 x 0.8 mm voxels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    jj, ii = np.mgrid[0:nj, 0:ni].astype(np.float32)
    y, x = (jj - nj / 2) / (nj / 2), (ii - ni / 2) / (ni / 2)
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    lungs = (((x - 0.38) / 0.25) ** 2 + (y / 0.4) ** 2 < 1) | (((x + 0.38) / 0.25) ** 2
                                                                + (y / 0.4) ** 2 < 1)
    spine = (x / 0.09) ** 2 + ((y - 0.45) / 0.09) ** 2 < 1
    out = np.empty((nk, nj, ni), np.float32)
    for k in range(nk):
        z = k / max(nk - 1, 1)
        aorta = ((x + 0.05) / 0.08) ** 2 + ((y - 0.2 + 0.1 * z) / 0.08) ** 2 < 1
        heart = ((x - 0.05) / (0.3 - 0.2 * z)) ** 2 + ((y + 0.15) / 0.25) ** 2 < 1
        s = np.full((nj, ni), -1000.0, np.float32)
        s[body] = 40.0
        s[lungs] = -850.0
        s[heart] = 250.0
        s[aorta] = 330.0
        s[spine] = 700.0
        s += rng.normal(0.0, 15.0, s.shape).astype(np.float32) * body
        out[k] = np.rint(s)
    return out


def make_series(cache: Path, shape: tuple[int, int, int], syntaxes: list[str]) -> dict[str, Path]:
    """Write (or reuse) the benchmark series, one folder per transfer syntax."""
    import numpy as np
    import pydicom

    from cardiotwin.imaging.dicom import write_ct_series
    from cardiotwin.imaging.volume import Volume

    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")
    nk, nj, ni = shape
    base = cache / f"ct_{ni}x{nj}x{nk}"
    folders = {}
    raw = base / "explicit-le"
    if not (raw / ".complete").exists():
        t0 = time.perf_counter()
        shutil.rmtree(raw, ignore_errors=True)
        vol = Volume(_synthetic_ct(nk, nj, ni), (0.7, 0.7, 0.8), (-179.2, -179.2, -160.0),
                     np.eye(3))
        write_ct_series(vol, raw, series_description="benchmark CT")
        (raw / ".complete").write_text("")
        print(f"wrote {raw} in {time.perf_counter() - t0:.1f} s", flush=True)
    folders["explicit-le"] = raw
    for name in syntaxes:
        if name == "explicit-le":
            continue
        out = base / name
        folders[name] = out
        if (out / ".complete").exists():
            continue
        t0 = time.perf_counter()
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for f in sorted(raw.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            # RLE: pylibjpeg-rle (or pydicom's own encoder); J2K lossless: pylibjpeg-openjpeg
            ds.compress(SYNTAXES[name])
            ds.save_as(out / f.name, enforce_file_format=True)
        (out / ".complete").write_text("")
        print(f"wrote {out} in {time.perf_counter() - t0:.1f} s", flush=True)
    return {k: folders[k] for k in syntaxes}


# ---------------------------------------------------------------------------------------------
# one measurement = one child process
# ---------------------------------------------------------------------------------------------

_CHILD = r"""
import json, resource, sys, time
def rss_kib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024
reader, folder = sys.argv[1], sys.argv[2]
if reader == "cardiotwin":
    from cardiotwin.imaging.dicom import read_series
    def run():
        v = read_series(folder)
        return v.array.shape, str(v.array.dtype)
else:
    import SimpleITK as sitk
    def run():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames(folder))
        a = sitk.GetArrayFromImage(r.Execute())
        return a.shape, str(a.dtype)
before = rss_kib()
t0 = time.perf_counter()
shape, dtype = run()
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": dt, "peak_rss_mib": peak / 1024, "increment_mib": (peak - before) / 1024,
                  "shape": list(shape), "dtype": dtype}))
"""

_CHILD_DCM2NIIX = r"""
import json, resource, subprocess, sys, time
exe, folder, out = sys.argv[1:4]
t0 = time.perf_counter()
p = subprocess.run([exe, "-z", "n", "-b", "n", "-f", "bench", "-o", out, folder],
                   capture_output=True, text=True)
dt = time.perf_counter() - t0
if p.returncode != 0:
    sys.exit(p.stdout + p.stderr)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"s": dt, "peak_rss_mib": peak / 1024, "increment_mib": peak / 1024}))
"""


def _dcm2niix() -> str:
    venv = ROOT / ".venv" / "bin" / "dcm2niix"
    exe = str(venv) if venv.exists() else shutil.which("dcm2niix")
    if exe is None:
        sys.exit("dcm2niix not found: run `bash scripts/install-test-tools.sh`")
    return exe


def measure(reader: str, folder: Path) -> dict:
    if reader == "dcm2niix":
        with tempfile.TemporaryDirectory() as out:
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD_DCM2NIIX, _dcm2niix(), str(folder), out],
                capture_output=True, text=True, check=False)
    else:
        proc = subprocess.run([sys.executable, "-c", _CHILD, reader, str(folder)],
                              capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{reader} on {folder} failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def versions() -> dict:
    import numpy
    import pydicom
    import SimpleITK

    import cardiotwin

    d2n = subprocess.run([_dcm2niix(), "--version"], capture_output=True, text=True,
                         check=False)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                            "cardiotwin/imaging/dicom"], capture_output=True, text=True,
                           check=False).stdout.strip()
    return {"cardiotwin": cardiotwin.__version__, "git_commit": commit,
            "dicom_py_modified_since_commit": bool(dirty),
            "pydicom": pydicom.__version__, "numpy": numpy.__version__,
            "SimpleITK": SimpleITK.Version_VersionString(),
            "dcm2niix": next((ln for ln in (d2n.stdout + d2n.stderr).splitlines()
                              if "version" in ln.lower()), "?")}


def table(results: dict) -> str:
    lines = ["| transfer syntax | reader | median s | peak RSS MiB (increment) | "
             "time ratio cardiotwin / this |",
             "|---|---|---|---|---|"]
    for syntax, by_reader in results.items():
        ours = by_reader["cardiotwin"]["median_s"]
        for reader in READERS:
            r = by_reader.get(reader)
            if r is None:
                continue
            ratio = "—" if reader == "cardiotwin" else f"{ours / r['median_s']:.2f}"
            lines.append(f"| {syntax} | {reader} | {r['median_s']:.2f} | "
                         f"{r['peak_rss_mib']:.0f} ({r['increment_mib']:.0f}) | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(400, 512, 512), metavar=("NK", "NJ", "NI"))
    ap.add_argument("--syntax", nargs="+", default=list(SYNTAXES), choices=list(SYNTAXES))
    ap.add_argument("--reader", nargs="+", default=list(READERS), choices=list(READERS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=HERE / ".cache")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    folders = make_series(args.cache, tuple(args.shape), args.syntax)
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    results: dict[str, dict] = {}
    for syntax, folder in folders.items():
        results[syntax] = {}
        # readers interleaved within each repeat so that load drifts hit them alike
        runs: dict[str, list[dict]] = {r: [] for r in args.reader}
        for _ in range(args.repeat):
            for reader in args.reader:
                runs[reader].append(measure(reader, folder))
                print(f"{syntax:13s} {reader:10s} {runs[reader][-1]['s']:7.2f} s", flush=True)
        for reader, rs in runs.items():
            results[syntax][reader] = {
                "median_s": statistics.median(r["s"] for r in rs),
                "all_s": [r["s"] for r in rs],
                "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                "increment_mib": max(r["increment_mib"] for r in rs),
            }
    record = {
        "benchmark": "dicom_read",
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average_at_start": load_at_start},
        "versions": versions(),
        "series": {"shape_kji": list(args.shape), "files": args.shape[0],
                   "bytes_per_syntax": {s: sum(f.stat().st_size for f in p.glob("*.dcm"))
                                        for s, p in folders.items()}},
        "repeat": args.repeat,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{platform.node()}-dicom_read.json"
    path.write_text(json.dumps(record, indent=2))
    print(table(results))
    print(f"written {path}")
    return record


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
