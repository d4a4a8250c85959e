"""`leadflow serve` and `leadflow server`: serving deployments and the local Prefect server."""

from __future__ import annotations

import typer

from leadflow.cli.common import console, current_settings, prefect_api

server_app = typer.Typer(
    help="The local Prefect server that keeps every run visible in the UI (used when PREFECT_API_URL is unset).",
    no_args_is_help=True,
)


def serve_command() -> None:
    """Serve the deployments of prefect.yaml so the scheduler can fire them; stop with Ctrl+C.

    On start it schedules a survey-followup run for every slot with survey emails
    pending, and one right away for any that fell due while nothing was serving.
    """
    from leadflow.serve import serve_deployments

    settings = current_settings()

    def report(names: list[str], scheduled: int, overdue: int, error: str | None) -> None:
        console.print(f"Serving {', '.join(names)}; survey runs scheduled for {scheduled:,} slots, {overdue:,} overdue emails.")
        if error:
            console.print(f"Survey runs not scheduled: {error}")
        console.print("Flow runs start as separate processes. Stop with Ctrl+C.")

    with prefect_api(settings) as ui_url:
        from prefect.settings import PREFECT_API_URL

        console.print(f"Prefect UI: {ui_url}")
        serve_deployments(settings, str(PREFECT_API_URL.value()), on_ready=report)


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server in the background, or report the one that is running."""
    from leadflow.prefect_server import running_server, start_server

    settings = current_settings()
    server = running_server(settings) or start_server(settings)
    state = "started" if server.started_now else "already running"
    pid = f" (pid {server.pid})" if server.pid else ""
    console.print(f"Prefect server {state}{pid}: UI at {server.ui_url}")


@server_app.command("status")
def server_status() -> None:
    """Print which Prefect API leadflow uses and whether its health check passes."""
    from leadflow.prefect_server import configured_api_url, is_healthy, running_server

    settings = current_settings()
    configured = configured_api_url()
    if configured:
        health = "passes" if is_healthy(configured) else "fails"
        console.print(f"PREFECT_API_URL is set to {configured}; its health check {health}.")
        return
    server = running_server(settings)
    if server is None:
        console.print("No local Prefect server is running; the next command that runs a flow starts one.")
        # Exit code 3 lets scripts tell "not running" from a failure (1).
        raise typer.Exit(code=3)
    console.print(f"Local Prefect server running (pid {server.pid}): API {server.url}, UI {server.ui_url}")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server that leadflow started."""
    from leadflow.prefect_server import stop_server

    stopped = stop_server(current_settings())
    if stopped is None:
        console.print("No local Prefect server was started by leadflow.")
        return
    console.print(f"Stopped the local Prefect server (pid {stopped.pid}).")

