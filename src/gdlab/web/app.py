"""The explorer's web server: a FastAPI app serving the page and the run WebSocket (``/ws``).

Each WebSocket connection owns at most one run (:class:`gdlab.web.runner.Run`); compare mode
on the page opens one connection per optimizer. JAX work runs in a worker thread so that the
event loop keeps serving every other connection while a chunk computes. Any bad message gets
an ``error`` frame and the connection stays open; an unexpected failure inside a run is also
reported as an ``error`` frame, never as a crashed server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import os
import time
from importlib import resources
from typing import Any, Callable, Optional

import jax
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from gdlab.web import protocol, runner, turns
from gdlab.web.protocol import ProtocolError

log = logging.getLogger("gdlab.web")
STATIC_DIR = resources.files("gdlab.web") / "static"


def plotly_js_path() -> str:
    """plotly.min.js from the installed plotly wheel: the page needs no CDN and works offline."""
    import plotly

    path = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    if not os.path.exists(path):
        raise RuntimeError(f"plotly.min.js is missing from the plotly package at {path}; reinstall plotly.")
    return path


def _x64(fn, *args):
    """Run ``fn`` in float64, as gdlab.fit does (the switch is per thread, so it wraps each call)."""
    with jax.enable_x64(True):
        return fn(*args)


# Starting runs (parsing, the objective, the landscape) go to threads of their own: queued with
# the chunks of playing runs, fifty starts at once held every playing page's next frames ~1 s.
_SET_UP_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="gdlab-set-up")


# Playing runs' chunks go to one thread per core (at most four), not to asyncio's default pool
# (cores + 4): six chunks at once on two cores contend for the GIL and XLA's threads. Measured
# with bench_explorer_load (50 clients, median of 3 loads of the longest gap between two frame
# messages): 172 and 214 ms with the default pool, 103 and 110 ms with this one.
_PLAY_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                                   thread_name_prefix="gdlab-play")


# Tab 1's runs that play in shared chunks take their turns together (gdlab.web.turns), in threads
# of their own: its two takers loop while such runs play, and must not hold the play pool's
# threads from the other tabs' runs.
_TURNS = turns.TurnTaker(concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="gdlab-turns"),
                         _x64, takers=2)


async def _set_up(fn, *args):
    """``_x64(fn, *args)`` in a set-up thread (see ``_SET_UP_THREADS``)."""
    return await asyncio.get_running_loop().run_in_executor(_SET_UP_THREADS, functools.partial(_x64, fn, *args))


async def _play(fn, *args):
    """``_x64(fn, *args)`` in a play thread (see ``_PLAY_THREADS``)."""
    return await asyncio.get_running_loop().run_in_executor(_PLAY_THREADS, functools.partial(_x64, fn, *args))


def encode(payload: dict) -> str:
    """A message's JSON text; values that are JSON text already (:class:`gdlab.web.runner.JSONText`)
    go in as they are.

    Args:
      payload: the message.

    Returns:
      JSON text (NaN and infinities refused, as the page's JSON.parse would).

    Example:
      >>> encode({"type": "started", "landscape": runner.JSONText('{"dim": 1}')})
      '{"type": "started", "landscape": {"dim": 1}}'
    """
    encoded = {k: v for k, v in payload.items() if isinstance(v, runner.JSONText)}
    if not encoded:
        return json.dumps(payload, allow_nan=False)
    head = json.dumps({k: v for k, v in payload.items() if k not in encoded}, allow_nan=False)
    parts = [f"{json.dumps(k)}: {v}" for k, v in encoded.items()]
    return head[:-1] + (", " if head != "{}" else "") + ", ".join(parts) + "}"


class Players:
    """How many runs are playing on this server now: their chunks share its worker threads and
    the GIL, so each run's chunk shrinks as more play (:func:`gdlab.web.runner.fair_chunk`)."""

    def __init__(self) -> None:
        self.count = 0


class Connection:
    """One page's WebSocket: parses messages, steers its run, streams frames while playing.

    A tab of the explorer is its message grammar (``parse``: text → a pydantic message with a
    ``type``; ``kind``: text → (type, id) without raising) and its run (``build``: a start's
    config → an object with ``started()``, ``reset()``, ``advance(length)`` → (frames, stopped
    message or None), ``update(msg)`` → extra messages to send, ``step``, ``stop_reason`` and
    ``config.speed``). Tab 1's are :mod:`gdlab.web.protocol` and :class:`gdlab.web.runner.Run`.
    """

    def __init__(self, ws: WebSocket, build: Callable[[Any], Any] = runner.Run.build,
                 parse: Callable[[str], Any] = protocol.parse_message,
                 kind: Callable[[str], tuple] = protocol.message_type, players: Optional[Players] = None):
        self.ws = ws
        self.players = players if players is not None else Players()
        self.build, self.parse, self.kind = build, parse, kind
        self.run: Optional[Any] = None
        self.player: Optional[asyncio.Task] = None
        self.lock = asyncio.Lock()      # one JAX call at a time on this run

    async def send(self, payload: dict) -> None:
        await self.ws.send_text(encode(payload))

    async def error(self, message: str, field: Optional[str] = None, reply_to: Optional[str] = None,
                    ident: Optional[int] = None) -> None:
        # reply_to and id name the message refused (null when it could not be read), so a page
        # that sent several starts knows which one an error answers.
        await self.send({"type": "error", "field": field, "message": message, "reply_to": reply_to, "id": ident})

    async def handle(self, text: str) -> None:
        """Act on one message; every refusal is an error frame."""
        kind, ident = self.kind(text)
        try:
            msg = self.parse(text)
            await getattr(self, "on_" + msg.type)(msg)
        except ProtocolError as exc:
            await self.error(str(exc), exc.field, kind, ident)
        except (ValueError, ArithmeticError) as exc:     # a library check we did not anticipate
            await self.error(str(exc), None, kind, ident)
        except (WebSocketDisconnect, asyncio.CancelledError):
            raise
        except Exception as exc:                          # report, never take the server down
            log.exception("explorer message failed")
            await self.error(f"the server could not do that: {type(exc).__name__}: {exc}", None, kind, ident)

    # --- messages ------------------------------------------------------------------------

    async def on_start(self, msg: protocol.Start) -> None:
        await self.stop_playing()
        async with self.lock:
            self.run = None   # a refused start leaves no run behind to resume
            run = await _set_up(self.build, msg.config)
            started = await _set_up(run.started)
            self.run = run
        await self.send({**started, "id": msg.id})
        if msg.play:
            await self.play()
        else:
            await self.send({"type": "state", "state": "paused", "step": 0})

    async def on_pause(self, msg: Any) -> None:
        await self.stop_playing()
        await self.send({"type": "state", "state": "paused", "step": self.need_run().step})

    async def on_resume(self, msg: Any) -> None:
        self.need_run()
        await self.play()

    async def on_step(self, msg: protocol.Step) -> None:
        run = self.need_run()
        await self.stop_playing()
        remaining = msg.n
        async with self.lock:
            while remaining > 0 and run.stop_reason is None:
                length = max(n for n in runner.CHUNK_LENGTHS if n <= remaining)
                if not await self.advance(length):
                    break
                remaining -= length
        await self.send({"type": "state", "state": "paused", "step": run.step})

    async def on_reset(self, msg: Any) -> None:
        run = self.need_run()
        await self.stop_playing()
        async with self.lock:
            await _set_up(run.reset)
            started = await _set_up(run.started)
        await self.send(started)
        await self.send({"type": "state", "state": "paused", "step": 0})

    async def on_update(self, msg: protocol.Update) -> None:
        run = self.need_run()
        async with self.lock:
            was_stopped = run.stop_reason is not None
            for extra in await asyncio.to_thread(_x64, run.update, msg):
                await self.send(extra)
        await self.send({"type": "updated", "config": run.config.model_dump(), "step": run.step})
        if was_stopped and run.stop_reason is None and self.player is None:
            await self.play()            # a converged run told to go on (e.g. the other direction) goes on

    # --- playing -------------------------------------------------------------------------

    def need_run(self) -> Any:
        if self.run is None:
            raise ProtocolError("there is no run yet; send {\"type\": \"start\", \"config\": {...}} first.")
        return self.run

    async def advance(self, length: int) -> bool:
        """One chunk, its frames sent; False once the run has stopped."""
        run = self.need_run()
        if isinstance(run, runner.Run) and length == runner.SHARED_CHUNK and not run.pending:
            frames, stopped = await _TURNS.advance(run, length)
        else:
            frames, stopped = await _play(run.advance, length)
        if frames:
            await self.send({"type": "frames", "frames": frames})
        if stopped is not None:
            await self.send(stopped)
            return False
        return run.stop_reason is None

    async def play(self) -> None:
        if self.player is None or self.player.done():
            self.player = asyncio.create_task(self._play())
            await self.send({"type": "state", "state": "playing", "step": self.need_run().step})

    async def _play(self) -> None:
        self.players.count += 1
        try:
            while True:
                run = self.need_run()
                length, interval = runner.chunk_for_speed(run.config.speed)
                length = runner.fair_chunk(length, self.players.count)
                interval = length / run.config.speed
                began = time.perf_counter()
                async with self.lock:
                    going = await self.advance(length)
                if not going:
                    break
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))
        except asyncio.CancelledError:
            raise
        except (WebSocketDisconnect, RuntimeError):
            return                                   # the page went away mid-run
        except Exception as exc:                      # report, never crash the server
            log.exception("explorer run failed")
            try:
                await self.error(f"the run failed: {exc}")
            except Exception:
                return
        finally:
            self.players.count -= 1
            self.player = None if self.player is asyncio.current_task() else self.player

    async def stop_playing(self) -> None:
        task, self.player = self.player, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


def create_app() -> FastAPI:
    """The explorer's app: ``/`` (the page), ``/static/*``, ``/vendor/plotly.min.js``, ``/ws``."""
    app = FastAPI(title="gdlab explorer", docs_url=None, redoc_url=None, openapi_url=None)
    static = str(STATIC_DIR)
    players = Players()                 # one count for every tab's runs: they share the worker threads
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Response:
        return FileResponse(os.path.join(static, "index.html"), media_type="text/html")

    @app.get("/vendor/plotly.min.js")
    async def plotly_js() -> Response:
        return FileResponse(plotly_js_path(), media_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.websocket("/ws")
    async def ws_fit(ws: WebSocket) -> None:
        await serve(ws, Connection(ws, players=players))

    @app.get("/landscape", response_class=HTMLResponse)
    async def landscape_page() -> Response:
        return FileResponse(os.path.join(static, "landscape.html"), media_type="text/html")

    @app.websocket("/ws/landscape")
    async def ws_landscape(ws: WebSocket) -> None:
        from gdlab.web import landscape_tab

        await serve(ws, Connection(ws, build=landscape_tab.Run.build, parse=landscape_tab.parse_message,
                                   kind=landscape_tab.message_type, players=players))

    @app.get("/train", response_class=HTMLResponse)
    async def train_page() -> Response:
        return FileResponse(os.path.join(static, "train.html"), media_type="text/html")

    @app.websocket("/ws/train")
    async def ws_train(ws: WebSocket) -> None:
        from gdlab.web import train_tab

        await serve(ws, Connection(ws, build=train_tab.build, parse=train_tab.parse_message,
                                   kind=train_tab.message_type, players=players))

    return app


async def serve(ws: WebSocket, conn: Connection) -> None:
    """Accept ``ws`` and hand every text message to ``conn`` until the page goes away."""
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await conn.handle(message["text"])
            else:
                await conn.error("send text frames holding JSON; binary frames are not part of the protocol.")
    except (WebSocketDisconnect, RuntimeError):
        pass                                        # the page closed or dropped the connection
    finally:
        await conn.stop_playing()
