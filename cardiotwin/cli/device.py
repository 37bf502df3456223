"""``cardiotwin device``: the device catalog and sizing on a twin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cardiotwin.cli._common import (
    RoleOpt,
    StoreOpt,
    actor_for,
    console,
    errors,
    progress,
    store_at,
)

device_app = typer.Typer(help="The device catalog, sizing, placement and simulation.", no_args_is_help=True)

CatalogOpt = Annotated[Path | None, typer.Option(
    "--catalog", help="A user device catalog (TOML, same shape as the shipped catalog.toml), "
                      "validated and merged over the shipped one.")]


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


@device_app.command("list")
def device_list(catalog: CatalogOpt = None) -> None:
    """List device families and sizes with their sizing ranges, frames and sources."""
    from cardiotwin import workflows

    with errors():
        cat = workflows.device_catalog(catalog)
        for key, fam in cat.families.items():
            valve = fam.kind == "transcatheter_aortic_valve"
            t = Table(title=f"{key}: {fam.label}\n[dim]{fam.kind}, "
                            f"{'balloon-expandable' if fam.expansion == 'balloon' else 'self-expanding'}"
                            + (f", {fam.leaflet_position.replace('_', '-')} leaflets"
                               if fam.leaflet_position else "") + "[/]")
            ends = {"laa_occluder": ("lobe length (mm)", "disc / lobe (mm)"),
                    "septal_occluder": ("waist length (mm)", "right / left disc (mm)")}.get(
                fam.kind, ("frame height (mm)", "inflow / outflow (mm)"))
            cols = ["size (mm)", *ends]
            cols += ["skirt (mm)", "leaflets (mm)"] if valve else []
            cols += [f"range: {fam.sizing_label}"]
            for c in cols:
                t.add_column(c)
            area = fam.sizing_by == "annulus_area"
            for s in fam.sizes:
                lo, hi = s.sizing_range(fam.sizing_by)
                row = [f"{s.nominal_diameter_mm:g}", f"{s.frame_height_mm:g}",
                       f"{_num(s.inflow_diameter_mm)} / {_num(s.outflow_diameter_mm)}"]
                if valve:
                    skirt = fam.skirt_height_of(s)
                    row += [_num(None if skirt is None else round(skirt, 2)),
                            _num(s.leaflet_height_mm)]
                row += [f"{lo:.0f}–{hi:.0f}" if area else f"{lo:g}–{hi:g}"]
                t.add_row(*row)
            console.print(t)
            cells = "" if fam.cells_circumferential is None else \
                f", {fam.cells_circumferential} cells around" + \
                ("" if fam.cell_rows is None else f" × {fam.cell_rows} rows")
            console.print(
                f"frame: {fam.frame_material}, struts {fam.strut_width_mm:g} × "
                f"{fam.strut_thickness_mm:g} mm{cells}; radial stiffness "
                f"{fam.radial_stiffness_n_per_mm:g} N/mm (diameter); oversizing warnings by "
                f"{fam.oversizing_metric} below {fam.oversizing_warn_below_pct:+g} % / above "
                f"{fam.oversizing_warn_above_pct:+g} %", soft_wrap=True)
            console.print(f"sizing: {fam.sizing_source}\ngeometry: {fam.geometry_source}\n"
                          f"mechanics: {fam.mechanics_source}"
                          + (f"\noversizing: {fam.oversizing_source}"
                             if fam.oversizing_source else "") + "\n", soft_wrap=True)


@device_app.command("size")
def device_size(
    pseudonym: str,
    family: str = "balloon_expandable_thv",
    diameter_mm: Annotated[float | None, typer.Option(
        "--diameter-mm", help="Stents and occluders: the measured diameter the family is sized "
                              "by (reference vessel, max LAA ostium or stretched defect, mm), "
                              "which the anatomy step does not measure yet.")] = None,
    catalog: CatalogOpt = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Oversizing of every size on the twin's annulus (or a given diameter), and the
    recommended size."""
    from cardiotwin import workflows

    with errors():
        rep = workflows.size_device(pseudonym, store=store_at(store), actor=actor_for(role),
                                    family=family, diameter_mm=diameter_mm, catalog=catalog)
        if rep.measurement_source == "user-supplied":
            title = (f"{pseudonym}: {rep.family}, diameter {rep.measured_value:.1f} mm "
                     f"(user-supplied)")
        else:
            title = (f"{pseudonym}: {rep.family}, annulus {rep.annulus_area_mm2:.0f} mm², "
                     f"perimeter {rep.annulus_perimeter_mm:.1f} mm")
        t = Table(title=title)
        diam = any(s.diameter_oversizing_pct is not None for s in rep.sizes)
        cols = ["size", "area oversizing %", "perimeter oversizing %"]
        cols += ["diameter oversizing %"] if diam else []
        cols += ["in chart", "uncovered (mm²)", "warnings"]
        for c in cols:
            t.add_column(c)
        for s in rep.sizes:
            mark = " ★" if s.nominal_diameter_mm == rep.recommended_mm else ""
            row = [f"{s.nominal_diameter_mm:g}{mark}", f"{s.area_oversizing_pct:+.1f}",
                   f"{s.perimeter_oversizing_pct:+.1f}"]
            row += [f"{s.diameter_oversizing_pct:+.1f}"] if diam else []
            row += ["yes" if s.in_chart_range else "no", f"{s.gap_area_mm2:.0f}",
                    "; ".join(s.warnings)]
            t.add_row(*row)
        console.print(t)
        rec = "none" if rep.recommended_mm is None else f"{rep.recommended_mm:g} mm"
        console.print(f"recommended: {rec}")
        for n in rep.notes:
            console.print(f"note: {n}", soft_wrap=True)
        for c in rep.coronary:
            console.print(f"coronary ({c.ostium}): {c.risk} — {c.note}", soft_wrap=True)
        if rep.coronary:
            console.print(f"[dim]coronary cut-offs: {rep.coronary[0].reference}[/]",
                          soft_wrap=True)
        for w in rep.warnings:
            console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)


def _vector(text: str | None, name: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        v = ()
    if len(v) != 3:
        raise typer.BadParameter(f"{name} takes three comma-separated numbers (LPS mm), got {text!r}")
    return v  # type: ignore[return-value]


@device_app.command("place")
def device_place(
    pseudonym: Annotated[str, typer.Argument(help="The twin's pseudonym (see `cardiotwin twin list`).")],
    family: Annotated[str, typer.Option(help="Device family key (see `cardiotwin device list`).")] = "balloon_expandable_thv",
    size: Annotated[float | None, typer.Option(help="Nominal size in mm (valves: default the recommended one).")] = None,
    depth: Annotated[float | None, typer.Option(help="Valves: inflow edge below the annulus, mm (default: the family's nominal depth). Occluders: offset along the site normal, mm.")] = None,
    tilt: Annotated[float, typer.Option(help="Tilt of the device axis from the annulus normal, ° (0–20).")] = 0.0,
    rotation: Annotated[float, typer.Option(help="Azimuth of the tilt around the normal, °.")] = 0.0,
    arc_length: Annotated[float | None, typer.Option("--arc-length", help="Stents: proximal end along the aortic centreline from the annulus plane, mm.")] = None,
    site_centre: Annotated[str | None, typer.Option("--site-centre", help="Occluders: LAA ostium or septal-defect centre 'x,y,z' (LPS mm). The anatomy step cannot measure it yet.")] = None,
    site_normal: Annotated[str | None, typer.Option("--site-normal", help="Occluders: the site's normal 'x,y,z' (LA → appendage; right → left atrium).")] = None,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Place a device on a twin and export its surface (STL and VTP) for viewing.

    Valves sit on the annulus (depth, tilt, rotation), stents along the aortic centreline
    (--arc-length), occluders on a site you give (--site-centre, --site-normal). A pose outside
    the lumen is refused with the distance. The placement and the surface are stored with the
    twin.
    """
    from cardiotwin import workflows

    with errors():
        placed = workflows.place_on_twin(
            pseudonym, store=store_at(store), actor=actor_for(role), family=family,
            nominal_diameter_mm=size, depth_mm=depth, tilt_deg=tilt, rotation_deg=rotation,
            arc_length_mm=arc_length, site_centre_mm=_vector(site_centre, "--site-centre"),
            site_normal=_vector(site_normal, "--site-normal"))
        pl = placed.placement
        t = Table(title=f"{pseudonym}: {family} {pl.nominal_diameter_mm:g} mm")
        t.add_column("property")
        t.add_column("value")
        for k, v in pl.to_dict().items():
            if isinstance(v, float):
                t.add_row(k, f"{v:.2f}")
            elif isinstance(v, (list, tuple)) and len(v) == 3:
                t.add_row(k, ", ".join(f"{x:.2f}" for x in v))
            elif not isinstance(v, dict):
                t.add_row(k, str(v))
        console.print(t)
        for ext, path in placed.surface_files.items():
            console.print(f"device surface ({ext.upper()}): {path}")
        console.print(f"stored as result {placed.result_id}")


@device_app.command("simulate")
def device_simulate(
    pseudonym: Annotated[str, typer.Argument(help="The twin's pseudonym (see `cardiotwin twin list`).")],
    family: Annotated[str, typer.Option(help="Valve family key (see `cardiotwin device list`).")] = "balloon_expandable_thv",
    size: Annotated[float | None, typer.Option(help="Valve size in mm (default: the recommended one).")] = None,
    all_sizes: Annotated[bool, typer.Option("--all-sizes", help="Simulate every size of the family and print one table side by side.")] = False,
    depth: Annotated[float | None, typer.Option(help="Inflow edge below the annulus, mm (default: the family's nominal depth).")] = None,
    tilt: Annotated[float, typer.Option(help="Tilt of the valve axis from the annulus normal, ° (0–20).")] = 0.0,
    rotation: Annotated[float, typer.Option(help="Azimuth of the tilt around the normal, °.")] = 0.0,
    model: Annotated[str, typer.Option(help="Wall model: linear (small strain) or neo_hookean (large strain, slower).")] = "linear",
    flow: Annotated[bool, typer.Option("--flow/--no-flow", help="Also solve the flow with the device and compare with the native valve (about a minute per size on the demo twin).")] = True,
    wall_thickness: Annotated[float | None, typer.Option("--wall-thickness", help="Aortic-root wall thickness, mm (default: documented in docs/devices.md).")] = None,
    wall_size: Annotated[float, typer.Option("--wall-size", help="Element size of the wall mesh, mm (P2 elements; 1.5 mm: about a minute on the demo twin, 1.0 mm: about five).")] = 1.5,
    timeout: Annotated[float, typer.Option(help="Time bound of the contact solve, s.")] = 900.0,
    store: StoreOpt = None,
    role: RoleOpt = "clinician",
) -> None:
    """Expand a transcatheter valve in the patient's aortic root and report what a team plans
    against: final frame diameter, radial force, contact pressure, wall stress (rupture risk),
    paravalvular leak, conduction-disturbance risk, coronary obstruction, and the flow before and
    after.

    The wall is built outward from the twin's lumen surface with the valve calcium as stiffer
    cells; the frame expands towards its nominal diameter with frictionless contact (dolfinx).
    A contact-pressure map (PNG, CSV), the wall mesh and the device surface are written and
    stored with the result. Methods, sources and limits: docs/devices.md.
    """
    from cardiotwin import workflows

    with errors():
        st, actor = store_at(store), actor_for(role)
        if all_sizes:
            sizes = [s.nominal_diameter_mm for s in workflows.device_catalog().family(family).sizes]
        else:
            sizes = [size]
        sims = []
        for s in sizes:
            label = "recommended size" if s is None else f"{s:g} mm"
            with progress(f"simulating {family}, {label}") as prog:
                sims.append(workflows.simulate_on_twin(
                    pseudonym, store=st, actor=actor, family=family, nominal_diameter_mm=s,
                    depth_mm=depth, tilt_deg=tilt, rotation_deg=rotation, model=model, flow=flow,
                    wall_thickness_mm=wall_thickness, wall_size_mm=wall_size, timeout_s=timeout,
                    progress=prog))
        t = Table(title=f"{pseudonym}: {family}, {model} wall")
        t.add_column("quantity")
        for sim in sims:
            rec = sim.sizing is not None and sim.sizing.recommended_mm == sim.placement.nominal_diameter_mm
            t.add_column(f"{sim.placement.nominal_diameter_mm:g} mm" + (" ★" if rec else ""),
                         justify="right")
        first = sims[0]
        rows: list[list[str]] = []
        for i, (name, _) in enumerate(first.mechanics.rows()):
            rows.append([name] + [sim.mechanics.rows()[i][1] for sim in sims])
        comp_rows = [dict(sim.complications.rows()) for sim in sims]
        for name in comp_rows[0]:
            rows.append([name] + [c.get(name, "–") for c in comp_rows])
        if flow:
            for row_name in ("Peak transvalvular gradient", "Net pressure loss", "Valve orifice area"):
                vals = []
                for sim in sims:
                    r = next((x for x in sim.flow.rows() if x.metric == row_name), None)
                    vals.append("–" if r is None or r.after is None else
                                f"{r.before:.2f} → {r.after:.2f} {r.unit}")
                rows.append([f"{row_name}, before → after"] + vals)
        for r in rows:
            t.add_row(*r)
        console.print(t)
        for sim in sims:
            for w in sim.mechanics.warnings:
                console.print(f"[yellow]warning ({sim.placement.nominal_diameter_mm:g} mm):[/] {w}")
            for n in sim.complications.notes:
                console.print(f"note: {n}")
            console.print(f"{sim.placement.nominal_diameter_mm:g} mm: contact map "
                          f"{sim.files['contact_png']}; stored as result {sim.result_id}")
