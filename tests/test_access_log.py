"""End-to-end tests of Luvicorn's logging: --access-log-format with real clients, --log-config files,
SIGUSR1 reopening the files after logrotate moved them, and whole lines when several processes write
the same file or pipe. The loop module comes from LUVICORN_LOOP (default luvrs)."""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import DEADLINE, ENV, HAS_LUVRS, LOOP, ROOT, Luvicorn, wait_until, write_app  # noqa: E402

APP = """
return function(scope, receive, send)
  if scope.path == "/stream" then
    send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
    for i = 1, 3 do send({ type = "http.response.body", body = ("part %d|"):format(i), more_body = true }) end
    send({ type = "http.response.body", body = "" })
  elseif scope.path == "/fixed" then
    send({ type = "http.response.start", status = 201, headers = { { "content-type", "text/plain" } } })
    send({ type = "http.response.body", body = "created it" })
  else
    send({ type = "http.response.start", status = 404 })
    send({ type = "http.response.body", body = "no such page" })
  end
end
"""

FORMAT = ('$client_addr|$request_line|$status|$reason|$bytes|$referer|$user_agent|${http_x_request_id}|'
          '$query|$duration_ms')


def wait_file(testcase, path, pattern, proc=None, timeout=DEADLINE):
    """Polls `path` until its text matches `pattern` (or the deadline, or the process exited)."""
    rx = re.compile(pattern, re.M)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = None
        m = text is not None and rx.search(text)
        if m:
            return m
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.02)
    testcase.fail("%s: no line matching %r within %ss; it holds:\n%s" % (path, pattern, timeout, text))


@unittest.skipUnless(HAS_LUVRS or LOOP == "luv", "build luvrs first (make build)")
class AccessLogFormatTest(unittest.TestCase):
    def setUp(self):
        self.app = write_app(self, APP)
        self.server = Luvicorn(self.app, "--lifespan", "off", "--access-log-format", FORMAT).started()
        self.addCleanup(self.server.kill)

    def line_for(self, request_id):
        m = self.server.wait_line(r"^(.*)\|%s\|(.*)\|(\d+\.\d\d)$" % re.escape(request_id), stream="out")
        return m.group(0).split("|")

    def test_curl_request_with_referer_user_agent_and_request_id(self):
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "-e", "http://example.org/from",
                            "-A", "test-agent/1.0", "-H", "X-Request-Id: req-42", self.server.url("/stream?a=1")],
                           capture_output=True, check=True)
        self.assertEqual(r.stdout, b"part 1|part 2|part 3|")
        f = self.line_for("req-42")
        self.assertEqual(f[:9], ["127.0.0.1", "GET /stream?a=1 HTTP/1.1", "200", "OK", str(len(r.stdout)),
                                 "http://example.org/from", "test-agent/1.0", "req-42", "a=1"])
        self.assertGreaterEqual(float(f[9]), 0)

    def test_http_client_fixed_body_head_and_missing_values(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        self.addCleanup(conn.close)
        conn.request("POST", "/fixed", body=b"x", headers={"X-Request-Id": "req-fixed"})
        resp = conn.getresponse()
        body = resp.read()
        self.assertEqual(resp.status, 201)
        f = self.line_for("req-fixed")
        # http.client sends neither Referer nor User-Agent
        self.assertEqual(f[1:7], ["POST /fixed HTTP/1.1", "201", "Created", str(len(body)), "-", "-"])
        self.assertEqual(f[8], "-")  # no query
        conn.request("HEAD", "/missing", headers={"X-Request-Id": "req-head", "User-Agent": 'say "hi"'})
        resp = conn.getresponse()
        self.assertEqual(resp.read(), b"")
        f = self.line_for("req-head")
        self.assertEqual(f[1:7], ["HEAD /missing HTTP/1.1", "404", "Not Found", "0", "-", r"say \x22hi\x22"])


@unittest.skipUnless(HAS_LUVRS or LOOP == "luv", "build luvrs first (make build)")
class LogConfigTest(unittest.TestCase):
    def setUp(self):
        self.app = write_app(self, APP)
        self.dir = tempfile.mkdtemp(prefix="luvicorn_logs_")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.error_log = os.path.join(self.dir, "error.log")
        self.access_log = os.path.join(self.dir, "access.log")

    def start(self, config_name, config_text, *args):
        path = os.path.join(self.dir, config_name)
        with open(path, "w") as f:
            f.write(config_text)
        server = Luvicorn(self.app, "--lifespan", "off", "--log-config", path, *args)
        self.addCleanup(server.kill)
        m = wait_file(self, self.error_log, r"Luvicorn running on http://127\.0\.0\.1:(\d+)", server.proc)
        server.port = int(m.group(1))
        return server

    def get(self, server, path, request_id):
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "-H", "X-Request-Id: " + request_id,
                            server.url(path)], capture_output=True, check=True)
        return r.stdout

    def test_lua_config_writes_both_logs_to_files(self):
        server = self.start("log.lua", 'return { level = "info", error_log = %s, access_log = %s, '
                            'access_log_format = "$request_line $status $bytes $http_x_request_id" }'
                            % (json.dumps(self.error_log), json.dumps(self.access_log)))
        body = self.get(server, "/fixed", "lua-1")
        wait_file(self, self.access_log, r"^GET /fixed HTTP/1\.1 201 %d lua-1$" % len(body), server.proc)
        self.assertEqual(server.stop(), 0)
        with open(self.error_log) as f:
            errors = f.read()
        self.assertIn("INFO:     Shutting down", errors)
        self.assertEqual(server.log(), "")  # nothing on stderr: it all went to the file
        self.assertEqual(server.output(), "")

    def test_json_config_and_command_line_precedence(self):
        # the file asks for warning (which would silence the access log); --log-level debug wins
        server = self.start("log.json", json.dumps({
            "level": "warning", "error_log": self.error_log, "access_log": self.access_log,
            "access_log_format": "file $status"}),
            "--log-level", "debug", "--access-log-format", "cli $status $http_x_request_id")
        self.get(server, "/nowhere", "json-1")
        wait_file(self, self.access_log, r"^cli 404 json-1$", server.proc)
        with open(self.error_log) as f:
            self.assertIn("INFO:     Started server process", f.read())
        self.assertEqual(server.stop(), 0)

    def test_sigusr1_reopens_the_files_after_a_rename(self):
        server = self.start("log.lua", "return { error_log = %s, access_log = %s }"
                            % (json.dumps(self.error_log), json.dumps(self.access_log)))
        self.get(server, "/before", "x")
        wait_file(self, self.access_log, r'"GET /before HTTP/1\.1" 404', server.proc)
        os.rename(self.access_log, self.access_log + ".1")
        os.rename(self.error_log, self.error_log + ".1")
        server.proc.send_signal(signal.SIGUSR1)
        # the reopen creates the files again: only then is the next line sure to go to the new one
        wait_file(self, self.access_log, r"^$", server.proc)
        self.get(server, "/after", "y")
        wait_file(self, self.access_log, r'^INFO: +127\.0\.0\.1:\d+ - "GET /after HTTP/1\.1" 404 Not Found '
                  r'\d+\.\d\dms$', server.proc)
        self.assertEqual(server.stop(), 0)
        with open(self.access_log + ".1") as f:
            old = f.read()
        with open(self.access_log) as f:
            new = f.read()
        self.assertIn("/before", old)
        self.assertNotIn("/after", old)
        self.assertNotIn("/before", new)
        with open(self.error_log) as f:
            self.assertIn("Shutting down", f.read())
        with open(self.error_log + ".1") as f:
            self.assertNotIn("Shutting down", f.read())

    def test_bad_config_exits_3_naming_the_file_and_key(self):
        path = os.path.join(self.dir, "bad.lua")
        with open(path, "w") as f:
            f.write('return { level = "info", colour = "blue" }')
        server = Luvicorn(self.app, "--log-config", path)
        self.addCleanup(server.kill)
        self.assertEqual(server.proc.wait(DEADLINE), 3)
        server.wait_for(lambda lines: any("colour" in line for line in lines))
        self.assertIn("--log-config %s: unknown key \"colour\"" % path, server.log())


@unittest.skipUnless(HAS_LUVRS or LOOP == "luv", "build luvrs first (make build)")
class BadFormatTest(unittest.TestCase):
    def test_unknown_field_exits_3_naming_the_option_and_field(self):
        app = write_app(self, APP)
        server = Luvicorn(app, "--access-log-format", "$status $bogus_field")
        self.addCleanup(server.kill)
        self.assertEqual(server.proc.wait(DEADLINE), 3)
        server.wait_for(lambda lines: any("bogus_field" in line for line in lines))
        self.assertRegex(server.log(), r"ERROR: +--access-log-format: unknown field \$bogus_field")
        self.assertNotIn("Luvicorn running on", server.log())


WRITER = """
local logging = require("luvicorn.logging")
local id, count, longest = arg[1], tonumber(arg[2]), tonumber(arg[3])
local log = assert(logging.from_config({ log_config = arg[4] }))
local seed = tonumber(id) * 7919
for i = 1, count do
  -- lengths from a few bytes to `longest`, so that lines straddle any 4 KiB boundary
  seed = (seed * 1103515245 + 12345) % 2147483648
  local n = seed % longest
  local pad = string.rep(string.char(96 + tonumber(id)), n)
  log:access("10.0.0." .. id .. ":1", "GET", "/" .. id .. "/" .. i .. "/" .. n .. "/" .. pad, "1.1", 200, "OK", 0)
  if i % 50 == 0 then log:flush() end
end
log:flush()
"""


@unittest.skipUnless(HAS_LUVRS or LOOP == "luv", "build luvrs first (make build)")
class WholeLinesTest(unittest.TestCase):
    """Several processes write access lines of many lengths to one file and to one pipe at once;
    every line must arrive whole."""

    PROCS = 4
    LINES = 1500

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="luvicorn_lines_")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.writer = write_app(self, WRITER)

    def run_writers(self, access_log, longest, stdout=None):
        config = os.path.join(self.dir, "log.lua")
        with open(config, "w") as f:
            f.write("return { access_log = %s }" % json.dumps(access_log))
        procs = [subprocess.Popen(ENV + ["lua5.4", self.writer, str(i), str(self.LINES), str(longest), config],
                                  cwd=ROOT, stdout=stdout) for i in range(1, self.PROCS + 1)]
        return procs

    def check(self, text):
        lines = text.split("\n")
        self.assertEqual(lines.pop(), "")
        self.assertEqual(len(lines), self.PROCS * self.LINES)
        seen = set()
        rx = re.compile(r'^INFO:     10\.0\.0\.(\d):1 - "GET /(\d)/(\d+)/(\d+)/([a-z]*) HTTP/1\.1" 200 OK 0\.00ms$')
        for line in lines:
            m = rx.match(line)
            self.assertIsNotNone(m, "a broken line: %r" % line[:200])
            self.assertEqual(m.group(1), m.group(2))
            self.assertEqual(m.group(5), chr(96 + int(m.group(1))) * int(m.group(4)), line[:200])
            seen.add((m.group(1), m.group(3)))
        self.assertEqual(len(seen), self.PROCS * self.LINES)

    def test_one_file(self):
        # a file opened for appending gets each write(2) whole, however long: lines past PIPE_BUF too
        path = os.path.join(self.dir, "access.log")
        for p in self.run_writers(path, 6000):
            self.assertEqual(p.wait(60), 0)
        with open(path) as f:
            self.check(f.read())

    def test_one_pipe(self):
        # a pipe keeps writes of up to PIPE_BUF (4096 bytes) whole: lines up to that length
        r, w = os.pipe()
        procs = self.run_writers("stdout", 4000, stdout=w)
        os.close(w)
        with os.fdopen(r) as f:
            text = f.read()
        for p in procs:
            self.assertEqual(p.wait(60), 0)
        self.check(text)


@unittest.skipUnless(HAS_LUVRS or LOOP == "luv", "build luvrs first (make build)")
class WorkersLogTest(unittest.TestCase):
    """`--workers 2` and one access-log file: each worker opens it for appending; concurrent requests
    of many sizes leave whole lines; SIGUSR1 to the supervisor makes every worker reopen it."""

    def setUp(self):
        self.app = write_app(self, APP)
        self.dir = tempfile.mkdtemp(prefix="luvicorn_wlogs_")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.access_log = os.path.join(self.dir, "access.log")
        config = os.path.join(self.dir, "log.lua")
        with open(config, "w") as f:
            f.write('return { access_log = %s, access_log_format = "$pid $http_x_n $http_x_pad" }'
                    % json.dumps(self.access_log))
        self.server = Luvicorn(self.app, "--lifespan", "off", "--workers", "2", "--log-config", config).started()
        self.addCleanup(self.server.kill)
        self.sent = 0

    def requests(self, count, threads=4):
        """`count` requests on fresh connections from `threads` threads; returns their numbers."""
        first = self.sent
        self.sent += count

        def client(numbers):
            for n in numbers:
                conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
                try:
                    conn.request("GET", "/", headers={"Connection": "close", "X-N": str(n),
                                                      "X-Pad": "p" * (n * 7919 % 3000)})
                    conn.getresponse().read()
                finally:
                    conn.close()

        numbers = list(range(first, first + count))
        workers = [threading.Thread(target=client, args=(numbers[i::threads],)) for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
        return numbers

    def parse(self, path, expect):
        """Waits until `path` holds `expect` lines; checks every one; returns {number: pid}."""
        def lines():
            try:
                with open(path) as f:
                    text = f.read()
            except FileNotFoundError:
                return None
            return text if text.count("\n") >= expect else None
        text = wait_until(lines, DEADLINE, "%d lines in %s" % (expect, path))
        found = {}
        for line in text.split("\n")[:-1]:
            m = re.match(r"^(\d+) (\d+) (p*|-)$", line)
            self.assertIsNotNone(m, "a broken line: %r" % line[:200])
            n = int(m.group(2))
            self.assertEqual(len(m.group(3).replace("-", "")), n * 7919 % 3000, line[:200])
            found[n] = int(m.group(1))
        return found

    def test_whole_lines_and_sigusr1(self):
        numbers = self.requests(300)
        found = self.parse(self.access_log, len(numbers))
        self.assertEqual(sorted(found), numbers)
        pids = set(found.values())
        # the kernel spreads 300 fresh connections over both workers
        self.assertEqual(len(pids), 2, pids)
        os.rename(self.access_log, self.access_log + ".1")
        self.server.proc.send_signal(signal.SIGUSR1)
        # each worker reopens when its loop sees the signal: requests until both wrote to the new file
        seen = {}
        deadline = time.monotonic() + DEADLINE
        while set(seen.values()) != pids and time.monotonic() < deadline:
            self.requests(20)
            if os.path.exists(self.access_log):
                with open(self.access_log) as f:
                    for line in f.read().split("\n")[:-1]:
                        pid, n = line.split(" ")[:2]
                        seen[int(n)] = int(pid)
        self.assertEqual(set(seen.values()), pids, "not every worker reopened the access log")
        self.assertEqual(self.server.stop(), 0, self.server.log())
        old = self.parse(self.access_log + ".1", len(numbers))
        new = self.parse(self.access_log, 1)
        # every request is in exactly one of the two files
        self.assertEqual(set(old) & set(new), set())
        self.assertEqual(sorted(set(old) | set(new)), list(range(self.sent)))


if __name__ == "__main__":
    unittest.main()
