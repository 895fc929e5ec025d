"""Make the README's screenshots of the web explorer, one per tab, with Debian's chromium.

  .venv/bin/python scripts/explorer_screenshots.py        # or: make screenshots

Starts ``gdlab explore`` on a free loopback port and opens each page at 1280×800 from a URL
(the pages keep their whole state in the URL, ``run=1`` plays it), waits for the run's banner
and saves docs/figures/:

- explorer-fit.png: tab 1, the symmetric bimodal p fitted by KL(q,p) (one mode found);
- explorer-compare.png: tab 1's compare mode, momentum and natural gradient racing momentum 0;
- explorer-landscape.png: tab 2, 64 starts of momentum on Himmelblau (all four minima found);
- explorer-train.png: tab 3, logistic regression on 2-D blobs with mini-batches of 8 beside batch GD.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SHOTS = [  # (file, path and query, what to wait for)
    ("explorer-fit.png", "/?preset=bimodal&divergence=reverse&lr=0.05&speed=200&run=1", "#banner"),
    ("explorer-compare.png", "/?preset=single&divergence=forward&optimizer=gd&lr=0.1&speed=1000"
                             "&compare=momentum:0.1:0.9,natural:0.1:0&run=1", "#banner"),
    ("explorer-landscape.png", "/landscape?function=himmelblau&optimizer=momentum&lr=0.002&momentum=0.9"
                               "&multistart=64&seed=0&speed=200&run=1", "#banner"),
    ("explorer-train.png", "/train?data=blobs&model=logistic&optimizer=gd&lr=0.5&batch_size=8&epochs=20"
                           "&compare=full&speed=100&run=1", "#banner"),
]
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
            FIGURES.mkdir(parents=True, exist_ok=True)
            for name, url, done in SHOTS:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"http://127.0.0.1:{port}{url}")
                page.locator(done).wait_for(state="visible", timeout=180_000)
                page.wait_for_timeout(800)                  # the last frames drawn
                page.screenshot(path=str(FIGURES / name))
                page.close()
                print(f"wrote {(FIGURES / name).relative_to(ROOT)}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
