"""End-to-end test of examples/app (the lasgi notes service) through the real luvicorn, with curl and a
raw-socket WebSocket client. Runs once per loop module: luv, and luvrs when build/luvrs.so exists."""

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import DEADLINE, HAS_LUVRS, ROOT, Luvicorn  # noqa: E402


def curl(*args):
    """Runs curl; returns (status, headers dict with lists, body bytes)."""
    out = subprocess.run(["curl", "-s", "-S", "-i", "--max-time", str(DEADLINE), *args],
                         capture_output=True, timeout=DEADLINE + 5)
    if out.returncode != 0:
        raise AssertionError("curl failed: " + out.stderr.decode(errors="replace"))
    raw = out.stdout
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body


class WebSocket:
    """A minimal RFC 6455 client over a raw socket (text frames only, masked, no extensions)."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("connection closed during the handshake")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv(self):
        b0, b1 = self._read(2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return opcode, self._read(n)

    def recv_json(self):
        opcode, data = self.recv()
        assert opcode == 1, f"expected a text frame, got opcode {opcode}"
        return json.loads(data)

    def send(self, opcode, payload):
        mask = os.urandom(4)
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        else:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def close(self):
        self.send(8, struct.pack("!H", 1000))
        try:
            while True:
                opcode, _ = self.recv()
                if opcode == 8:
                    break
        finally:
            self.sock.close()


class NotesAppLuv(unittest.TestCase):
    loop = "luv"

    @classmethod
    def setUpClass(cls):
        cls.server = Luvicorn("examples.app.main:app", "--host", "127.0.0.1", loop=cls.loop).started()
        cls.base = cls.server.url("")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(signal.SIGINT)

    def test_home_page_and_form(self):
        status, headers, body = curl(self.base + "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], ["text/html; charset=utf-8"])
        self.assertIn(b'<form method="post" action="/notes"', body)
        status, headers, _ = curl("-d", "title=From+curl&body=a+%26+b", self.base + "/notes")
        self.assertEqual(status, 303)
        location = headers["location"][0]
        self.assertRegex(location, r"^http://127\.0\.0\.1:\d+/notes/\d+$")
        self.assertTrue(headers["set-cookie"][0].startswith("last_note="))
        status, _, body = curl(location)
        self.assertEqual(status, 200)
        self.assertIn(b"From curl", body)
        self.assertIn(b"a &amp; b", body)
        status, _, body = curl("-d", "title=", self.base + "/notes")
        self.assertEqual(status, 400)
        self.assertIn(b"title is required", body)

    def test_json_api(self):
        status, headers, body = curl("-H", "content-type: application/json", "--data-binary",
                                     '{"title":"api note","body":"b"}', self.base + "/api/notes")
        self.assertEqual(status, 201)
        note = json.loads(body)
        self.assertEqual(note["title"], "api note")
        self.assertEqual(headers["location"], [f"/api/notes/{note['id']}"])
        status, _, body = curl(self.base + "/api/notes?q=api+note")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["count"], 1)
        status, _, _ = curl("-X", "DELETE", f"{self.base}/api/notes/{note['id']}")
        self.assertEqual(status, 204)
        status, _, body = curl(f"{self.base}/api/notes/{note['id']}")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body), {"error": f"no note {note['id']}"})
        status, headers, _ = curl("-X", "PUT", self.base + "/api/notes/1")
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], ["GET, HEAD, DELETE"])
        status, _, _ = curl("--data-binary", "{bad", self.base + "/api/notes")
        self.assertEqual(status, 400)

    def test_static_files(self):
        with open(os.path.join(ROOT, "examples/app/static/app.css"), "rb") as f:
            css = f.read()
        status, headers, body = curl(self.base + "/static/app.css")
        self.assertEqual(status, 200)
        self.assertEqual(body, css)
        self.assertEqual(headers["content-type"], ["text/css; charset=utf-8"])
        self.assertEqual(headers["content-length"], [str(len(css))])
        status, headers, body = curl("-H", "Range: bytes=0-9", self.base + "/static/app.css")
        self.assertEqual(status, 206)
        self.assertEqual(body, css[:10])
        self.assertEqual(headers["content-range"], [f"bytes 0-9/{len(css)}"])
        status, headers, _ = curl("-H", f"Range: bytes={len(css)}-", self.base + "/static/app.css")
        self.assertEqual(status, 416)
        self.assertEqual(headers["content-range"], [f"bytes */{len(css)}"])
        status, headers, body = curl("-I", self.base + "/static/app.js")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")
        if "etag" in headers:
            status, _, _ = curl("-H", "If-None-Match: " + headers["etag"][0], self.base + "/static/app.js")
            self.assertEqual(status, 304)

    def test_static_traversal_refused(self):
        for path in ("/static/../main.lua", "/static/%2e%2e/main.lua", "/static/%2E%2E/store.lua",
                     "/static/..%2fmain.lua", "/static/sub/../../main.lua"):
            status, _, body = curl("--path-as-is", self.base + path)
            self.assertIn(status, (400, 404), path)
            self.assertNotIn(b"lasgi", body, path)

    def test_gzip(self):
        for i in range(30):
            curl("-H", "content-type: application/json", "--data-binary",
                 json.dumps({"title": f"gzip note {i}"}), self.base + "/api/notes")
        status, headers, body = curl("--compressed", self.base + "/api/notes")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(json.loads(body)["count"], 30)
        if self.loop == "luvrs":
            self.assertEqual(headers.get("content-encoding"), ["gzip"])

    def test_live_websocket(self):
        ws = WebSocket(self.server.port, "/ws")
        if ws.status != 101:
            ws.sock.close()
        self.assertEqual(ws.status, 101)
        try:
            hello = ws.recv_json()
            self.assertEqual(hello["event"], "hello")
            status, _, body = curl("-H", "content-type: application/json", "--data-binary",
                                   '{"title":"pushed"}', self.base + "/api/notes")
            self.assertEqual(status, 201)
            created = ws.recv_json()
            self.assertEqual(created["event"], "created")
            self.assertEqual(created["note"]["title"], "pushed")
            ws.send(1, b"ping")
            self.assertEqual(ws.recv_json(), {"event": "pong"})
        finally:
            ws.close()

    def test_websocket_unknown_path_rejected(self):
        ws = WebSocket(self.server.port, "/no-such-socket")
        ws.sock.close()
        self.assertEqual(ws.status, 403)


@unittest.skipUnless(HAS_LUVRS, "build/luvrs.so not built")
class NotesAppLuvrs(NotesAppLuv):
    loop = "luvrs"


if __name__ == "__main__":
    unittest.main()
