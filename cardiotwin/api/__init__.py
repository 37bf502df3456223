"""The REST API (FastAPI): a presentation layer over :mod:`cardiotwin.workflows`.

``cardiotwin api serve`` runs it; :func:`create_app` builds the ASGI application for a store.
See ``docs/api.md`` for authentication, endpoints and errors.
"""

from cardiotwin.api.app import MAX_BODY_BYTES, create_app
from cardiotwin.api.auth import TOKEN_IDLE_S, TOKEN_MAX_AGE_S, TokenRegistry

__all__ = ["MAX_BODY_BYTES", "TOKEN_IDLE_S", "TOKEN_MAX_AGE_S", "TokenRegistry", "create_app"]
