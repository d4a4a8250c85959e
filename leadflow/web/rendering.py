"""The Jinja environment of the web pages and the HTML responses built from it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from leadflow.errors import ConfigurationError
from leadflow.settings import Settings


def page_environment(templates_dir: Path) -> Environment:
    """Build the environment for `templates_dir/web/`: strict about missing variables, escaping every page."""
    folder = templates_dir / "web"
    if not folder.is_dir():
        raise ConfigurationError(
            f"page templates not found in {folder}; set LEADFLOW_TEMPLATES_DIR to the folder that contains web/"
        )
    return Environment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    )


def render_page(request: Request, template: str, context: Mapping[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """Render `template` with `context` and the sender details every page shows."""
    settings: Settings = request.app.state.settings
    environment: Environment = request.app.state.page_environment
    values = {
        "product_name": settings.product_name,
        "sender": {"name": settings.sender_name, "postal_address": settings.sender_postal_address},
        **context,
    }
    return HTMLResponse(environment.get_template(template).render(values), status_code=status_code)


def render_message(
    request: Request, *, title: str, message: str, status_code: int, detail: str = ""
) -> HTMLResponse:
    """Render the page for a result or an error that needs no form: a heading and one or two paragraphs."""
    return render_page(
        request, "message.html", {"title": title, "message": message, "detail": detail}, status_code=status_code
    )
