"""``gdlab explore``: start the web explorer (FastAPI + uvicorn) on a loopback port."""

from __future__ import annotations

import errno
import socket

import click

from gdlab.cli import UserError, app


def check_port_free(host: str, port: int) -> None:
    """Refuse a busy port (or an address this machine does not have) with one sentence, before uvicorn starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"--host {host!r} is not an address of this machine; use 127.0.0.1 (the default).") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn does: a port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use; stop what runs there or choose "
                                f"another with --port (e.g. --port {port + 1}).") from None
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --host or --port.") from None


@app.command("explore")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default serves this machine only; 0.0.0.0 exposes the explorer to the network.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--open", "open_browser", is_flag=True, default=False, help="Open the page in the default web browser.")
def explore_command(host: str, port: int, open_browser: bool) -> None:
    """Start the web explorer: watch and steer gradient descent on KL divergence in the browser.

    \b
    Example:
      gdlab explore --port 8000 --open      # then visit http://127.0.0.1:8000/
    """
    check_port_free(host, port)
    import uvicorn

    from gdlab.web.app import create_app

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    click.echo(f"gdlab explorer at {url}  (Ctrl+C stops it)", err=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    # no per-message deflate: frames go to a page on this machine (or a LAN), and compressing every
    # message cost ~6% of a loaded server's time
    uvicorn.run(create_app(), host=host, port=port, log_level="warning", ws_max_size=1 << 20,
                ws_per_message_deflate=False)
