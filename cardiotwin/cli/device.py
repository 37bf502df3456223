"""``cardiotwin device``: the device catalog and sizing on a twin."""

from __future__ import annotations

import typer
from rich.table import Table

from cardiotwin.cli._common import RoleOpt, StoreOpt, actor_for, console, errors, store_at

device_app = typer.Typer(help="The device catalog and sizing.", no_args_is_help=True)


@device_app.command("list")
def device_list() -> None:
    """List device families and sizes with their sizing ranges and sources."""
    from cardiotwin import workflows

    with errors():
        cat = workflows.device_catalog()
        for key, fam in cat.families.items():
            t = Table(title=f"{key}: {fam.label}")
            for c in ("size (mm)", "frame height (mm)", "annulus area range (mm²)"):
                t.add_column(c)
            for s in fam.sizes:
                t.add_row(f"{s.nominal_diameter_mm:g}", f"{s.frame_height_mm:g}",
                          f"{s.annulus_area_min_mm2:g}–{s.annulus_area_max_mm2:g}")
            console.print(t)
            console.print(f"sizing: {fam.sizing_source}\ngeometry: {fam.geometry_source}")


@device_app.command("size")
def device_size(pseudonym: str, family: str = "balloon_expandable_thv", store: StoreOpt = None,
                role: RoleOpt = "clinician") -> None:
    """Oversizing of every size on the twin's annulus, and the recommended size."""
    from cardiotwin import workflows

    with errors():
        rep = workflows.size_device(pseudonym, store=store_at(store), actor=actor_for(role), family=family)
        t = Table(title=f"{pseudonym}: annulus {rep.annulus_area_mm2:.0f} mm², "
                        f"perimeter {rep.annulus_perimeter_mm:.1f} mm")
        for c in ("size", "area oversizing %", "perimeter oversizing %", "in chart", "warnings"):
            t.add_column(c)
        for s in rep.sizes:
            mark = " ★" if s.nominal_diameter_mm == rep.recommended_mm else ""
            t.add_row(f"{s.nominal_diameter_mm:g}{mark}", f"{s.area_oversizing_pct:+.1f}",
                      f"{s.perimeter_oversizing_pct:+.1f}", "yes" if s.in_chart_range else "no",
                      "; ".join(s.warnings))
        console.print(t)
        for w in rep.warnings:
            console.print(f"[yellow]warning:[/] {w}")
