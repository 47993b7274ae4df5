"""The Netron graph viewer for an exported model, served on 127.0.0.1 and embedded in the page.

PruneLab serves Netron's static files itself (one small server per model file, in a thread) so that
the viewer stays on this machine:
- its consent prompt is pre-answered (a same-origin script sets Netron's `consent` cookie first), so it
  never asks an outside service where the user is;
- it is marked unpackaged (version 0.0.0), which turns off its Google Analytics telemetry and error
  reports, and a Content-Security-Policy limits every connection to the server itself;
- the model is served from memory under /data/model.onnx and opened on load;
- only requests whose Host header is the address it serves (127.0.0.1:<port>) are answered, so a page that
  points its own host name at 127.0.0.1 (DNS rebinding) is refused (403) instead of reading the model.
It is embedded with st.iframe (streamlit.components.v1.html is deprecated, to be removed after 2026-06-01).
Netron's code refuses to run 180 days after its build; past that date the viewer is not offered and
the width chart stands alone.
"""

from __future__ import annotations

import datetime as dt
import http.server
import re
import threading
import urllib.parse
from pathlib import Path

MAX_AGE_DAYS = 180  # Netron's own limit (browser.js)
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
         ".ico": "image/x-icon", ".json": "application/json", ".svg": "image/svg+xml", ".woff2": "font/woff2",
         ".woff": "font/woff", ".ttf": "font/ttf"}
CONSENT_JS = b'document.cookie = "consent=" + Date.now() + "; path=/; max-age=2592000; SameSite=Lax";\n'
CSP = "connect-src 'self' data: blob:; img-src 'self' data: blob:"  # nothing leaves this machine


def _netron_dir() -> Path:
    import netron

    return Path(netron.__file__).parent


def netron_age_days() -> float | None:
    """Days since the installed Netron was built (from its index.html), or None if unknown."""
    found = re.search(r'<meta name="date" content="([^"]+)">', (_netron_dir() / "index.html").read_text("utf-8"))
    if not found:
        return None
    return (dt.datetime.now() - dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")).total_seconds() / 86400


def _index() -> bytes:
    html = (_netron_dir() / "index.html").read_text("utf-8")
    local = ('<meta name="version" content="0.0.0">\n<meta name="type" content="Python">\n'
             '<meta name="file" content="/data/model.onnx">\n<meta name="name" content="model.onnx">\n'
             '<meta name="identifier" content="model.onnx">\n'
             '<script type="text/javascript" src="prunelab-consent.js"></script>')
    return re.sub(r'<meta name="version" content="[^"]*">', lambda _: local, html, count=1).encode()


def _handler(model: bytes) -> type[http.server.BaseHTTPRequestHandler]:
    root = _netron_dir().resolve()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = urllib.parse.urlparse(self.path).path
            if self.headers.get_all("Host") != [f"127.0.0.1:{self.server.server_address[1]}"]:
                self._send(403, "text/plain", b"this server answers requests for 127.0.0.1 and its port only")
            elif path in ("/", "/index.html"):
                self._send(200, "text/html", _index())
            elif path == "/data/model.onnx":
                self._send(200, "application/octet-stream", model)
            elif path == "/prunelab-consent.js":
                self._send(200, "text/javascript", CONSENT_JS)
            else:
                file = (root / path.lstrip("/")).resolve()
                if file.is_relative_to(root) and file.is_file() and file.suffix in TYPES:
                    self._send(200, TYPES[file.suffix], file.read_bytes())
                else:
                    self._send(404, "text/plain", b"not found")

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # quiet
            pass

    return Handler


def serve(model_path: str) -> int:
    """Serve this model file with Netron on 127.0.0.1; return the port (dashboard.cache keeps one server per file
    version)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(Path(model_path).read_bytes()))
    threading.Thread(target=server.serve_forever, name="prunelab-netron", daemon=True).start()
    return server.server_address[1]
