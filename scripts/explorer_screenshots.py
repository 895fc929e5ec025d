"""Make the README's screenshot of the web explorer (tab 1) with Debian's chromium.

  .venv/bin/python scripts/explorer_screenshots.py        # or: make screenshots

Starts ``gdlab explore`` on a free loopback port, opens the page at 1280×800, runs the
symmetric bimodal preset with KL(q,p) until it converges, and saves docs/figures/explorer-fit.png.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures" / "explorer-fit.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "import sys; from gdlab.cli import main; sys.exit(main())",
                               "explore", "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/?preset=bimodal&divergence=reverse&lr=0.05&speed=200&run=1")
            page.locator("#banner").wait_for(state="visible", timeout=120_000)
            page.wait_for_timeout(500)
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT))
            browser.close()
        print(f"wrote {OUT.relative_to(ROOT)}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
