"""``cardiotwin rehearse``: a transcatheter valve placed on a twin, simulated, compared."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cardiotwin.cli._common import (
    RoleOpt,
    StoreOpt,
    actor_for,
    console,
    errors,
    print_comparison,
    progress,
    store_at,
)


def rehearse(
    pseudonym: Annotated[str, typer.Argument(help="The twin's pseudonym (see `cardiotwin twin list`).")],
    size: Annotated[float | None, typer.Option(help="Valve size in mm (default: recommended).")] = None,
    depth: Annotated[float | None, typer.Option(help="Implantation depth below the annulus, mm.")] = None,
    tilt: Annotated[float, typer.Option(help="Tilt of the valve axis from the annulus normal, °.")] = 0.0,
    rotation: Annotated[float, typer.Option(help="Azimuth of the tilt around the normal, °.")] = 0.0,
    family: Annotated[str, typer.Option(help="Device family key (see `cardiotwin device list`).")] = "balloon_expandable_thv",
    pulsatile: Annotated[bool, typer.Option(
        "--pulsatile", help="Simulate whole cardiac cycles (pulsatile flow, Windkessel outlets "
        "fitted to the blood pressure) instead of steady flow at mean systolic flow. Gives mean "
        "and peak gradients over the cycle, EOA (Gorlin, continuity), aortic pressures, TAWSS "
        "and OSI. Slow: a cycle at 70 bpm is 1,714 steps of 0.5 ms, over an hour per valve on "
        "the demo twin's mesh (--t-end-ms runs part of it); the native-valve cycle is stored "
        "and reused. An interrupted run (Ctrl-C, closed session) resumes from its last "
        "checkpoint (every 100 ms of simulated time) when the same command is run again.")] = False,
    dt_ms: Annotated[float, typer.Option("--dt-ms", help="Time step of --pulsatile, ms.")] = 0.5,
    les_cs: Annotated[float, typer.Option(
        "--les-cs", help="Smagorinsky constant of --pulsatile (LES; 0 turns it off).")] = 0.17,
    t_end_ms: Annotated[float | None, typer.Option(
        "--t-end-ms", help="Simulated time of --pulsatile in ms (default: one cardiac cycle). "
        "Shorter runs, e.g. 100 ms of early systole, are for trials.")] = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Place a transcatheter valve on a twin, simulate, and compare with the native valve.

    Steady flow by default (about a minute per solve). With --pulsatile, one cardiac cycle of
    pulsatile flow per valve, and a plot of the cycle next to the result files.
    """
    from cardiotwin import workflows
    from cardiotwin.study import CycleSettings

    with errors():
        cycle = (CycleSettings(dt_ms=dt_ms, t_end_ms=t_end_ms, smagorinsky_cs=les_cs)
                 if pulsatile else None)
        try:
            with progress("rehearsal") as prog:
                reh = workflows.rehearse(pseudonym, store=store_at(store), actor=actor_for(role),
                                         nominal_diameter_mm=size, depth_mm=depth, tilt_deg=tilt,
                                         rotation_deg=rotation, family=family, cycle=cycle,
                                         progress=prog)
        except KeyboardInterrupt:
            if cycle is None:
                raise
            console.print("[yellow]interrupted.[/] Nothing was stored for this rehearsal; run the "
                          "same command again to resume the pulsatile run from its last "
                          f"checkpoint (every {cycle.checkpoint_every_ms:g} ms of simulated time).")
            raise typer.Exit(130) from None
        kind = "pulsatile, " + (f"{reh.after.simulated_ms:g} ms" if not reh.after.whole_cycle
                                else "one cardiac cycle") if reh.pulsatile else "steady"
        print_comparison(reh, title=f"{pseudonym}: {reh.nominal_diameter_mm:g} mm "
                                     f"valve ({kind})")
        if reh.pulsatile:
            _print_cycle_files(reh)
            for when, w in reh.warnings:
                console.print(f"[yellow]warning ({when}):[/] {w}")
        for w in reh.sizing_warnings:
            console.print(f"[yellow]warning:[/] {w}")


def _print_cycle_files(reh) -> None:
    from cardiotwin.report import write_cycle_plot

    after_dir = Path(reh.after.fields_dir)
    before_csv = Path(reh.before.fields_dir) / "traces.csv"
    if before_csv.is_file():
        png = write_cycle_plot(after_dir / "cycle_comparison.png", before_csv,
                               after_dir / "traces.csv",
                               label_after=f"{reh.nominal_diameter_mm:g} mm valve")
        console.print(f"plot of the cycle: {png}")
    console.print(f"per-step traces (CSV): {after_dir / 'traces.csv'}; fields for ParaView (VTX): "
                  f"{after_dir}/*.bp")
    after = reh.after
    if after.target_pressure_mmhg is not None:
        sbp, dbp = after.target_pressure_mmhg
        console.print(
            f"outlets: three-element Windkessels fitted to {sbp:g}/{dbp:g} mmHg: total resistance "
            f"{after.total_resistance_mmhg_s_ml:.2f} mmHg·s/mL "
            f"({100 * after.proximal_fraction:.1f} % proximal), compliance "
            f"{after.total_compliance_ml_mmhg:.2f} mL/mmHg, Rd·C {after.distal_time_constant_s:.2f} s")
    for when, run in (("native valve", reh.before), ("device", reh.after)):
        if run.resumed_from_step:
            console.print(f"{when}: resumed an interrupted run at step {run.resumed_from_step} "
                          "(its VTX velocity/pressure series starts there)")
    console.print(f"mass balance: outlets sum to the inflow within "
                  f"{after.mass_imbalance_max:.1e} every step; max CFL "
                  f"{after.cfl_max:.2f}; {after.n_dofs:,} dofs, "
                  f"{after.solve_time_min:.1f} min")
