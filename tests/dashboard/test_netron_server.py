"""The Netron viewer's server answers only requests addressed to it (issue 11, item 8).

A page on another site can point its own host name at 127.0.0.1 (DNS rebinding) and then read, as same-origin,
whatever a local server hands out: here the user's model. The browser still sends that site's name as the
Host header, so the server refuses every request whose Host is not the loopback address and port it serves.
"""

from __future__ import annotations

import http.client

import pytest

from dashboard import netron_server as netron

MODEL = b"not really onnx, but served as the model"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> int:
    path = tmp_path_factory.mktemp("netron") / "model.onnx"
    path.write_bytes(MODEL)
    return netron.serve(str(path))


def fetch(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    """GET path from the server on 127.0.0.1:port with this Host header (None: no Host header at all)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/data/model.onnx", "/", "/index.html", "/prunelab-consent.js"])
def test_requests_addressed_to_the_loopback_port_are_answered(port, path):
    status, body = fetch(port, path, f"127.0.0.1:{port}")
    assert status == 200 and body
    if path == "/data/model.onnx":
        assert body == MODEL


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost:{port}", "127.0.0.1",
                                  "127.0.0.1:1", "127.0.0.1:{port}.evil.example", "[::1]:{port}", None])
@pytest.mark.parametrize("path", ["/data/model.onnx", "/"])
def test_requests_for_any_other_host_are_refused(port, path, host):
    status, body = fetch(port, path, None if host is None else host.format(port=port))
    assert status in (403, 421)
    assert MODEL not in body
