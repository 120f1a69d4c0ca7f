"""Luvicorn behind a real nginx: two instances of tests/apps/nginx_app.lua (one on TCP, one on a Unix
socket) in one nginx upstream with keep-alive, proxy headers and WebSocket upgrades. It checks load
balancing, the client address through X-Forwarded-For (the client connects from 127.0.0.2, nginx
reaches the instances from 127.0.0.1 and over the socket), a WebSocket through nginx, and failover when
one instance is stopped with SIGTERM while requests flow.

nginx runs as this user in a temporary prefix (pid file, logs and temp paths inside it), in the
foreground as a single process. scripts/deps.sh installs it (Debian's nginx-light), so a missing nginx
is a failure, not a skip. The loop module comes from LUVICORN_LOOP (default luvrs)."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from websockets.sync.client import connect

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import DEADLINE, HAS_LUVRS, LOOP, Luvicorn  # noqa: E402

APP = "tests/apps/nginx_app.lua"
CLIENT_ADDR = "127.0.0.2"  # all of 127/8 is on lo: nginx sees this as $remote_addr
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                       if os.access(p, os.X_OK)), None)

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
lock_file {dir}/nginx.lock;
error_log {dir}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    log_format upstreams '$remote_addr "$request" $status upstream=$upstream_addr '
                         'upstream_status=$upstream_status';
    access_log {dir}/access.log upstreams;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    # "Connection: upgrade" only for WebSocket handshakes; otherwise no Connection header at all, so
    # that the upstream keep-alive below is used ("close" here would disable it).
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    # Forwarded (RFC 7239) names the client nginx saw, IPv6 in quotes and brackets. It replaces any
    # Forwarded header from the client: Luvicorn prefers Forwarded over X-Forwarded-For, so a client's
    # own header passed on unchanged would let it choose its address.
    map $remote_addr $forwarded_for {{
        ~:      '"[$remote_addr]"';
        default $remote_addr;
    }}

    upstream luvicorn {{
        server 127.0.0.1:{tcp_port};
        server unix:{dir}/app.sock;
        keepalive 8;
        # below Luvicorn's --timeout-keep-alive (5 s): nginx drops an idle connection before Luvicorn does
        keepalive_timeout 4s;
    }}

    server {{
        listen 127.0.0.1:{port};
        listen [::1]:{port};

        location / {{
            proxy_pass http://luvicorn;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Forwarded "for=$forwarded_for;proto=$scheme";
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx in the foreground, in `directory` (its prefix), listening on 127.0.0.1:`port` and [::1]:`port`."""

    def __init__(self, directory, tcp_port):
        self.dir = directory
        last_error = ""
        for _ in range(5):  # the free port may be taken between the probe and nginx's bind: try another
            self.port = free_port()
            with open(os.path.join(directory, "nginx.conf"), "w") as f:
                f.write(NGINX_CONF.format(dir=directory, tcp_port=tcp_port, port=self.port))
            self.stderr = open(os.path.join(directory, "stderr.log"), "w+")
            self.proc = subprocess.Popen([NGINX, "-p", directory, "-c", os.path.join(directory, "nginx.conf"),
                                          "-e", "stderr"],
                                         stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)
            if self._ready():
                return
            self.stop()
            last_error = self.log()
            if "Address already in use" not in last_error:
                break
        raise AssertionError("nginx exited or did not listen within %ss:\n%s" % (DEADLINE, last_error))

    def _ready(self):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)  # polling interval of a connect loop, not a synchronisation sleep
        return False

    def log(self):
        """nginx's stderr and error log."""
        parts = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    parts.append(f.read())
            except OSError:
                pass
        return "\n".join(parts)

    def access_log(self):
        try:
            with open(os.path.join(self.dir, "access.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()


@unittest.skipIf(LOOP == "luvrs" and not HAS_LUVRS, "build/luvrs.so not built")
class NginxTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if NGINX is None:
            raise AssertionError("nginx not found (PATH, /usr/sbin/nginx): install Debian's nginx-light "
                                 "(scripts/deps.sh does, as root)")

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="luvicorn_nginx_")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.sock_path = os.path.join(self.dir, "app.sock")
        self.tcp = Luvicorn(APP, "--timeout-graceful-shutdown", "5", extra_env=["NGINX_APP_NAME=tcp"]).started()
        self.addCleanup(self.tcp.kill)
        self.unix = Luvicorn(APP, "--uds", self.sock_path, "--forwarded-allow-ips", "unix:",
                             "--timeout-graceful-shutdown", "5", port=False, extra_env=["NGINX_APP_NAME=unix"])
        self.addCleanup(self.unix.kill)
        try:
            self.unix.wait_line(r"Luvicorn running on unix socket " + re.escape(self.sock_path))
        except AssertionError:
            self.unix.kill()
            raise
        self.servers = {"tcp": self.tcp, "unix": self.unix}
        self.nginx = Nginx(self.dir, self.tcp.port)
        self.addCleanup(self.nginx.stop)

    def diagnostics(self):
        return "\nnginx:\n%s\naccess log:\n%s\ntcp instance:\n%s\nunix instance:\n%s" % (
            self.nginx.log(), self.nginx.access_log(), self.tcp.log(), self.unix.log())

    def client(self):
        """A keep-alive connection to nginx from 127.0.0.2."""
        conn = http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=DEADLINE,
                                          source_address=(CLIENT_ADDR, 0))
        self.addCleanup(conn.close)
        return conn

    def get(self, conn, path="/", headers=None):
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        self.assertEqual(resp.status, 200, "GET %s: %d %r%s" % (path, resp.status, body, self.diagnostics()))
        return json.loads(body)

    def assert_identity(self, seen):
        """The answer names a running instance by its process id too (no other server answered)."""
        self.assertIn(seen["name"], self.servers)
        self.assertEqual(seen["pid"], self.servers[seen["name"]].proc.pid)

    # -- (a) load balancing --------------------------------------------------------------------------

    def test_requests_reach_both_instances(self):
        conn = self.client()
        counts = {"tcp": 0, "unix": 0}
        for _ in range(20):
            seen = self.get(conn)
            self.assert_identity(seen)
            counts[seen["name"]] += 1
        # round robin over two healthy servers
        self.assertEqual(counts, {"tcp": 10, "unix": 10}, self.diagnostics())

    # -- (b) the client address through the proxy headers ----------------------------------------------

    def test_app_sees_the_real_client_address_on_both_instances(self):
        conn = self.client()
        seen_by = {}
        for _ in range(4):
            seen = self.get(conn)
            seen_by[seen["name"]] = seen
            self.assertEqual(seen["xff"], CLIENT_ADDR)
            self.assertEqual(seen["forwarded"], "for=%s;proto=http" % CLIENT_ADDR)
            self.assertEqual(seen["client"], CLIENT_ADDR, "%s instance: %r%s"
                             % (seen["name"], seen, self.diagnostics()))
            self.assertEqual(seen["scheme"], "http")
        self.assertEqual(set(seen_by), {"tcp", "unix"})
        self.assertEqual(seen_by["tcp"]["server"], "127.0.0.1")
        self.assertEqual(seen_by["unix"]["server"], self.sock_path)

    def test_forged_proxy_headers_do_not_become_the_client(self):
        conn = self.client()
        names = set()
        for _ in range(4):
            seen = self.get(conn, headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                                           "Forwarded": "for=203.0.113.9;proto=https"})
            names.add(seen["name"])
            # nginx appends the address it saw; Luvicorn takes the nearest untrusted one from the right
            self.assertEqual(seen["xff"], "203.0.113.9, " + CLIENT_ADDR)
            # nginx replaces the client's Forwarded and X-Forwarded-Proto
            self.assertEqual(seen["forwarded"], "for=%s;proto=http" % CLIENT_ADDR)
            self.assertEqual(seen["scheme"], "http")
            self.assertEqual(seen["client"], CLIENT_ADDR, "%s instance: %r" % (seen["name"], seen))
        self.assertEqual(names, {"tcp", "unix"})

    def test_an_ipv6_client_is_quoted_in_forwarded(self):
        conn = http.client.HTTPConnection("::1", self.nginx.port, timeout=DEADLINE)
        self.addCleanup(conn.close)
        names = set()
        for _ in range(4):
            seen = self.get(conn)
            names.add(seen["name"])
            self.assertEqual(seen["forwarded"], 'for="[::1]";proto=http')
            self.assertEqual((seen["xff"], seen["client"]), ("::1", "::1"), "%s instance: %r" % (seen["name"], seen))
        self.assertEqual(names, {"tcp", "unix"})

    def test_headers_from_an_untrusted_peer_are_ignored(self):
        # straight to the TCP instance from 127.0.0.2, which is not in --forwarded-allow-ips
        conn = http.client.HTTPConnection("127.0.0.1", self.tcp.port, timeout=DEADLINE,
                                          source_address=(CLIENT_ADDR, 0))
        self.addCleanup(conn.close)
        seen = self.get(conn, headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
        self.assertEqual((seen["name"], seen["client"], seen["scheme"]), ("tcp", CLIENT_ADDR, "http"))

    # -- (c) WebSocket through nginx -------------------------------------------------------------------

    def test_websocket_through_nginx_on_both_instances(self):
        names = set()
        for _ in range(6):  # round robin: two connections reach both; a few more allowed, no more
            if names == {"tcp", "unix"}:
                break
            sock = socket.socket()
            sock.settimeout(DEADLINE)
            sock.bind((CLIENT_ADDR, 0))
            sock.connect(("127.0.0.1", self.nginx.port))
            with connect("ws://127.0.0.1:%d/ws" % self.nginx.port, sock=sock, proxy=None,
                         open_timeout=DEADLINE, close_timeout=DEADLINE) as ws:
                ws.send("whoami")
                seen = json.loads(ws.recv(timeout=DEADLINE))
                self.assert_identity(seen)
                self.assertEqual(seen["client"], CLIENT_ADDR, "%s instance: %r" % (seen["name"], seen))
                self.assertEqual(seen["scheme"], "ws")
                for message in ("hello", "é ✓ " * 1000, b"\x00\x01\xff" * 5000):
                    ws.send(message)
                    self.assertEqual(ws.recv(timeout=DEADLINE), message)
                ws.close()
                self.assertEqual(ws.close_code, 1000)
            names.add(seen["name"])
            # the close went through nginx to the app, with its code
            self.servers[seen["name"]].wait_line(r"^%s saw disconnect 1000$" % seen["name"], stream="out")
        self.assertEqual(names, {"tcp", "unix"})

    # -- (d) failover ------------------------------------------------------------------------------------

    def failover(self, victim_name, survivor_name):
        """Clients keep requesting through nginx while the victim is stopped with SIGTERM: no request
        may fail, and once the victim has exited every answer comes from the survivor. The clients stop
        after AFTER requests sent past the exit, or at the budget of requests or time (a failure)."""
        victim, survivor = self.servers[victim_name], self.servers[survivor_name]
        budget, time_limit, stop_at, wanted_after = 1000, 15.0, 60, 40
        lock = threading.Lock()
        records = []  # (monotonic time the request was sent, name or None, error or None)
        exited = [None]  # when the victim's exit was seen
        deadline = time.monotonic() + time_limit

        def enough():
            with lock:
                if len(records) >= budget:
                    return True
                return exited[0] is not None and sum(r[0] > exited[0] for r in records) >= wanted_after

        def worker():
            # one keep-alive connection per worker, so nginx keeps several upstream connections busy
            conn = http.client.HTTPConnection("127.0.0.1", self.nginx.port, timeout=DEADLINE,
                                              source_address=(CLIENT_ADDR, 0))
            try:
                while time.monotonic() < deadline and not enough():
                    sent = time.monotonic()
                    try:
                        conn.request("GET", "/")
                        resp = conn.getresponse()
                        body = resp.read()
                        if resp.status != 200:
                            raise AssertionError("status %d: %r" % (resp.status, body))
                        name, error = json.loads(body)["name"], None
                    except Exception as e:  # noqa: BLE001 - every failure is recorded and reported
                        name, error = None, "%s: %s" % (type(e).__name__, e)
                    with lock:
                        records.append((sent, name, error))
                    if error:
                        return
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        while time.monotonic() < deadline and any(t.is_alive() for t in threads):
            with lock:
                if len(records) >= stop_at:
                    break
            time.sleep(0.005)  # polling the shared counter
        with lock:
            seen_before = {r[1] for r in records}
        victim.proc.send_signal(signal.SIGTERM)
        code = victim.proc.wait(DEADLINE)
        with lock:
            exited[0] = time.monotonic()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + DEADLINE)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads did not finish")

        errors = [r for r in records if r[2]]
        self.assertEqual(errors, [], "requests failed during failover%s" % self.diagnostics())
        self.assertEqual(code, 0, victim.log())
        self.assertEqual(seen_before, {"tcp", "unix"})
        after = [r[1] for r in records if r[0] > exited[0]]
        self.assertGreaterEqual(len(after), wanted_after, "the clients hit the budget of %d requests or %ss"
                                % (budget, time_limit))
        self.assertEqual(set(after), {survivor_name})
        conn = self.client()
        for _ in range(10):
            self.assertEqual(self.get(conn)["name"], survivor_name)
        self.assertIsNone(survivor.proc.poll())

    def test_failover_when_the_tcp_instance_stops(self):
        self.failover("tcp", "unix")

    def test_failover_when_the_unix_instance_stops(self):
        self.failover("unix", "tcp")


if __name__ == "__main__":
    unittest.main()
