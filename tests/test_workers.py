"""`luvicorn --workers N`: the supervisor and its worker processes, end to end. Every client loop is
bounded in count and time; every wait has a deadline."""

import http.client
import os
import signal
import tempfile
import time
import unittest

from luvicorn_proc import LOOP, Luvicorn, exchange, wait_until

APP = "tests/apps/workers_app.lua"


def get(port, path="/", timeout=5.0):
    """One request on a fresh connection (Connection: close); returns (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def children(pid):
    """The pids of the live (not zombie) child processes of `pid`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


class ClientLoop:
    """Sequential requests (a fresh connection each), until `stop()` or `limit` requests or `seconds`."""

    def __init__(self, port, limit=2000, seconds=20.0):
        self.port, self.limit, self.seconds = port, limit, seconds
        self.results = []  # (monotonic time, pid or None, error or None)

    def step(self):
        try:
            status, body = get(self.port)
            if status != 200:
                self.results.append((time.monotonic(), None, "status %d" % status))
            else:
                self.results.append((time.monotonic(), int(body), None))
        except (OSError, http.client.HTTPException) as e:
            self.results.append((time.monotonic(), None, repr(e)))

    def run_while(self, pred):
        """Makes requests while `pred()` holds (bounded); returns the results of this run."""
        start = len(self.results)
        deadline = time.monotonic() + self.seconds
        while pred() and len(self.results) < self.limit and time.monotonic() < deadline:
            self.step()
        return self.results[start:]

    def failures(self):
        return [r for r in self.results if r[2]]

    def pids(self, since=0.0):
        return {r[1] for r in self.results if r[1] and r[0] >= since}


class WorkersTest(unittest.TestCase):
    loop = LOOP

    def start(self, *args, workers=2, env=None):
        server = Luvicorn(APP, "--workers", str(workers), *args, loop=self.loop, extra_env=env).started()
        self.addCleanup(server.kill)
        self.addCleanup(self.kill_workers, server)
        wait_until(lambda: len(children(server.proc.pid)) == workers, 10, "%d workers" % workers)
        return server

    def kill_workers(self, server):
        # workers live in their own sessions: if a test failed before stopping the supervisor, they must
        # not outlive it
        for pid in children(server.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def test_two_workers_serve_with_distinct_pids(self):
        server = self.start()
        workers = children(server.proc.pid)
        client = ClientLoop(server.port, limit=400)
        client.run_while(lambda: client.pids() != workers)
        self.assertEqual(client.pids(), workers, server.log())
        self.assertEqual(client.failures(), [])
        self.assertEqual(server.stop(), 0, server.log())
        self.assertEqual(children(server.proc.pid), set())

    def test_killed_worker_is_replaced(self):
        server = self.start()
        before = children(server.proc.pid)
        victim = sorted(before)[0]
        client = ClientLoop(server.port)
        client.run_while(lambda: len(client.results) < 20)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        # the replacement must be up (a new child, two in all) within 2 s
        def two_with_a_new_one():
            now = children(server.proc.pid)
            return len(now) == 2 and now - before and (time.monotonic(), now - before)

        replaced, new = wait_until(two_with_a_new_one, 2.0, "a replacement worker")
        self.assertLess(replaced - killed_at, 2.0)
        new = new.pop()
        client.run_while(lambda: new not in client.pids(killed_at))
        self.assertIn(new, client.pids(killed_at), server.log())
        # one sequential client has at most one request in flight on the killed worker
        self.assertLessEqual(len(client.failures()), 1, client.failures())
        server.wait_line(r"Worker \[%d\] died \(signal 9\)" % victim)
        self.assertEqual(server.stop(), 0, server.log())

    def test_hung_worker_is_killed_by_the_health_check(self):
        server = self.start("--timeout-worker-healthcheck", "1")
        before = children(server.proc.pid)
        # the request that hangs its worker never gets an answer
        with self.assertRaises((OSError, http.client.HTTPException)):
            get(server.port, "/hang", timeout=3.0)
        m = server.wait_line(r"Worker \[(\d+)\] did not answer the health check for 1s: killing it", 5.0)
        hung = int(m.group(1))
        self.assertIn(hung, before)
        wait_until(lambda: hung not in children(server.proc.pid) and len(children(server.proc.pid)) == 2,
                   5.0, "the hung worker replaced")
        status, _ = get(server.port)
        self.assertEqual(status, 200)
        self.assertEqual(server.stop(), 0, server.log())

    def test_hup_replaces_every_worker_without_a_failed_request(self):
        server = self.start()
        old = children(server.proc.pid)
        client = ClientLoop(server.port, limit=3000, seconds=25.0)
        client.run_while(lambda: len(client.results) < 20)
        os.kill(server.proc.pid, signal.SIGHUP)
        hup_at = time.monotonic()

        def replaced():
            now = children(server.proc.pid)
            return len(now) == 2 and not (now & old)

        client.run_while(lambda: not replaced())
        self.assertTrue(replaced(), server.log())
        new = children(server.proc.pid)
        client.run_while(lambda: not new <= client.pids(hup_at))
        self.assertEqual(client.failures(), [], server.log())
        self.assertTrue(new <= client.pids(hup_at), (new, client.pids(hup_at)))
        self.assertEqual(server.stop(), 0, server.log())

    def test_ttin_and_ttou_change_the_number_of_workers(self):
        server = self.start()
        os.kill(server.proc.pid, signal.SIGTTIN)
        wait_until(lambda: len(children(server.proc.pid)) == 3, 10, "3 workers")
        server.wait_line(r"Received SIGTTIN: 3 workers")
        # one at a time: two pending signals of one kind are delivered as one
        os.kill(server.proc.pid, signal.SIGTTOU)
        wait_until(lambda: len(children(server.proc.pid)) == 2, 10, "2 workers")
        os.kill(server.proc.pid, signal.SIGTTOU)
        wait_until(lambda: len(children(server.proc.pid)) == 1, 10, "1 worker")
        # never below one
        os.kill(server.proc.pid, signal.SIGTTOU)
        server.wait_line(r"Received SIGTTOU: 1 workers")
        status, _ = get(server.port)
        self.assertEqual(status, 200)
        self.assertEqual(len(children(server.proc.pid)), 1)
        self.assertEqual(server.stop(), 0, server.log())

    def test_max_requests_retires_workers_without_a_failed_request(self):
        server = self.start("--limit-max-requests", "20", "--limit-max-requests-jitter", "5")
        first = children(server.proc.pid)
        client = ClientLoop(server.port, limit=150)
        client.run_while(lambda: True)
        self.assertEqual(len(client.results), 150)
        self.assertEqual(client.failures(), [], server.log())
        # 150 requests at most 25 per worker: at least 6 workers served, the first ones retired
        self.assertGreaterEqual(len(client.pids()), 6, server.log())
        self.assertFalse(first & children(server.proc.pid))
        server.wait_line(r"Maximum request limit of (2\d) reached\. Retiring\.")
        self.assertEqual(server.stop(), 0, server.log())

    def test_term_during_a_slow_request_lets_it_finish(self):
        server = self.start("--timeout-graceful-shutdown", "10")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        self.addCleanup(conn.close)
        conn.request("GET", "/slow")
        resp = conn.getresponse()
        first = resp.readline()  # the response has started
        self.assertTrue(first)
        server.proc.send_signal(signal.SIGTERM)
        rest = resp.read()
        self.assertTrue(rest.decode().endswith("done\n"), rest)
        self.assertEqual(server.proc.wait(10), 0, server.log())
        wait_until(lambda: not children(server.proc.pid), 5, "the workers gone")

    def test_workers_exit_when_the_supervisor_dies(self):
        server = self.start()
        workers = children(server.proc.pid)
        server.proc.kill()
        server.proc.wait(5)

        def all_gone():
            return not any(os.path.exists("/proc/%d" % p) and not _zombie(p) for p in workers)

        wait_until(all_gone, 10, "the orphaned workers to exit")

    def test_app_that_cannot_load_stops_the_server_with_exit_3(self):
        server = Luvicorn(APP, "--workers", "2", loop=self.loop, extra_env=["WORKERS_APP_FAIL=1"])
        self.addCleanup(server.kill)
        self.assertEqual(server.proc.wait(10), 3, server.log())
        self.assertIn("this app refuses to load", server.log())
        self.assertIn("The application cannot start", server.log())

    def test_a_configuration_error_is_reported_once_before_any_worker_starts(self):
        server = Luvicorn(APP, "--workers", "2", "--forwarded-allow-ips", "nope", loop=self.loop)
        self.addCleanup(server.kill)
        self.assertEqual(server.proc.wait(10), 3, server.log())
        self.assertEqual(server.log().count("--forwarded-allow-ips: invalid entry 'nope'"), 1, server.log())
        self.assertNotIn("Started server process", server.log())

    def test_several_addresses_at_once(self):
        path = os.path.join(tempfile.mkdtemp(prefix="luvicorn_binds_"), "app.sock")
        self.addCleanup(os.rmdir, os.path.dirname(path))
        server = self.start("--bind", "unix:" + path, "--host", "127.0.0.1")
        status, _ = get(server.port)
        self.assertEqual(status, 200)
        data = exchange(path, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertEqual(server.stop(), 0, server.log())
        self.assertFalse(os.path.exists(path), "the supervisor removes the socket file it bound")


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2] == "Z"
    except OSError:
        return True


class WorkersLuvTest(unittest.TestCase):
    """The supervisor on Debian's luv."""
    loop = "luv"
    start = WorkersTest.start
    kill_workers = WorkersTest.kill_workers
    test_two_workers_serve_with_distinct_pids = WorkersTest.test_two_workers_serve_with_distinct_pids
    test_killed_worker_is_replaced = WorkersTest.test_killed_worker_is_replaced
    test_hup_replaces_every_worker_without_a_failed_request = \
        WorkersTest.test_hup_replaces_every_worker_without_a_failed_request


class ReusePortTest(unittest.TestCase):
    """--reuse-port: one listening socket per worker; the kernel spreads new connections over them by a
    hash of the client's address and port. (Retiring a worker closes its socket, and connections queued
    on it at that instant are reset: the retirement tests run on a shared socket only.) luvrs only."""
    loop = "luvrs"
    kill_workers = WorkersTest.kill_workers
    test_two_workers_serve_with_distinct_pids = WorkersTest.test_two_workers_serve_with_distinct_pids
    test_killed_worker_is_replaced = WorkersTest.test_killed_worker_is_replaced

    def start(self, *args, workers=2, env=None):
        return WorkersTest.start(self, "--reuse-port", *args, workers=workers, env=env)

    def test_reuse_port_is_refused_on_luv(self):
        server = Luvicorn(APP, "--workers", "2", "--reuse-port", loop="luv")
        self.addCleanup(server.kill)
        self.assertEqual(server.proc.wait(10), 3, server.log())
        self.assertIn("--reuse-port needs the luvrs loop", server.log())


if __name__ == "__main__":
    unittest.main()
