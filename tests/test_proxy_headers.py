"""End-to-end: proxy headers (--proxy-headers, --forwarded-allow-ips) through the real luvicorn command.

Raw sockets from 127.0.0.1 (and ::1, and a Unix socket) play the proxy and send X-Forwarded-For,
X-Forwarded-Proto and Forwarded; the app answers with the scope's client and scheme as JSON. The loop
module comes from LUVICORN_LOOP (default luvrs)."""

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import unittest

from websockets.sync.client import connect, unix_connect

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import DEADLINE, Luvicorn, write_app  # noqa: E402

APP = """
    local function describe(scope)
      local c = scope.client
      local client = c and string.format('["%s", %d]', c[1], c[2]) or "null"
      return string.format('{"type": "%s", "client": %s, "scheme": "%s"}', scope.type, client, scope.scheme)
    end
    return function(scope, receive, send)
      if scope.type == "http" then
        send({ type = "http.response.start", status = 200, headers = { { "content-type", "application/json" } } })
        send({ type = "http.response.body", body = describe(scope) })
      elseif scope.type == "websocket" then
        assert(receive().type == "websocket.connect")
        send({ type = "websocket.accept" })
        send({ type = "websocket.send", text = describe(scope) })
        -- the client closes, so that it can still read its own address while the connection is open
        assert(receive().type == "websocket.disconnect")
      else
        error("no lifespan here")
      end
    end
"""


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def get(address, headers=(), family=socket.AF_INET):
    """One request over a fresh connection; returns (the scope the app saw, the local address used)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(DEADLINE)
        s.connect(address)
        local = s.getsockname()
        head = "GET / HTTP/1.1\r\nHost: example.com\r\n"
        head += "".join("%s: %s\r\n" % h for h in headers)
        s.sendall((head + "Connection: close\r\n\r\n").encode("latin-1"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status, _, body = data.partition(b"\r\n\r\n")
    if not status.startswith(b"HTTP/1.1 200 "):
        raise AssertionError("unexpected response: %r" % data)
    return json.loads(body), local


class ProxyHeaders(unittest.TestCase):

    def setUp(self):
        self.app = write_app(self, APP)

    def serve(self, *args, host_pattern=r"127\.0\.0\.1", extra_env=None):
        server = Luvicorn(self.app, *args, extra_env=extra_env)
        self.addCleanup(server.kill)
        m = server.wait_line(r"Luvicorn running on http://%s:(\d+)" % host_pattern)
        server.port = int(m.group(1))
        return server

    def serve_unix(self, *args):
        path = os.path.join(tempfile.mkdtemp(), "luvicorn.sock")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        server = Luvicorn(self.app, "--uds", path, *args, port=False)
        self.addCleanup(server.kill)
        server.wait_line(r"Luvicorn running on unix socket " + re.escape(path))
        return server, path

    def test_default_trusts_loopback(self):
        server = self.serve()
        addr = ("127.0.0.1", server.port)
        scope, _ = get(addr, [("X-Forwarded-For", "198.51.100.1, 203.0.113.7"), ("X-Forwarded-Proto", "https")])
        self.assertEqual(scope, {"type": "http", "client": ["203.0.113.7", 0], "scheme": "https"})
        # the walk passes over trusted hops (127.0.0.1, ::1 in any form) and joins several header lines
        scope, _ = get(addr, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "0:0:0:0:0:0:0:1, 127.0.0.1")])
        self.assertEqual(scope["client"], ["203.0.113.7", 0])
        # all hops trusted: the leftmost
        scope, _ = get(addr, [("X-Forwarded-For", "::1, 127.0.0.1")])
        self.assertEqual(scope["client"], ["::1", 0])
        # an unknown hop stops the walk: the client is not known
        scope, _ = get(addr, [("X-Forwarded-For", "203.0.113.7, unknown")])
        self.assertIsNone(scope["client"])
        # a scheme that is neither http nor https is ignored
        scope, local = get(addr, [("X-Forwarded-Proto", "ftp")])
        self.assertEqual(scope, {"type": "http", "client": ["127.0.0.1", local[1]], "scheme": "http"})
        self.assertEqual(server.stop(), 0)

    def test_forwarded(self):
        server = self.serve()
        addr = ("127.0.0.1", server.port)
        scope, _ = get(addr, [("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;host=example.com')])
        self.assertEqual(scope["client"], ["2001:db8:cafe::17", 4711])
        self.assertEqual(scope["scheme"], "https")
        # several elements and lines, walked from the right, proto from the chosen element
        scope, _ = get(addr, [("Forwarded", "for=192.0.2.1;proto=http, For=192.0.2.60;Proto=HTTPS"),
                              ("Forwarded", 'for="127.0.0.1:9000";proto=http')])
        self.assertEqual(scope["client"], ["192.0.2.60", 0])
        self.assertEqual(scope["scheme"], "https")
        # X-Forwarded-* win: a proxy that appends to X-Forwarded-For may pass the client's Forwarded on
        scope, _ = get(addr, [("Forwarded", "for=6.6.6.6;proto=https"),
                              ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "http")])
        self.assertEqual(scope["client"], ["203.0.113.7", 0])
        self.assertEqual(scope["scheme"], "http")
        # obfuscated identifier: unknown client
        scope, _ = get(addr, [("Forwarded", "for=_hidden;proto=https")])
        self.assertIsNone(scope["client"])
        self.assertEqual(scope["scheme"], "https")
        # malformed input from the far side does not hide the element the proxy added on its own line
        scope, _ = get(addr, [("Forwarded", 'for="192.0.2.1;'), ("Forwarded", "for=203.0.113.7")])
        self.assertEqual(scope["client"], ["203.0.113.7", 0])
        self.assertEqual(server.stop(), 0)

    def test_cidr_list_that_leaves_out_the_peer(self):
        server = self.serve("--forwarded-allow-ips", "10.0.0.0/8, fd00::/8")
        scope, local = get(("127.0.0.1", server.port), [("X-Forwarded-For", "203.0.113.7"),
                                                        ("X-Forwarded-Proto", "https"),
                                                        ("Forwarded", "for=192.0.2.1;proto=https")])
        self.assertEqual(scope, {"type": "http", "client": ["127.0.0.1", local[1]], "scheme": "http"})
        self.assertEqual(server.stop(), 0)

    def test_cidr_list_with_the_peer(self):
        # 10.0.0.0/8 trusted as a hop, the peer through 127.0.0.0/8
        server = self.serve("--forwarded-allow-ips", "127.0.0.0/8,10.0.0.0/8")
        scope, _ = get(("127.0.0.1", server.port), [("X-Forwarded-For", "203.0.113.7, 10.20.30.40")])
        self.assertEqual(scope["client"], ["203.0.113.7", 0])
        self.assertEqual(server.stop(), 0)

    def test_no_proxy_headers(self):
        server = self.serve("--no-proxy-headers")
        scope, local = get(("127.0.0.1", server.port), [("X-Forwarded-For", "203.0.113.7"),
                                                        ("X-Forwarded-Proto", "https")])
        self.assertEqual(scope, {"type": "http", "client": ["127.0.0.1", local[1]], "scheme": "http"})
        self.assertEqual(server.stop(), 0)

    def test_environment_list(self):
        server = self.serve(extra_env=["FORWARDED_ALLOW_IPS=10.0.0.1"])
        scope, local = get(("127.0.0.1", server.port), [("X-Forwarded-For", "203.0.113.7")])
        self.assertEqual(scope["client"], ["127.0.0.1", local[1]])
        self.assertEqual(server.stop(), 0)

    @unittest.skipUnless(has_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6_listener(self):
        server = self.serve("--host", "::1", host_pattern=r"\[::1\]")
        addr = ("::1", server.port)
        scope, _ = get(addr, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")], socket.AF_INET6)
        self.assertEqual(scope, {"type": "http", "client": ["203.0.113.7", 0], "scheme": "https"})
        self.assertEqual(server.stop(), 0)
        server = self.serve("--host", "::1", "--forwarded-allow-ips", "127.0.0.1", host_pattern=r"\[::1\]")
        scope, local = get(("::1", server.port), [("X-Forwarded-For", "203.0.113.7")], socket.AF_INET6)
        self.assertEqual(scope["client"], ["::1", local[1]])
        self.assertEqual(server.stop(), 0)

    def test_unix_socket_trusted_with_unix(self):
        server, path = self.serve_unix("--forwarded-allow-ips", "unix:")
        scope, _ = get(path, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")], socket.AF_UNIX)
        self.assertEqual(scope, {"type": "http", "client": ["203.0.113.7", 0], "scheme": "https"})
        scope, _ = get(path, [("X-Forwarded-Proto", "https")], socket.AF_UNIX)
        self.assertEqual(scope, {"type": "http", "client": None, "scheme": "https"})
        with unix_connect(path, "ws://localhost/", open_timeout=DEADLINE,
                          additional_headers={"X-Forwarded-For": "203.0.113.8", "X-Forwarded-Proto": "https"}) as ws:
            scope = json.loads(ws.recv(timeout=DEADLINE))
        self.assertEqual(scope, {"type": "websocket", "client": ["203.0.113.8", 0], "scheme": "wss"})
        self.assertEqual(server.stop(), 0)

    def test_unix_socket_untrusted_by_default(self):
        server, path = self.serve_unix()
        scope, _ = get(path, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")], socket.AF_UNIX)
        self.assertEqual(scope, {"type": "http", "client": None, "scheme": "http"})
        self.assertEqual(server.stop(), 0)

    def test_websocket_behind_a_trusted_proxy(self):
        server = self.serve()
        uri = "ws://127.0.0.1:%d/" % server.port
        with connect(uri, open_timeout=DEADLINE,
                     additional_headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}) as ws:
            scope = json.loads(ws.recv(timeout=DEADLINE))
        self.assertEqual(scope, {"type": "websocket", "client": ["203.0.113.9", 0], "scheme": "wss"})
        forwarded = {"Forwarded": 'for="[2001:db8::9]:1234";proto=http'}
        with connect(uri, open_timeout=DEADLINE, additional_headers=forwarded) as ws:
            scope = json.loads(ws.recv(timeout=DEADLINE))
        self.assertEqual(scope, {"type": "websocket", "client": ["2001:db8::9", 1234], "scheme": "ws"})
        self.assertEqual(server.stop(), 0)

    def test_websocket_behind_an_untrusted_proxy(self):
        server = self.serve("--forwarded-allow-ips", "10.0.0.0/8")
        with connect("ws://127.0.0.1:%d/" % server.port, open_timeout=DEADLINE,
                     additional_headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}) as ws:
            scope = json.loads(ws.recv(timeout=DEADLINE))
            local = ws.socket.getsockname()
        self.assertEqual(scope, {"type": "websocket", "client": ["127.0.0.1", local[1]], "scheme": "ws"})
        self.assertEqual(server.stop(), 0)

    def check_startup_error(self, args, env, message):
        server = Luvicorn(self.app, *args, extra_env=env)
        self.addCleanup(server.kill)
        self.assertEqual(server.proc.wait(DEADLINE), 3)
        server.wait_for(lambda lines: False, timeout=0)  # the log is read to its end once the process is gone
        server.kill()
        self.assertIn(message, server.log())
        self.assertNotIn("Luvicorn running on", server.log())

    def test_invalid_entry_exits_3(self):
        self.check_startup_error(["--forwarded-allow-ips", "127.0.0.1,10.0.0.1/8"], None,
                                 "ERROR:    --forwarded-allow-ips: invalid entry '10.0.0.1/8': "
                                 "address bits are set beyond the prefix length")
        self.check_startup_error(["--forwarded-allow-ips", "proxy.example.com"], None,
                                 "--forwarded-allow-ips: invalid entry 'proxy.example.com': expected an IPv4 or "
                                 "IPv6 address, a CIDR network")
        # checked with proxy headers off as well, and from $FORWARDED_ALLOW_IPS
        self.check_startup_error(["--no-proxy-headers"], ["FORWARDED_ALLOW_IPS=fd00::/129"],
                                 "--forwarded-allow-ips: invalid entry 'fd00::/129': the prefix length must be "
                                 "a number from 0 to 128")


if __name__ == "__main__":
    unittest.main()
