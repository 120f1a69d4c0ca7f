"""End-to-end tests of the `luvicorn` command: real processes on 127.0.0.1, real clients (curl,
http.client, raw sockets). The loop module comes from LUVICORN_LOOP (default luvrs)."""

import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import HAS_LUVRS, Luvicorn, exchange, write_app  # noqa: E402


def read_responses(sock, count, timeout=10):
    """Reads `count` complete HTTP responses (Content-Length or chunked) from a raw socket."""
    sock.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("connection closed after %d responses: %r" % (len(out), buf))
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            out.append((status, headers, b""))
            continue
        n = int(headers.get("content-length", "0"))
        while len(buf) < n:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("short body")
            buf += data
        body, buf = buf[:n], buf[n:]
        out.append((status, headers, body))
    return out


ECHO_APP = """
local function app(scope, receive, send)
  if scope.type ~= "http" then error("no lifespan") end
  local parts, events = {}, 0
  repeat
    local ev = receive()
    parts[#parts + 1] = ev.body or ""
    events = events + 1
  until not ev.more_body
  local body = table.concat(parts)
  local info = ("%s %s %s client=%d len=%d events=%d\\n"):format(scope.method, scope.path, scope.query_string,
    scope.client and scope.client[2] or 0, #body, events)
  send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
  send({ type = "http.response.body", body = info .. body })
end
return app
"""


class ServerTestCase(unittest.TestCase):
    app = "examples/hello.lua"
    args = ()

    def setUp(self):
        self.server = Luvicorn(self.app, *self.args).started()
        self.addCleanup(self.server.kill)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.server.port, path)

    def curl(self, *args, input=None):
        r = subprocess.run(["curl", "-sS", "--max-time", "10", *args], input=input, capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r


class HelloTest(ServerTestCase):
    def test_hello_with_curl(self):
        r = self.curl("-i", self.url())
        text = r.stdout.decode()
        self.assertTrue(text.startswith("HTTP/1.1 200 OK\r\n"), text)
        self.assertIn("content-length: 13\r\n", text)
        self.assertIn("server: luvicorn\r\n", text)
        self.assertRegex(text, r"date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n")
        self.assertTrue(text.endswith("\r\n\r\nHello, world!"))

    def test_head_with_curl(self):
        r = self.curl("-I", self.url())
        text = r.stdout.decode()
        self.assertIn("content-length: 13\r\n", text)
        self.assertTrue(text.endswith("\r\n\r\n"), text)

    def test_keep_alive_reuse_with_curl(self):
        r = self.curl("-v", self.url("/a"), self.url("/b"), self.url("/c"))
        self.assertEqual(r.stdout.decode(), "Hello, world!" * 3)
        err = r.stderr.decode()
        self.assertEqual(err.count("Re-using existing connection"), 2, err)
        self.assertEqual(err.count("Connected to"), 1, err)

    def test_access_log(self):
        self.curl(self.url("/logged?x=1"))
        self.server.wait_line(r'^INFO: +127\.0\.0\.1:\d+ - "GET /logged\?x=1 HTTP/1\.1" 200 OK \d+\.\d\dms$',
                              stream="out")

    def test_pipelining_through_a_raw_socket(self):
        rest = exchange(("127.0.0.1", self.server.port),
                        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"HEAD /3 HTTP/1.1\r\nHost: x\r\n\r\nGET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(rest.count(b"HTTP/1.1 200 OK"), 4)
        self.assertEqual(rest.count(b"Hello, world!"), 3)
        self.assertTrue(rest.endswith(b"Hello, world!"))

    def test_rejections(self):
        cases = [
            (b"GET/ HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: " + b"a" * 20000 + b"\r\n\r\n", 431),
        ]
        for raw, status in cases:
            with self.subTest(status=status, raw=raw[:40]):
                data = exchange(("127.0.0.1", self.server.port), raw)
                self.assertTrue(data.startswith(b"HTTP/1.1 %d " % status), data[:200])
                self.assertIn(b"connection: close\r\n", data)
        # still serving
        self.assertEqual(self.curl(self.url()).stdout, b"Hello, world!")


class EchoTest(ServerTestCase):
    def setUp(self):
        self.app = write_app(self, ECHO_APP)
        super().setUp()

    def test_chunked_upload_with_curl(self):
        data = b"x" * 200000 + b"end"
        r = self.curl("-T", "-", self.url("/up"), input=data)
        first, _, body = r.stdout.partition(b"\n")
        self.assertRegex(first.decode(), r"^PUT /up  client=\d+ len=200003 events=\d+$")
        self.assertEqual(body, data)

    def test_expect_100_continue_with_curl(self):
        data = b"y" * 5000
        r = self.curl("-v", "-H", "Expect: 100-continue", "--data-binary", "@-", self.url("/e"), input=data)
        self.assertIn("HTTP/1.1 100 Continue", r.stderr.decode())
        self.assertIn(b"len=5000", r.stdout)

    def test_keep_alive_reuse_with_http_client(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        ports = set()
        for i in range(5):
            conn.request("POST", "/p?i=%d" % i, body=b"abc")
            resp = conn.getresponse()
            body = resp.read().decode()
            self.assertEqual(resp.status, 200)
            self.assertIn("len=3", body)
            ports.add(re.search(r"client=(\d+)", body).group(1))
        conn.close()
        self.assertEqual(len(ports), 1)

    def test_pipelined_posts(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            reqs = b"".join(b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (i, i, b"z" * i)
                            for i in range(1, 20))
            s.sendall(reqs)
            responses = read_responses(s, 19)
        for i, (status, _, body) in enumerate(responses, start=1):
            self.assertEqual(status, 200)
            self.assertTrue(body.startswith(b"POST /%d  " % i), body)
            self.assertIn(b"len=%d " % i, body)


class LimitsTest(ServerTestCase):
    args = ("--max-body-size", "1000", "--timeout-request-head", "2")

    def setUp(self):
        self.app = write_app(self, ECHO_APP)
        super().setUp()

    def test_413_for_a_large_content_length(self):
        r = self.curl("-i", "--data-binary", "@-", self.url(), input=b"a" * 2000)
        self.assertTrue(r.stdout.startswith(b"HTTP/1.1 413 "), r.stdout[:100])

    def test_413_for_a_large_chunked_body(self):
        r = self.curl("-i", "-T", "-", self.url(), input=b"a" * 5000)
        out = r.stdout
        if out.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):  # curl asks for it on uploads
            out = out[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:100])

    def test_slowloris_is_closed_while_others_are_served(self):
        slow = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        self.addCleanup(slow.close)
        closed = threading.Event()
        received = []

        def trickle():
            slow.settimeout(0.05)
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    break
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:  # one byte a second, watching for the close meanwhile
                    try:
                        data = slow.recv(65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        closed.set()
                        return
                    received.append(data)
            closed.set()

        start = time.monotonic()
        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        served = 0
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        while not closed.is_set() and time.monotonic() - start < 8:
            conn.request("GET", "/fast")
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
            served += 1
            closed.wait(0.2)
        conn.close()
        elapsed = time.monotonic() - start
        self.assertTrue(closed.is_set(), "the slow client was not closed")
        self.assertGreater(elapsed, 1.5)
        self.assertLess(elapsed, 4.5)
        self.assertGreater(served, 5)
        self.assertTrue(b"".join(received).startswith(b"HTTP/1.1 408 "), received)


class AppErrorTest(ServerTestCase):
    def setUp(self):
        self.app = write_app(self, """
            return function(scope, receive, send)
              if scope.type ~= "http" then error("no lifespan") end
              if scope.path == "/boom" then error("boom from the app") end
              if scope.path == "/late" then
                send({ type = "http.response.start", status = 200 })
                send({ type = "http.response.body", body = "partial", more_body = true })
                error("late boom")
              end
              send({ type = "http.response.start", status = 200 })
              send({ type = "http.response.body", body = "fine" })
            end
        """)
        super().setUp()

    def test_error_before_start_is_500_and_the_server_goes_on(self):
        r = subprocess.run(["curl", "-sS", "-i", self.url("/boom")], capture_output=True, timeout=20)
        self.assertTrue(r.stdout.startswith(b"HTTP/1.1 500 "), r.stdout)
        self.server.wait_line(r"boom from the app")
        self.server.wait_line(r"stack traceback")
        self.assertEqual(self.curl(self.url("/ok")).stdout, b"fine")

    def test_error_after_start_closes_the_connection(self):
        r = subprocess.run(["curl", "-sS", self.url("/late")], capture_output=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.server.wait_line(r"late boom")
        self.assertEqual(self.curl(self.url("/ok")).stdout, b"fine")


class WebSocketUpgradeTest(ServerTestCase):
    """The HTTP protocol hands `Upgrade: websocket` requests to the WebSocket protocol."""

    def setUp(self):
        self.app = write_app(self, """
            return function(scope, receive, send)
              if scope.type == "http" then
                send({ type = "http.response.start", status = 200 })
                send({ type = "http.response.body", body = "plain http" })
                return
              end
              if scope.type ~= "websocket" then error("no lifespan") end
              assert(receive().type == "websocket.connect")
              send({ type = "websocket.accept" })
              local ev = receive()
              send({ type = "websocket.send", text = "echo: " .. ev.text })
              send({ type = "websocket.close", code = 1000 })
            end
        """)
        super().setUp()

    def test_upgrade_and_echo(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(4096)
            head, _, buf = buf.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
            self.assertIn(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
            payload = b"hi"
            mask = b"\x01\x02\x03\x04"
            s.sendall(b"\x81" + bytes([0x80 | len(payload)]) + mask +
                      bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            while len(buf) < 2 or len(buf) < 2 + buf[1]:
                buf += s.recv(4096)
            self.assertEqual(buf[0], 0x81)
            self.assertEqual(buf[2:2 + buf[1]], b"echo: hi")
        self.assertEqual(self.curl(self.url()).stdout, b"plain http")


class BackpressureTest(ServerTestCase):
    def setUp(self):
        self.app = write_app(self, """
            return function(scope, receive, send)
              if scope.type ~= "http" then error("no lifespan") end
              local chunk = ("x"):rep(65536)
              send({ type = "http.response.start", status = 200 })
              for i = 1, 3200 do -- 200 MiB
                if not send({ type = "http.response.body", body = chunk, more_body = true }) then return end
                if i % 50 == 0 then io.stderr:write("APP: sent ", i, "\\n") end
              end
              send({ type = "http.response.body", body = "" })
            end
        """)
        super().setUp()

    def sent(self):
        counts = [int(m) for m in re.findall(r"APP: sent (\d+)", self.server.log())]
        return max(counts) if counts else 0

    def test_send_waits_for_a_slow_reader(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.server.wait_line(r"APP: sent 50$")
            time.sleep(1.0)  # not reading: the app must stop producing (not a synchronisation wait)
            stalled = self.sent()
            self.assertLess(stalled, 1000, "the app produced %d chunks while nobody read" % stalled)
            total = 0
            s.settimeout(10)
            while True:
                data = s.recv(1 << 20)
                if not data:
                    break
                total += len(data)
                if total > 200 * 1024 * 1024 + 200:
                    break
                if total >= 200 * 1024 * 1024 and self.sent() == 3200:
                    break
        self.assertGreaterEqual(total, 200 * 1024 * 1024)
        self.server.wait_line(r"APP: sent 3200$")


class FullSocketBufferTest(ServerTestCase):
    """Responses written while the client reads nothing: the socket takes part of a response, then none,
    and the rest waits in the write queue. Every byte must still arrive, in order."""
    count = 2000  # 32 MB of responses: more than the socket buffers hold

    def setUp(self):
        self.app = write_app(self, """
            return function(scope, _, send)
              if scope.type ~= "http" then error("no lifespan") end
              local n = tonumber(scope.path:sub(2))
              send({ type = "http.response.start", status = 200, headers = { { "x-n", tostring(n) } } })
              send({ type = "http.response.body", body = string.rep(string.char(65 + n %% 26), 16000 + n %% 300) })
              if n == %d then io.stderr:write("APP: answered all\\n") end
            end
        """ % (self.count - 1))
        super().setUp()

    def test_pipelined_responses_fill_the_socket_and_arrive_whole(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.settimeout(10)
            s.connect(("127.0.0.1", self.server.port))
            s.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(self.count)))
            # the app has answered every request while nothing was read: most bytes wait in the queue
            self.server.wait_line(r"APP: answered all$")
            responses = read_responses(s, self.count)
        for i, (status, headers, body) in enumerate(responses):
            self.assertEqual((status, headers["x-n"]), (200, str(i)))
            self.assertEqual(body, bytes([65 + i % 26]) * (16000 + i % 300))


class ExtensionsTest(ServerTestCase):
    def setUp(self):
        fd, self.file = tempfile.mkstemp(prefix="luvicorn_pathsend_")
        self.content = os.urandom(3 * 1024 * 1024 + 17)
        with os.fdopen(fd, "wb") as f:
            f.write(self.content)
        self.addCleanup(os.remove, self.file)
        self.app = write_app(self, """
            local FILE = %r
            return function(scope, receive, send)
              if scope.type ~= "http" then error("no lifespan") end
              if scope.path == "/file" then
                assert(scope.extensions["http.response.pathsend"])
                send({ type = "http.response.start", status = 200,
                       headers = { { "content-type", "application/octet-stream" } } })
                send({ type = "http.response.pathsend", path = FILE })
                return
              end
              local trailers = scope.extensions["http.response.trailers"] ~= nil
              send({ type = "http.response.start", status = 200, trailers = trailers })
              send({ type = "http.response.body", body = "with trailers: " .. tostring(trailers) })
              if trailers then
                send({ type = "http.response.trailers", headers = { { "x-checksum", "abc" } } })
              end
            end
        """ % self.file)
        super().setUp()

    def test_pathsend(self):
        r = self.curl("-i", self.url("/file"))
        head, _, body = r.stdout.partition(b"\r\n\r\n")
        self.assertIn(b"content-length: %d\r\n" % len(self.content), head + b"\r\n")
        self.assertEqual(body, self.content)
        # and with HEAD: the length, no body
        r = self.curl("-I", self.url("/file"))
        self.assertIn(b"content-length: %d\r\n" % len(self.content), r.stdout)

    def test_trailers_only_with_te_trailers(self):
        data = exchange(("127.0.0.1", self.server.port),
                        b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
        self.assertIn(b"transfer-encoding: chunked\r\n", data)
        self.assertTrue(data.endswith(b"\r\n0\r\nx-checksum: abc\r\n\r\n"), data)
        self.assertEqual(self.curl(self.url()).stdout, b"with trailers: false")


class UnixSocketTests:
    """--uds and --fd, on each loop module."""

    loop = None

    def test_uds(self):
        path = os.path.join(tempfile.mkdtemp(), "luvicorn.sock")
        server = Luvicorn("examples/hello.lua", "--uds", path, loop=self.loop, port=False)
        self.addCleanup(server.kill)
        server.wait_line(r"Luvicorn running on unix socket " + re.escape(path))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o666)
        r = subprocess.run(["curl", "-sS", "--unix-socket", path, "http://x/"], capture_output=True, timeout=20)
        self.assertEqual(r.stdout, b"Hello, world!")
        self.assertEqual(server.stop(), 0)
        self.assertFalse(os.path.exists(path))

    def test_fd(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        server = Luvicorn("examples/hello.lua", "--fd", str(sock.fileno()), loop=self.loop, port=False,
                          pass_fds=(sock.fileno(),))
        self.addCleanup(server.kill)
        server.wait_line(r"Luvicorn running on socket fd %d" % sock.fileno())
        r = subprocess.run(["curl", "-sS", "http://127.0.0.1:%d/" % port], capture_output=True, timeout=20)
        self.assertEqual(r.stdout, b"Hello, world!")
        self.assertEqual(server.stop(), 0)


class UnixSocketOnLuv(UnixSocketTests, unittest.TestCase):
    loop = "luv"


@unittest.skipUnless(HAS_LUVRS, "build/luvrs.so not built")
class UnixSocketOnLuvrs(UnixSocketTests, unittest.TestCase):
    loop = "luvrs"


if __name__ == "__main__":
    unittest.main()
