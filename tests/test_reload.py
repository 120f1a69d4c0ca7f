"""`luvicorn --reload`: a change to a watched file restarts the worker; a broken change keeps the previous
code serving until the next change. Bounded waits only."""

import http.client
import os
import shutil
import tempfile
import time
import unittest

from luvicorn_proc import Luvicorn

APP = """
return function(scope, _, send)
  if scope.type ~= "http" then return end
  send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
  send({ type = "http.response.body", body = %r })
end
"""


def get(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="luvicorn_reload_")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.app = os.path.join(self.dir, "app.lua")
        self.write(APP % "version 1")

    def write(self, text):
        # write then rename: the watcher never sees half a file
        tmp = self.app + ".tmp~"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.app)

    def serve_until(self, port, body, timeout=10.0):
        """Requests until the answer is `body`; every answer on the way must be a 200."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            status, text = get(port)
            self.assertEqual(status, 200, text)
            seen.append(text)
            if text == body:
                return seen
            time.sleep(0.02)
        raise AssertionError("no %r within %ss; saw %r" % (body, timeout, seen[-3:]))

    def test_a_change_reloads_and_a_broken_change_keeps_the_old_code(self):
        server = Luvicorn(self.app, "--reload", "--reload-dir", self.dir, "--reload-delay", "0.05").started()
        self.addCleanup(server.kill)
        server.wait_line(r"Will watch for changes in " + self.dir)
        self.assertEqual(get(server.port), (200, "version 1"))

        self.write(APP % "version 2")
        server.wait_line(r"Changes detected in .*app\.lua\. Reloading")
        self.serve_until(server.port, "version 2")

        self.write("return function( -- a syntax error")
        server.wait_line(r"exited before serving \(exit code 3\)")
        self.assertEqual(get(server.port), (200, "version 2"))

        # files the watcher ignores change nothing
        with open(os.path.join(self.dir, "notes.txt"), "w") as f:
            f.write("x")
        self.write(APP % "version 3")
        self.serve_until(server.port, "version 3")
        self.assertEqual(server.stop(), 0, server.log())
        self.assertNotIn("notes.txt", server.log())


if __name__ == "__main__":
    unittest.main()
