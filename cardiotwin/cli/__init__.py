"""The ``cardiotwin`` command line.

Start with ``cardiotwin demo``: it builds the twin of the embedded phantom patient from DICOM,
rehearses a transcatheter valve on it and writes a report. Every command that touches patient data
is audited in the store (``--store``, default ``./cardiotwin-data`` or ``$CARDIOTWIN_HOME``).

One module per command group (``demo``, ``phantom``, ``dicom``, ``segment``, ``measure``,
``twin``, ``ingest``, ``rehearse``, ``device``, ``audit``, ``users``, ``live`` for ``monitor`` and
``twin serve``, ``api``); what they share is in ``_common``. This module assembles them into
``app`` (the ``cardiotwin`` entry point), in the order the help lists them.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from cardiotwin import __version__
from cardiotwin.cli import (
    api,
    audit,
    demo,
    device,
    dicom,
    ingest,
    live,
    measure,
    phantom,
    rehearse,
    segment,
    twin,
    users,
)
from cardiotwin.cli._common import console

__all__ = ["app"]

app = typer.Typer(
    help=(
        "cardiotwin — patient-specific cardiac digital twins.\n\n"
        "From a contrast CT (DICOM) it segments the left ventricle and aorta, measures the aortic "
        "root, meshes the blood volume, and simulates blood flow (FEniCSx) before and after a "
        "transcatheter valve. Every access to patient data is audited.\n\n"
        "First steps:\n\n"
        "\b\n"
        "  cardiotwin demo                       whole pipeline on the built-in phantom\n"
        "  cardiotwin phantom write out/ph       the phantom as a DICOM series\n"
        "  cardiotwin twin build out/ph/dicom    a twin from a contrast CT series\n"
        "  cardiotwin measure out/ph/dicom       annulus, root, aorta, ostia, calcium (± mm)\n"
        "  cardiotwin twin list                  pseudonymised patients in the store\n"
        "  cardiotwin device size <pseudonym>    oversizing of every valve size\n"
        "  cardiotwin rehearse <pseudonym> --size 26  place a valve, simulate, compare\n"
        "  cardiotwin audit verify               prove the audit log was not altered\n\n"
        "Units: geometry in mm (DICOM LPS), pressures in mmHg, flows in L/min at the edges; SI "
        "inside the solver."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.command()(demo.demo)
app.command()(segment.segment)
app.command()(measure.measure)
app.command()(ingest.ingest)
app.command()(rehearse.rehearse)
app.add_typer(twin.twin_app, name="twin")
app.add_typer(device.device_app, name="device")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(phantom.phantom_app, name="phantom")
app.add_typer(users.users_app, name="users")
app.add_typer(dicom.dicom_app, name="dicom")
app.add_typer(live.monitor_app, name="monitor")
app.add_typer(api.api_app, name="api")


def _version(value: bool) -> None:
    if value:
        console.print(f"cardiotwin {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the console stays at this level even when a
        handler.setLevel(level)                   # log file (demo) takes INFO records

