"""The web explorer: a FastAPI app (``app.py``), its WebSocket protocol (``protocol.py``), the
runner that steps the library's engine for a page (``runner.py``) and the page (``static/``).

Start it with ``gdlab explore`` (or ``make explore``); nothing here is imported by ``import gdlab``.
"""
