"""``cardiotwin api serve``: the REST API (FastAPI, served by uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cardiotwin.cli._common import StoreOpt, console, errors

api_app = typer.Typer(
    help="The REST API (FastAPI) for systems that integrate by HTTP.", no_args_is_help=True)


@api_app.command("serve")
def api_serve(
    host: Annotated[str, typer.Option(
        help="Address to listen on. 127.0.0.1 keeps it on this machine; put a TLS reverse "
        "proxy in front before opening it to a network (Basic credentials and tokens travel "
        "in every request).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    store: StoreOpt = None,
    max_body: Annotated[int, typer.Option(
        "--max-body", help="Largest request body in bytes; larger ones get 413.")] = 1 << 20,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the REST API: twin state, history and events, observations in (FHIR R4 JSON).

    Every call but /health authenticates as a user of the store (cardiotwin users add):
    HTTP Basic, or 'Authorization: Bearer TOKEN' with a token from POST /token. Each call is
    role-checked and audited like the app. The OpenAPI schema is at /openapi.json, the
    interactive docs at /docs.

    \b
    Examples:
      cardiotwin users add dr_lee --role clinician
      cardiotwin api serve --port 8080
      curl -u dr_lee http://127.0.0.1:8080/twins/TW-3F2A
      curl -u dr_lee -H 'Content-Type: application/fhir+json' \\
           --data @vitals.json http://127.0.0.1:8080/twins/TW-3F2A/observations
    """
    import uvicorn

    from cardiotwin.api import create_app

    root = store or Path(os.environ.get("CARDIOTWIN_HOME", "cardiotwin-data"))
    with errors():
        api = create_app(root, max_body_bytes=max_body)
    console.print(f"cardiotwin REST API on http://{host}:{port} (store {root}; docs at "
                  f"http://{host}:{port}/docs); Ctrl-C stops", highlight=False)
    uvicorn.run(api, host=host, port=port, log_level=log_level)
