"""The browser page's files (stream/page/), served by the server over plain HTTP GET.

``/`` is the page; ``/protocol.json`` hands the page the protocol's constants from
stream/protocol.py and stream/auth.py, so the JavaScript client and the Python ones share
one definition of paths, formats, limits and the token subprotocol.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .auth import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX
from .protocol import (DECODE_PATH, FORMATS, HEALTH_PATH, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, PROTOCOL_VERSION,
                       RETURNS, STREAM_PATH)

PAGE_DIR = Path(__file__).parent / "page"
PROTOCOL_JSON_PATH = "/protocol.json"
# URL path -> file in PAGE_DIR
PAGE_FILES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js",
              "/capture-worklet.js": "capture-worklet.js", "/style.css": "style.css"}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": "application/json"}
PAGE_PATHS = tuple(PAGE_FILES) + (PROTOCOL_JSON_PATH,)


@dataclass(frozen=True)
class PageFile:
    body: bytes
    content_type: str


def protocol_constants() -> dict:
    """What the page needs to speak protocol v1 (served as /protocol.json)."""
    return {"protocol": PROTOCOL_VERSION, "stream_path": STREAM_PATH, "decode_path": DECODE_PATH,
            "health_path": HEALTH_PATH, "formats": list(FORMATS), "returns": list(RETURNS),
            "min_sample_rate": MIN_SAMPLE_RATE, "max_sample_rate": MAX_SAMPLE_RATE,
            "subprotocol": SUBPROTOCOL, "token_subprotocol_prefix": TOKEN_SUBPROTOCOL_PREFIX}


def load_page() -> dict[str, PageFile]:
    """URL path -> file, read once (the server keeps them in memory)."""
    files = {}
    for url, name in PAGE_FILES.items():
        path = PAGE_DIR / name
        files[url] = PageFile(path.read_bytes(), CONTENT_TYPES[path.suffix])
    files[PROTOCOL_JSON_PATH] = PageFile(json.dumps(protocol_constants()).encode(), CONTENT_TYPES[".json"])
    return files
