"""End-to-end WebSocket tests through the real luvicorn command (proposed path: tests/test_websocket_e2e.py).

Python's `websockets` library is the well-behaved client; a raw socket sends what the library refuses to
(protocol violations). Runs once per loop module: luv, and luvrs when build/luvrs.so exists. The app is
tests/apps/websocket_app.lua."""

import os
import re
import signal
import socket
import struct
import sys
import time
import unittest

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import DEADLINE, HAS_LUVRS, Luvicorn  # noqa: E402

APP = "tests/apps/websocket_app.lua"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x01\x02\x03\x04"


def Server(loop, *options):
    """The luvicorn command serving the test app on an ephemeral port."""
    return Luvicorn(APP, "--host", "127.0.0.1", *options, loop=loop).started()


def frame(opcode, payload=b"", fin=True, rsv=0, masked=True, length=None):
    """A client frame; `length` overrides the encoded payload length."""
    n = len(payload) if length is None else length
    b1 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes([b1, m | n])
    elif n < 65536:
        head = bytes([b1, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b1, m | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


class Raw:
    """A raw-socket WebSocket client for what the library will not send."""

    def __init__(self, port, path="/echo", extra=b"", version=b"13"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
                          b"Sec-WebSocket-Version: " + version + b"\r\n" + extra + b"\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        self.head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ")[1])

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def read_frame(self):
        """Returns (opcode, payload) of the next server frame."""
        self._need(2)
        b1, b2 = self.buf[0], self.buf[1]
        n, pos = b2 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, pos = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, pos = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(pos + n)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return b1 & 0x0F, payload

    def read_close(self):
        """Skips data frames; returns (code, reason) of the server's close frame."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == 8:
                if not payload:
                    return 1005, b""
                return struct.unpack(">H", payload[:2])[0], payload[2:]

    def at_eof(self):
        """True when the server closes the TCP connection after the close frame."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()


class WebSocketTests:
    loop = None
    options = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.loop, *cls.options)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def connect(self, path="/echo", **kw):
        kw.setdefault("open_timeout", DEADLINE)
        kw.setdefault("close_timeout", DEADLINE)
        return connect(self.server.url(path, "ws"), **kw)

    # -- messages --------------------------------------------------------------------------------------

    def test_echo_text_and_binary_up_to_16_mib(self):
        with self.connect(max_size=None) as ws:
            for n in (0, 1, 125, 126, 65535, 65536, 1 << 20, 16 * 1024 * 1024):
                text = ("é" * (n // 2)) + ("a" * (n % 2))
                ws.send(text)
                self.assertEqual(ws.recv(timeout=DEADLINE), text, "text of %d bytes" % n)
                data = os.urandom(n)
                ws.send(data)
                self.assertEqual(ws.recv(timeout=DEADLINE), data, "binary of %d bytes" % n)

    def test_fragmented_send_is_reassembled(self):
        with self.connect() as ws:
            ws.send(["frag", "ment", "ed ✓"])
            self.assertEqual(ws.recv(timeout=DEADLINE), "fragmented ✓")
            ws.send([b"\x00\x01", b"", b"\x02"])
            self.assertEqual(ws.recv(timeout=DEADLINE), b"\x00\x01\x02")

    def test_ping_is_answered_with_pong(self):
        with self.connect() as ws:
            pong = ws.ping(b"are you there")
            self.assertTrue(pong.wait(DEADLINE))

    def test_ping_between_fragments_raw(self):
        raw = Raw(self.server.port)
        try:
            raw.sock.sendall(frame(1, b"a", fin=False) + frame(9, b"p") + frame(0, b"b"))
            self.assertEqual(raw.read_frame(), (10, b"p"))
            self.assertEqual(raw.read_frame(), (1, b"ab"))
        finally:
            raw.close()

    def test_subprotocol_and_accept_headers(self):
        with self.connect(subprotocols=["one", "chat"]) as ws:
            self.assertEqual(ws.subprotocol, "chat")
            self.assertEqual(ws.response.headers["x-app"], "websocket")
        with self.connect() as ws:
            self.assertIsNone(ws.subprotocol)

    def test_permessage_deflate_negotiated_only_with_the_primitive(self):
        with self.connect() as ws:
            ext = ws.response.headers.get("sec-websocket-extensions")
            if self.loop == "luvrs":
                self.assertEqual(ext, "permessage-deflate")
                text = "compressible " * 10000
                ws.send(text)
                self.assertEqual(ws.recv(timeout=DEADLINE), text)
            else:
                self.assertIsNone(ext)

    # -- handshake failures ------------------------------------------------------------------------------

    def test_close_before_accept_is_403(self):
        with self.assertRaises(InvalidStatus) as cm:
            self.connect("/reject")
        self.assertEqual(cm.exception.response.status_code, 403)

    def test_custom_denial_response(self):
        with self.assertRaises(InvalidStatus) as cm:
            self.connect("/deny")
        response = cm.exception.response
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.headers["x-denied"], "yes")
        self.assertEqual(bytes(response.body), b"no entry")

    def test_bad_handshake_is_400_and_wrong_version_426(self):
        raw = Raw(self.server.port, version=b"8")
        try:
            self.assertEqual(raw.status, 426)
            self.assertIn(b"\r\nsec-websocket-version: 13", raw.head.lower())
        finally:
            raw.close()
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=DEADLINE)
        try:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
            self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 400 "))
        finally:
            sock.close()

    # -- closing -----------------------------------------------------------------------------------------

    def test_client_close_is_echoed(self):
        raw = Raw(self.server.port)
        try:
            raw.sock.sendall(frame(8, struct.pack(">H", 4001) + "bye ✓".encode()))
            self.assertEqual(raw.read_close(), (4001, "bye ✓".encode()))
            self.assertTrue(raw.at_eof())
        finally:
            raw.close()
        self.server.wait_line(r"app saw disconnect 4001", stream="out")

    def test_empty_close_is_answered_and_seen_as_1005(self):
        raw = Raw(self.server.port)
        try:
            raw.sock.sendall(frame(8))
            self.assertEqual(raw.read_close(), (1005, b""))
        finally:
            raw.close()
        self.server.wait_line(r"app saw disconnect 1005", stream="out")

    def test_app_close_code_and_reason(self):
        with self.connect() as ws:
            ws.send("close:4321:done here")
            with self.assertRaises(ConnectionClosed) as cm:
                ws.recv(timeout=DEADLINE)
            self.assertEqual(cm.exception.rcvd.code, 4321)
            self.assertEqual(cm.exception.rcvd.reason, "done here")

    # -- violations (raw socket) ---------------------------------------------------------------------------

    def assert_violation(self, data, code):
        raw = Raw(self.server.port)
        try:
            raw.sock.sendall(data)
            self.assertEqual(raw.read_close()[0], code)
        finally:
            raw.close()

    def test_unmasked_frame_is_1002(self):
        self.assert_violation(frame(1, b"hi", masked=False), 1002)

    def test_reserved_bits_are_1002(self):
        self.assert_violation(frame(1, b"hi", rsv=0x20), 1002)
        self.assert_violation(frame(1, b"hi", rsv=0x10), 1002)
        # RSV1 is legal only once permessage-deflate is agreed; this raw client did not offer it.
        self.assert_violation(frame(1, b"hi", rsv=0x40), 1002)

    def test_unknown_opcodes_are_1002(self):
        for opcode in (3, 7, 11, 15):
            self.assert_violation(frame(opcode, b""), 1002)

    def test_bad_control_frames_are_1002(self):
        self.assert_violation(frame(9, b"", fin=False), 1002)
        self.assert_violation(frame(9, b"x" * 126), 1002)
        self.assert_violation(frame(8, b"\x03"), 1002)
        self.assert_violation(frame(8, struct.pack(">H", 1005)), 1002)
        self.assert_violation(frame(8, struct.pack(">H", 999)), 1002)

    def test_bad_fragmentation_is_1002(self):
        self.assert_violation(frame(0, b"x"), 1002)
        self.assert_violation(frame(1, b"a", fin=False) + frame(1, b"b"), 1002)

    def test_invalid_utf8_is_1007(self):
        self.assert_violation(frame(1, b"a\xffb"), 1007)
        self.assert_violation(frame(1, b"\xed\xa0\x80"), 1007)
        self.assert_violation(frame(1, b"ok\xf4", fin=False) + frame(0, b"\x90\x80\x80"), 1007)
        self.assert_violation(frame(8, struct.pack(">H", 1000) + b"\xff"), 1007)

    def test_message_over_max_size_is_1009(self):
        # The header alone announces 16 MiB + 1: refused before any payload is sent.
        self.assert_violation(frame(2, b"", length=16 * 1024 * 1024 + 1)[:14], 1009)

    # -- backpressure --------------------------------------------------------------------------------------

    def test_client_that_never_reads_bounds_server_memory(self):
        raw = Raw(self.server.port, "/flood")
        try:
            raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            time.sleep(1.0)  # the app tries to send 1 MiB messages in a loop all this time
            with open("/proc/%d/status" % self.server.proc.pid) as f:
                rss_kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
            self.assertLess(rss_kb, 64 * 1024, "the server buffered without bound")
        finally:
            raw.close()


class KeepaliveAndShutdownTests:
    loop = None

    def test_unanswered_pings_close_with_1011(self):
        server = Server(self.loop, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3")
        try:
            raw = Raw(server.port)
            try:
                seen_ping = False
                while True:
                    opcode, payload = raw.read_frame()
                    if opcode == 9:
                        seen_ping = True
                    elif opcode == 8:
                        self.assertEqual(struct.unpack(">H", payload[:2])[0], 1011)
                        break
                self.assertTrue(seen_ping)
            finally:
                raw.close()
        finally:
            server.stop()

    def test_answered_pings_keep_the_connection(self):
        server = Server(self.loop, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3")
        try:
            with connect(server.url("/echo", "ws"), open_timeout=DEADLINE) as ws:
                time.sleep(1.0)  # the library answers the server's pings
                ws.send("still here")
                self.assertEqual(ws.recv(timeout=DEADLINE), "still here")
        finally:
            server.stop()

    def test_sigterm_closes_with_1012_and_exits_0(self):
        server = Server(self.loop)
        try:
            with connect(server.url("/echo", "ws"), open_timeout=DEADLINE) as ws:
                ws.send("x")
                ws.recv(timeout=DEADLINE)
                server.proc.send_signal(signal.SIGTERM)
                with self.assertRaises(ConnectionClosed) as cm:
                    ws.recv(timeout=DEADLINE)
                self.assertIn(cm.exception.rcvd.code, (1012, 1001))
            self.assertEqual(server.proc.wait(timeout=DEADLINE), 0)
        finally:
            server.stop()


class LuvWebSocketTests(WebSocketTests, unittest.TestCase):
    loop = "luv"


class LuvKeepaliveAndShutdownTests(KeepaliveAndShutdownTests, unittest.TestCase):
    loop = "luv"


@unittest.skipUnless(HAS_LUVRS, "build/luvrs.so not built")
class LuvrsWebSocketTests(WebSocketTests, unittest.TestCase):
    loop = "luvrs"


@unittest.skipUnless(HAS_LUVRS, "build/luvrs.so not built")
class LuvrsKeepaliveAndShutdownTests(KeepaliveAndShutdownTests, unittest.TestCase):
    loop = "luvrs"


if __name__ == "__main__":
    unittest.main()
