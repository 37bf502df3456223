"""The shape of the ``cardiotwin`` command line: every command path, in the order the help
lists it, with its parameters (option names, or the argument's name) in order.

The CLI is a package of one module per command group (``cardiotwin/cli/``); this list was taken
from the single-module CLI it replaced, so a command or option lost, renamed or reordered by a
refactoring fails here. A new command or option is added to the list on purpose.
"""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from cardiotwin.cli import app

COMMANDS = [
    ("", (
        "--verbose", "-v", "--version", "--install-completion", "--show-completion",
    )),
    ("demo", (
        "--out", "--seed", "--spacing", "--size", "--depth", "--h-max", "--h-min",
    )),
    ("segment", (
        "dicom_dir", "-o", "--out", "--series", "--resample", "--phase", "--volume",
        "--blood-threshold", "--blood-search-range", "--calcium-threshold", "--neck-ratio",
        "--left-heart-only", "--segmenter", "--evaluate", "--map", "--list-segmenters",
        "--truth-map", "--store", "--role",
    )),
    ("measure", (
        "dicom_dir", "-o", "--out", "--csv", "--labels", "--label-map", "--landmarks",
        "--series", "--resample", "--phase", "--volume", "--blood-threshold",
        "--blood-search-range", "--calcium-threshold", "--neck-ratio", "--segmenter",
        "--store", "--role",
    )),
    ("ingest", (
        "path", "--subject", "--format", "--columns", "--timezone", "--start", "--store",
        "--role",
    )),
    ("rehearse", (
        "pseudonym", "--size", "--depth", "--tilt", "--rotation", "--family", "--pulsatile",
        "--dt-ms", "--les-cs", "--t-end-ms", "--store", "--role",
    )),
    ("twin", ()),
    ("twin build", (
        "dicom_dir", "--series", "--store", "--role", "--hr", "--sv", "--sbp", "--dbp",
        "--h-max", "--h-min", "--no-flow", "--mesh-timeout", "--mesh-algorithm",
        "--surface-mesh-algorithm", "--no-netgen", "--inlet-offset", "--blood-threshold",
        "--blood-search-range", "--calcium-threshold", "--neck-ratio", "--left-heart-only",
        "--segmenter", "--resample", "--phase", "--volume", "--labels", "--surface",
        "--surface-convention", "--landmarks", "--label-map",
    )),
    ("twin list", (
        "--store", "--role",
    )),
    ("twin show", (
        "pseudonym", "--as-of", "--store", "--role",
    )),
    ("twin serve", (
        "--broker", "--embedded", "--store", "--topic", "--client-id", "--max-seconds",
        "--quarantine", "--connect-timeout", "--batch-window", "--role",
    )),
    ("device", ()),
    ("device list", (
        "--catalog",
    )),
    ("device size", (
        "pseudonym", "--family", "--diameter-mm", "--catalog", "--store", "--role",
    )),
    ("device place", (
        "pseudonym", "--family", "--size", "--depth", "--tilt", "--rotation", "--arc-length",
        "--site-centre", "--site-normal", "--store", "--role",
    )),
    ("device simulate", (
        "pseudonym", "--family", "--size", "--all-sizes", "--depth", "--tilt", "--rotation",
        "--model", "--flow", "--no-flow", "--wall-thickness", "--wall-size", "--timeout", "--store", "--role",
    )),
    ("audit", ()),
    ("audit verify", (
        "--store",
    )),
    ("audit log", (
        "--store", "--role", "--pseudonym", "--last",
    )),
    ("phantom", ()),
    ("phantom write", (
        "out", "--seed", "--spacing", "--annulus", "--orifice",
    )),
    ("users", ()),
    ("users add", (
        "username", "--role", "--store", "--password",
    )),
    ("users list", (
        "--store",
    )),
    ("dicom", ()),
    ("dicom scan", (
        "path", "--select", "--json", "--store", "--role",
    )),
    ("dicom deid", (
        "in_dir", "out_dir", "--key-file", "--key", "--shift-dates", "--retain-dates",
        "--clean-descriptors", "--record", "--accept-unknown-burned-in", "--store", "--role",
    )),
    ("dicom convert", (
        "in_path", "out", "--select", "--series", "--resample", "--phase", "--volume",
        "--min-slices", "--force", "--store", "--role",
    )),
    ("monitor", ()),
    ("monitor replay", (
        "record", "--subject", "--broker", "--speed", "--max-beats", "--start",
    )),
    ("api", ()),
    ("api serve", (
        "--host", "--port", "--store", "--max-body", "--log-level",
    )),
]


def _walk(command, path: tuple[str, ...] = ()) -> list[tuple[str, tuple[str, ...]]]:
    """(command path, parameter names) of ``command`` and of every command below it, in order."""
    names = tuple(o for p in command.params for o in (*p.opts, *p.secondary_opts))
    out = [(" ".join(path), names)]
    for name in getattr(command, "list_commands", lambda ctx: [])(None):
        out += _walk(command.commands[name], (*path, name))
    return out


def test_every_command_path_and_option_is_there_in_order():
    assert _walk(typer.main.get_command(app)) == COMMANDS


def test_every_command_shows_its_help():
    runner = CliRunner()
    for path, _ in COMMANDS:
        res = runner.invoke(app, [*path.split(), "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Usage:" in res.output, path
