"""End-to-end tests of Luvicorn's process life: signals and graceful shutdown, lifespan, startup
failures, --limit-max-requests, the command line. The loop module comes from LUVICORN_LOOP."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import ENV, LOOP, ROOT, Luvicorn, write_app  # noqa: E402

LIFESPAN_APP = """
local function app(scope, receive, send)
  if scope.type == "lifespan" then
    local ev = receive()
    assert(ev.type == "lifespan.startup")
    scope.state.greeting = "hello from startup"
    send({ type = "lifespan.startup.complete" })
    ev = receive()
    assert(ev.type == "lifespan.shutdown")
    io.stderr:write("APP: shutdown ran\\n")
    send({ type = "lifespan.shutdown.complete" })
    return
  end
  send({ type = "http.response.start", status = 200 })
  send({ type = "http.response.body", body = scope.state.greeting })
end
return app
"""

FAILING_STARTUP = """
return function(scope, receive, send)
  if scope.type == "lifespan" then
    receive()
    send({ type = "lifespan.startup.failed", message = "no database" })
    return
  end
end
"""


def run_cli(*args, timeout=20):
    return subprocess.run(ENV + ["lua5.4", "bin/luvicorn", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def streaming(testcase, *args, n, ms):
    """Starts examples/stream.lua with `args` and a request for `n` lines `ms` apart; returns the server,
    the connection and the response once its first line has arrived."""
    server = Luvicorn("examples/stream.lua", *args).started()
    testcase.addCleanup(server.kill)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/?n=%d&ms=%d" % (n, ms))
    resp = conn.getresponse()
    testcase.assertEqual(resp.readline(), b"line 1 of %d\n" % n)
    return server, conn, resp


class ShutdownTest(unittest.TestCase):
    def test_sigterm_lets_a_slow_streaming_response_finish_then_exits_0(self):
        server, conn, resp = streaming(self, n=6, ms=250)
        server.proc.send_signal(signal.SIGTERM)
        server.wait_line(r"Shutting down")
        rest = resp.read()
        self.assertEqual(rest.count(b"\n"), 5)
        self.assertTrue(rest.endswith(b"line 6 of 6\n"))
        self.assertEqual(server.proc.wait(10), 0)
        conn.close()
        server.wait_line(r"Finished server process")

    def test_idle_keep_alive_connections_are_closed_on_shutdown(self):
        server = Luvicorn("examples/hello.lua").started()
        self.addCleanup(server.kill)
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"Hello, world!"):
            chunk = s.recv(4096)
            self.assertTrue(chunk, "the server closed before the response ended: %r" % data)
            data += chunk
        start = time.monotonic()
        self.assertEqual(server.stop(signal.SIGINT), 0)
        self.assertLess(time.monotonic() - start, 3)
        self.assertEqual(s.recv(4096), b"")

    def test_graceful_timeout_cuts_endless_responses(self):
        server, conn, _ = streaming(self, "--timeout-graceful-shutdown", "1", n=1000, ms=100)
        start = time.monotonic()
        self.assertEqual(server.stop(), 0)
        elapsed = time.monotonic() - start
        self.assertGreater(elapsed, 0.8)
        self.assertLess(elapsed, 4)
        conn.close()

    def test_second_signal_exits_at_once(self):
        server, conn, _ = streaming(self, n=1000, ms=100)
        server.proc.send_signal(signal.SIGINT)
        server.wait_line(r"Shutting down")
        start = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        self.assertEqual(server.proc.wait(5), 1)
        self.assertLess(time.monotonic() - start, 2)
        conn.close()

    def test_limit_max_requests(self):
        server = Luvicorn("examples/hello.lua", "--limit-max-requests", "3").started()
        self.addCleanup(server.kill)
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/")
            self.assertEqual(conn.getresponse().read(), b"Hello, world!")
            conn.close()
        self.assertEqual(server.proc.wait(10), 0)
        server.wait_line(r"Maximum request limit of 3 exceeded")


class LifespanTest(unittest.TestCase):
    def test_state_reaches_requests_and_shutdown_runs(self):
        app = write_app(self, LIFESPAN_APP)
        server = Luvicorn(app, "--lifespan", "on").started()
        self.addCleanup(server.kill)
        server.wait_line(r"Application startup complete\.")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        self.assertEqual(conn.getresponse().read(), b"hello from startup")
        conn.close()
        self.assertEqual(server.stop(), 0)
        server.wait_line(r"APP: shutdown ran")
        server.wait_line(r"Application shutdown complete\.")

    def test_startup_failure_exits_3(self):
        app = write_app(self, FAILING_STARTUP)
        r = run_cli(app, "--loop", LOOP, "--port", "0")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("no database", r.stderr)
        self.assertNotIn("Luvicorn running on", r.stderr)

    def test_lifespan_auto_carries_on_when_unsupported(self):
        server = Luvicorn("examples/hello.lua", "--lifespan", "auto").started()
        self.addCleanup(server.kill)
        server.wait_line(r"'lifespan' protocol appears unsupported")
        self.assertEqual(server.stop(), 0)

    def test_lifespan_on_fails_when_unsupported(self):
        r = run_cli("examples/hello.lua", "--loop", LOOP, "--port", "0", "--lifespan", "on")
        self.assertEqual(r.returncode, 3, r.stderr)


class CommandLineTest(unittest.TestCase):
    def test_import_error_exits_3(self):
        r = run_cli("no.such.module:app", "--loop", LOOP)
        self.assertEqual(r.returncode, 3)
        self.assertIn("Could not import module", r.stderr)
        app = write_app(self, "return 1 +")
        r = run_cli(app, "--loop", LOOP)
        self.assertEqual(r.returncode, 3)
        self.assertIn("Error loading LASGI app", r.stderr)

    def test_missing_attribute_exits_3(self):
        r = run_cli("examples/hello.lua:nope", "--loop", LOOP)
        self.assertEqual(r.returncode, 3)
        self.assertIn("not found", r.stderr)

    def test_usage_errors_exit_2(self):
        self.assertEqual(run_cli("examples/hello.lua", "--port", "abc").returncode, 2)
        self.assertEqual(run_cli("examples/hello.lua", "--no-such-option").returncode, 2)
        self.assertEqual(run_cli().returncode, 2)

    def test_help_and_version(self):
        r = run_cli("--help")
        self.assertEqual(r.returncode, 0)
        for opt in ("--host", "--port", "--uds", "--fd", "--timeout-request-head", "--max-body-size", "--no-access-log"):
            self.assertIn(opt, r.stdout)
        r = run_cli("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^Running luvicorn \d+\.\d+\.\d+ with Lua 5\.4")

    def test_port_in_use_exits_3(self):
        s = socket.socket()
        self.addCleanup(s.close)
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = run_cli("examples/hello.lua", "--loop", LOOP, "--port", str(s.getsockname()[1]))
        self.assertEqual(r.returncode, 3)
        self.assertIn("EADDRINUSE", r.stderr)

    def test_environment_and_env_file(self):
        env_file = write_app(self, "LUVICORN_SERVER_HEADER=false\nGREETING='from the env file'\n")
        app = write_app(self, """
            return function(scope, receive, send)
              if scope.type ~= "http" then error("no lifespan") end
              send({ type = "http.response.start", status = 200 })
              send({ type = "http.response.body", body = os.getenv("GREETING") or "none" })
            end
        """)
        server = Luvicorn(app, "--env-file", env_file, extra_env=["LUVICORN_HEADER=x-from-env: 1"]).started()
        self.addCleanup(server.kill)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        self.assertEqual(resp.read(), b"from the env file")
        self.assertIsNone(resp.getheader("server"))
        self.assertEqual(resp.getheader("x-from-env"), "1")
        conn.close()

    def test_module_path_and_factory(self):
        app_dir = os.path.dirname(write_app(self, ""))
        name = "luvicorn_factory_%d" % os.getpid()
        path = os.path.join(app_dir, name + ".lua")
        with open(path, "w") as f:
            f.write("""
                local M = {}
                function M.create()
                  return function(scope, receive, send)
                    if scope.type ~= "http" then error("no lifespan") end
                    send({ type = "http.response.start", status = 201 })
                    send({ type = "http.response.body", body = "made by the factory" })
                  end
                end
                return M
            """)
        self.addCleanup(os.remove, path)
        server = Luvicorn(name + ":create", "--factory", "--app-dir", app_dir).started()
        self.addCleanup(server.kill)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (201, b"made by the factory"))
        conn.close()


class ConcurrencyTest(unittest.TestCase):
    def test_503_over_limit_concurrency(self):
        server, slow, _ = streaming(self, "--limit-concurrency", "1", n=20, ms=100)
        results = []

        def other():
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            c.request("GET", "/?n=1")
            results.append(c.getresponse().status)
            c.close()

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        self.assertEqual(results, [503])
        slow.close()


if __name__ == "__main__":
    unittest.main()
