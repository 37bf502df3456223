"""``cardiotwin users``: users of the app and their roles."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cardiotwin.cli._common import StoreOpt, console, errors, store_at

users_app = typer.Typer(help="Users of the app and their roles.", no_args_is_help=True)


@users_app.command("add")
def users_add(username: str, role: Annotated[str, typer.Option(help="Role of the user.")],
              store: StoreOpt = None,
              password: Annotated[str | None, typer.Option(help="Password (prompted when omitted).")] = None) -> None:
    """Add a user who can log in to the app."""
    from cardiotwin import workflows

    with errors():
        pw = password or typer.prompt("password", hide_input=True, confirmation_prompt=True)
        workflows.add_user(store_at(store), username, pw, role)
        console.print(f"user {username} ({role}) added")


@users_app.command("list")
def users_list(store: StoreOpt = None) -> None:
    """List users and roles."""
    from cardiotwin import workflows

    with errors():
        t = Table(title="Users")
        rows = workflows.list_users(store_at(store))
        cols = list(rows[0]) if rows else ["username", "role"]
        for c in cols:
            t.add_column(c)
        for r in rows:
            t.add_row(*[str(r.get(c, "")) for c in cols])
        console.print(t)
