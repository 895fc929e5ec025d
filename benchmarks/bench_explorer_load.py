"""Load check of the web explorer: many WebSocket clients each run a fit at full speed, at once.

Starts ``gdlab explore`` on a free loopback port, warms it up with one load of the same size
(a fresh server compiles the program that steps many runs together when they first play at
once: a stall of a few hundred ms, reported as the warm-up's longest gap), then
opens N clients together; each starts a run of S steps (``tol = 0``: exactly S updates, S + 1
frames) and reads frames until the run stops. Prints frames per second per client (min,
median, max), the slowest client's wall time and its lag behind the fastest, and the longest
gap between two messages any client saw (a stall of the server would show there). The whole
load is repeated (``--repeats``, default 3) on the same server; the summary gives each
measure's median over the repeats, with min–max.

The goal (benchmark 7): every client ≥ 30 frames/s and the slowest client's lag ≤ 100 ms, where
the lag is the longest gap between two frame messages a client saw while its run streamed.

  .venv/bin/python benchmarks/bench_explorer_load.py                 # 50 clients x 2,000 steps
  .venv/bin/python benchmarks/bench_explorer_load.py --clients 10 --steps 500
  .venv/bin/python benchmarks/bench_explorer_load.py --quick         # 5 clients x 200 steps
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time

import harness
import websockets

CONFIG = {"target": "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)", "init": "N(0.5, 1)", "divergence": "reverse",
          "optimizer": "momentum", "lr": 0.01, "momentum": 0.9, "tol": 0.0, "speed": 1_000_000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from gdlab.cli import main; sys.exit(main())",
                             "explore", "--port", str(port)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gdlab explore did not start listening within 60 s.")


async def one_client(url: str, steps: int) -> dict:
    """Run one fit of ``steps`` updates; return its frame count, timings and longest gap."""
    async with websockets.connect(url, max_size=1 << 24) as ws:
        began = time.perf_counter()
        await ws.send(json.dumps({"type": "start", "config": {**CONFIG, "max_steps": steps}}))
        frames, last, gap, first_frame = 0, began, 0.0, None
        while True:
            msg = json.loads(await ws.recv())
            now = time.perf_counter()
            if msg["type"] == "frames":
                if first_frame is None:
                    first_frame = now
                else:
                    gap = max(gap, now - last)     # between two chunks of frames: a stall shows here
                last = now
                frames += len(msg["frames"])
            elif msg["type"] == "error":
                raise RuntimeError(msg["message"])
            if msg["type"] == "stopped":
                return {"frames": frames, "wall": now - began, "streaming": now - (first_frame or now), "gap": gap,
                        "first": (first_frame or now) - began, "reason": msg["reason"]}


async def load(url: str, clients: int, steps: int) -> dict:
    """One load: ``clients`` runs at once; what each client saw, summarised."""
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one_client(url, steps) for _ in range(clients)))
    total = time.perf_counter() - t0
    assert all(r["frames"] == steps + 1 and r["reason"] == "max_steps" for r in results), "a client missed frames"
    rates = sorted(r["frames"] / r["wall"] for r in results)
    walls = sorted(r["wall"] for r in results)
    gaps = sorted(r["gap"] * 1000 for r in results)
    print(f"{clients} clients x {steps:,} steps: every client got all {steps + 1:,} frames; {total:.2f} s in all, "
          f"{clients * (steps + 1) / total:,.0f} frames/s served")
    print(f"  frames/s per client: min {rates[0]:,.0f}  median {statistics.median(rates):,.0f}  max {rates[-1]:,.0f}")
    print(f"  slowest client: {walls[-1]:.2f} s (fastest {walls[0]:.2f} s; lag {walls[-1] - walls[0]:.2f} s); "
          f"longest wait for a first frame {max(r['first'] for r in results):.2f} s ({clients} runs set up at once); "
          f"longest gap between two frame messages: {gaps[-1]:.0f} ms")
    return {"seconds": total, "rates": rates, "walls": walls, "gaps": gaps}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def main(clients: int, steps: int, repeats: int, quick: bool) -> None:
    port = free_port()
    proc = start_server(port)
    url = f"ws://127.0.0.1:{port}/ws"
    try:
        t0 = time.perf_counter()
        warm = await one_client(url, steps)
        print(f"warm-up run (compiles): {time.perf_counter() - t0:.2f} s, {warm['frames']} frames")
        print("warm-up load (compiles the program for runs stepped together):")
        warm_load = await load(url, clients, steps)
        loads = []
        for i in range(repeats):
            print(f"load {i + 1} of {repeats}:")
            loads.append(await load(url, clients, steps))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    slowest = spread([run["rates"][0] for run in loads])       # each load's slowest client
    longest = spread([run["gaps"][-1] for run in loads])       # each load's longest gap
    summary = (f"{clients} clients x {steps:,} steps, median of {repeats} loads: slowest client "
               f"{slowest['median']:,.0f} frames/s ({slowest['min']:,.0f}–{slowest['max']:,.0f}; "
               f"{'meets' if slowest['median'] >= 30 else 'MISSES'} >= 30); longest gap {longest['median']:.0f} ms "
               f"({longest['min']:.0f}–{longest['max']:.0f}; {'meets' if longest['median'] <= 100 else 'MISSES'} "
               f"<= 100 ms)")
    print("ratio: " + summary)
    rows = []
    for name, key in (("frames/s per client", "rates"), ("client wall time (s)", "walls"),
                      ("gap between frame messages (ms)", "gaps")):
        for i, run in enumerate(loads):
            values = run[key]                   # sorted
            rows.append({"name": f"{name}, load {i + 1}", "min": values[0], "median": statistics.median(values),
                         "max": values[-1]})
    path = harness.write("explorer_load", {
        "clients": clients, "steps": steps, "repeats": repeats, "summary": summary,
        "seconds": statistics.median(run["seconds"] for run in loads),
        "slowest_client_frames_per_s": slowest, "longest_gap_ms": longest,
        "warm_up_longest_gap_ms": warm_load["gaps"][-1], "rows": rows}, quick=quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = harness.parser(__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (default 50; quick 5)")
    parser.add_argument("--steps", type=int, default=None, help="steps per client (default 2,000; quick 200)")
    args = parser.parse_args()
    asyncio.run(main(args.clients or (5 if args.quick else 50), args.steps or (200 if args.quick else 2000),
                     args.repeats or (1 if args.quick else 3), args.quick))
