"""End to end: a Luvicorn app whose handler calls a second local Luvicorn service with luvrs.co.http.

The backend answers /item/<i>?delay=<ms> after sleeping with co.sleep (luvrs.co inside a request
coroutine). The frontend answers /?n=<k> by calling the backend k times concurrently (co.spawn +
co.wait_all + luvrs.co.http) and joining the results. Runs on the real luv, and on luvrs when
build/luvrs.so exists.
"""

import os
import re
import shutil
import sys
import tempfile
import time
import unittest
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import HAS_LUVRS, Luvicorn  # noqa: E402

DELAY_MS = 200

BACKEND = r'''
local co = require "luvrs.co"
return function(scope, receive, send)
  if scope.type ~= "http" then error("unsupported scope type " .. scope.type) end
  local delay = tonumber(scope.query_string:match("delay=(%d+)") or "0")
  co.sleep(delay)
  local id = scope.path:match("^/item/(%d+)$")
  if not id then
    send({ type = "http.response.start", status = 404, headers = {} })
    send({ type = "http.response.body", body = "no such item" })
    return
  end
  send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
  send({ type = "http.response.body", body = "item" .. id })
end
'''

FRONTEND = r'''
local co = require "luvrs.co"
local http = require "luvrs.co.http"
local backend = assert(os.getenv("BACKEND_URL"), "BACKEND_URL is not set")
local delay = assert(os.getenv("BACKEND_DELAY"), "BACKEND_DELAY is not set")
return function(scope, receive, send)
  if scope.type ~= "http" then error("unsupported scope type " .. scope.type) end
  local n = tonumber(scope.query_string:match("n=(%d+)") or "3")
  local tag = scope.query_string:match("tag=(%w+)") or "none"
  local tasks = {}
  for i = 1, n do
    tasks[i] = co.spawn(function()
      local status, headers_or_err, body = http.request({
        url = backend .. "/item/" .. i .. "?delay=" .. delay .. "&tag=" .. tag, timeout = 5000 })
      if not status then error("backend: " .. tostring(headers_or_err), 0) end
      return status .. ":" .. body
    end)
  end
  local results = co.wait_all(tasks, 10000)
  local parts = {}
  for i, r in ipairs(results or {}) do
    parts[i] = r[1] and r[2] or ("error:" .. tostring(r[2]))
  end
  send({ type = "http.response.start", status = results and 200 or 504,
         headers = { { "content-type", "text/plain" } } })
  send({ type = "http.response.body", body = table.concat(parts, ",") })
end
'''

def Server(app_path, loop, extra_env=None):
    """A luvicorn process serving `app_path` on an ephemeral port."""
    env = ["%s=%s" % kv for kv in (extra_env or {}).items()]
    return Luvicorn(app_path, "--host", "127.0.0.1", loop=loop, extra_env=env).started()


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


class CoHttpEndToEnd:
    loop = None

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="luvrs-co-e2e-")
        backend_path = os.path.join(cls.dir, "backend.lua")
        frontend_path = os.path.join(cls.dir, "frontend.lua")
        with open(backend_path, "w") as f:
            f.write(BACKEND)
        with open(frontend_path, "w") as f:
            f.write(FRONTEND)
        cls.backend = Server(backend_path, cls.loop)
        try:
            cls.frontend = Server(frontend_path, cls.loop, {
                "BACKEND_URL": "http://127.0.0.1:%d" % cls.backend.port,
                "BACKEND_DELAY": str(DELAY_MS),
            })
        except Exception:
            cls.backend.stop()
            raise
        cls.url = "http://127.0.0.1:%d" % cls.frontend.port

    @classmethod
    def tearDownClass(cls):
        cls.frontend.stop()
        cls.backend.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_handler_calls_the_backend_concurrently(self):
        t0 = time.monotonic()
        status, body = get(self.url + "/?n=5")
        took = time.monotonic() - t0
        self.assertEqual(200, status)
        self.assertEqual("200:item1,200:item2,200:item3,200:item4,200:item5", body)
        # five backend calls of DELAY_MS each: one after the other would take 5 * DELAY_MS
        self.assertGreaterEqual(took, DELAY_MS / 1000 * 0.9)
        self.assertLess(took, DELAY_MS / 1000 * 4, "took %.3fs: the calls did not overlap" % took)

    def test_several_client_requests_at_once(self):
        expected = {n: ",".join("200:item%d" % i for i in range(1, n + 1)) for n in range(1, 9)}
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as ex:
            results = list(ex.map(lambda n: (n, get(self.url + "/?n=%d" % n)), range(1, 9)))
        took = time.monotonic() - t0
        for n, (status, body) in results:
            self.assertEqual(200, status)
            self.assertEqual(expected[n], body)
        # 36 backend calls of DELAY_MS: sequentially over 7 s; concurrently about DELAY_MS
        self.assertLess(took, DELAY_MS / 1000 * 8, "took %.3fs" % took)

    def test_sequential_requests_reuse_the_pooled_backend_connection(self):
        for _ in range(3):
            status, body = get(self.url + "/?n=1&tag=seq")
            self.assertEqual(200, status)
            self.assertEqual("200:item1", body)
        # the backend's access log names the client port: one pooled connection serves all three
        pattern = re.compile(r'127\.0\.0\.1:(\d+) - "GET /item/1\?delay=%d&tag=seq HTTP/1\.1" 200' % DELAY_MS)

        def ports(lines):
            return [m.group(1) for m in map(pattern.search, lines) if m]

        # the access log goes to stdout, as Uvicorn's does
        self.backend.wait_for(lambda lines: len(ports(lines)) >= 3, timeout=5, stream="out")
        seen = ports(self.backend.output().split("\n"))
        self.assertEqual(3, len(seen), self.backend.output())
        self.assertEqual(1, len(set(seen)), "backend connections: %r" % seen)


class TestCoHttpOnLuv(CoHttpEndToEnd, unittest.TestCase):
    loop = "luv"


@unittest.skipUnless(HAS_LUVRS, "build/luvrs.so not built")
class TestCoHttpOnLuvrs(CoHttpEndToEnd, unittest.TestCase):
    loop = "luvrs"


if __name__ == "__main__":
    unittest.main()
