"""``cardiotwin audit``: verify and read the tamper-evident audit log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cardiotwin.cli._common import (
    RoleOpt,
    StoreOpt,
    actor_for,
    console,
    err_console,
    errors,
    store_at,
)

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(store: StoreOpt = None) -> None:
    """Verify the audit hash chain; exits 1 and names the first bad record if altered."""
    with errors():
        res = store_at(store).verify_audit()
        if res.ok:
            console.print(f"[green]audit chain intact[/]: {res.n_records} records")
        else:
            err_console.print(f"[bold red]audit chain BROKEN[/] at record {res.first_bad_seq}: {res.reason}")
            raise typer.Exit(code=1)


@audit_app.command("log")
def audit_log(store: StoreOpt = None, role: RoleOpt = "privacy_officer",
              pseudonym: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
              last: Annotated[int, typer.Option(help="Show the last N records.")] = 30) -> None:
    """Show audit records (privacy officers and admins only; the read is itself audited)."""
    with errors():
        recs = store_at(store).audit_records(actor=actor_for(role), purpose="audit review",
                                           pseudonym=pseudonym)
        t = Table(title="Audit log")
        cols = ["seq", "time_utc", "actor", "role", "action", "patient_pseudonym", "object", "outcome"]
        for c in cols:
            t.add_column(c)
        for r in recs[-last:]:
            d = r if isinstance(r, dict) else r.__dict__
            t.add_row(*[str(d.get(c, "")) for c in cols])
        console.print(t)
