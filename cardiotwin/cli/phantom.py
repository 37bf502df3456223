"""``cardiotwin phantom``: the synthetic CT phantom (the embedded demo patient)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cardiotwin.cli._common import console, errors

phantom_app = typer.Typer(help="The synthetic CT phantom (the embedded demo patient).",
                          no_args_is_help=True)


@phantom_app.command("write")
def phantom_write(
    out: Annotated[Path, typer.Argument(help="Folder to write (dicom/ and labels.nii.gz inside).")],
    seed: Annotated[int, typer.Option(help="Random seed (noise, calcium).")] = 0,
    spacing: Annotated[float, typer.Option(help="Voxel size in mm.")] = 1.0,
    annulus: Annotated[float, typer.Option(help="Annulus diameter in mm.")] = 23.0,
    orifice: Annotated[float, typer.Option(help="Stenotic valve orifice area in mm².")] = 80.0,
) -> None:
    """Write the parametric contrast-CT phantom as a DICOM series plus its ground-truth labels."""
    from cardiotwin import workflows

    with errors():
        ph = workflows.write_phantom(out, seed=seed, spacing_mm=spacing,
                                     annulus_diameter_mm=annulus, valve_orifice_area_mm2=orifice)
        names = ph.phantom.labels.names
        console.print(f"wrote {len(ph.files)} DICOM slices to {ph.dicom_dir} and labels.nii.gz "
                      f"({', '.join(f'{k}={v}' for k, v in names.items())})")
