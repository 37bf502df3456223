"""``cardiotwin demo``: the whole pipeline on the built-in phantom patient."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cardiotwin.cli._common import (
    actor_for,
    console,
    errors,
    print_anatomy,
    print_comparison,
    print_estimate,
    print_gate,
    progress,
    store_at,
)

LIVE_SECONDS = 20.0
"""Length of the bedside record the demo replays into the twin, s."""
LIVE_TIMEOUT_S = 30.0
"""Bound of the demo's live step (broker start, replay, every message applied), s."""

def demo(
    out: Annotated[Path, typer.Option(help="Output folder (DICOM, store, results, report).")] = Path("out/demo"),
    seed: Annotated[int, typer.Option(help="Phantom random seed (noise, calcium).")] = 0,
    spacing: Annotated[float, typer.Option(help="Phantom voxel size in mm.")] = 1.0,
    size: Annotated[float | None, typer.Option(help="Valve size in mm (default: recommended).")] = None,
    depth: Annotated[float | None, typer.Option(help="Implantation depth below the annulus, mm.")] = None,
    h_max: Annotated[float, typer.Option(help="Mesh size away from the valve, mm.")] = 3.0,
    h_min: Annotated[float, typer.Option(help="Mesh size near the valve, mm.")] = 1.2,
) -> None:
    """Run the whole pipeline on the built-in phantom patient.

    Phantom CT → DICOM series → twin (segmentation, landmarks, mesh, baseline flow through the
    stenotic valve) → balloon-expandable valve placed at the annulus → flow after the device →
    the valve expanded in the root's wall (contact mechanics, paravalvular leak, conduction
    risk) → summary table and HTML report with plots; VTU/XDMF files for ParaView. After the rehearsal
    a short bedside record is replayed over MQTT (embedded broker) into the twin, which shows
    its new version, estimate with ± spread, data age and flags.
    """
    from cardiotwin import workflows
    from cardiotwin.report import write_report

    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    with errors():
        out.mkdir(parents=True, exist_ok=True)
        logging.getLogger().addHandler(_file_handler(out / "cardiotwin.log"))
        t0 = time.perf_counter()
        console.print(f"[bold]1/6[/] phantom CT (seed {seed}, {spacing:g} mm) → DICOM")
        study = workflows.write_phantom(out, seed=seed, spacing_mm=spacing, write_labels=False)
        ph, dicom_dir = study.phantom, study.dicom_dir
        timings["phantom + DICOM write"] = time.perf_counter() - t0
        store = store_at(out / "store")
        actor = actor_for("clinician")
        console.print("[bold]2/6[/] building the twin from DICOM")
        t0 = time.perf_counter()
        with progress("twin") as prog:
            twin = workflows.build_twin(
                dicom_dir, store=store, actor=actor,
                settings=workflows.BuildSettings(h_max_mm=h_max, h_min_mm=h_min), progress=prog)
        timings["build twin (incl. baseline flow)"] = time.perf_counter() - t0
        for k, v in twin.provenance.get("timings_s", {}).items():
            timings[f"  {k}"] = v
        console.print(f"[bold]3/6[/] rehearsing the valve on twin {twin.pseudonym}")
        t0 = time.perf_counter()
        with progress("rehearsal") as prog:
            reh = workflows.rehearse(twin.pseudonym, store=store, actor=actor,
                                     nominal_diameter_mm=size, depth_mm=depth, progress=prog)
        timings["rehearsal (device flow)"] = time.perf_counter() - t0
        console.print(f"[bold]4/6[/] the {reh.nominal_diameter_mm:g} mm valve expanded in the "
                      "aortic-root wall (contact mechanics, paravalvular leak, conduction risk)")
        t0 = time.perf_counter()
        with progress("device mechanics") as prog:
            sim = workflows.simulate_on_twin(twin.pseudonym, store=store, actor=actor,
                                             nominal_diameter_mm=reh.nominal_diameter_mm,
                                             depth_mm=depth, flow=False, progress=prog)
        timings["device mechanics (wall contact)"] = time.perf_counter() - t0
        console.print(f"[bold]5/6[/] live update: a {LIVE_SECONDS:g} s bedside record (ECG + "
                      "arterial pressure) replayed over MQTT (embedded broker) into the twin")
        live = workflows.live_update(twin.pseudonym, store=store, actor=actor,
                                     folder=out / "monitoring", seconds=LIVE_SECONDS,
                                     timeout_s=LIVE_TIMEOUT_S)
        timings["live update (MQTT replay)"] = live.seconds
        console.print(f"{live.published} observations published to {live.broker}, "
                      f"{live.received} received; twin {twin.pseudonym} version "
                      f"{live.versions_before} → {live.version_after} ({live.ingests} updates)",
                      highlight=False)
        print_estimate(live.status)
        console.print("[bold]6/6[/] report")
        truth = ph.truth.landmarks
        print_anatomy(twin.landmarks, truth, twin.mesh)
        print_gate(twin.quality_gate)
        print_comparison(reh, title=f"{twin.pseudonym}: native stenotic valve vs "
                                     f"{reh.nominal_diameter_mm:g} mm balloon-expandable valve")
        mt = Table(title=f"{reh.nominal_diameter_mm:g} mm valve in the wall (docs/devices.md)")
        mt.add_column("quantity")
        mt.add_column("value", justify="right")
        for k, v in sim.mechanics.rows() + sim.complications.rows():
            mt.add_row(k, v)
        console.print(mt)
        timings["total"] = time.perf_counter() - t_all
        report = write_report(out / "report.html", twin=twin, rehearsal=reh, truth=truth,
                              timings_s=timings, live=live.status.estimate, device=sim)
        tt = Table(title="Times (s)")
        tt.add_column("stage")
        tt.add_column("s", justify="right")
        for k, v in timings.items():
            tt.add_row(k, f"{v:.1f}")
        console.print(tt)
        console.print(f"report: [bold]{report}[/]")
        for k, v in reh.files.items():
            console.print(f"  {k}: {v}")
        console.print(f"audit chain: {store.verify_audit().reason}")


def _file_handler(path: Path) -> logging.Handler:
    h = logging.FileHandler(path)
    h.setLevel(logging.INFO)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().setLevel(logging.INFO)
    for name in ("cardiotwin",):
        logging.getLogger(name).setLevel(logging.INFO)
    return h
