"""`leadflow web`: serve the survey and unsubscribe pages and the intake webhooks with uvicorn."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from leadflow.cli.common import console, current_settings


def web_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 listens on every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")] = 8000,
) -> None:
    """Serve the survey and unsubscribe pages behind the links in emails, and the intake webhooks."""
    import uvicorn

    from leadflow.web import create_app

    settings = current_settings()
    app = create_app(settings)
    # uvicorn configures only its own loggers; the app logs one line per request under `leadflow.web`.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    web_logger = logging.getLogger("leadflow.web")
    web_logger.addHandler(handler)
    web_logger.setLevel(logging.INFO)

    console.print(f"Serving on http://{host}:{port}; links in emails point to {settings.public_url}. Stop with Ctrl+C.")
    # The access log would print the tokens in survey and unsubscribe paths; the app logs them masked.
    uvicorn.run(app, host=host, port=port, access_log=False, server_header=False)
