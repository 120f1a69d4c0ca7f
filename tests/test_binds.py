"""Listening addresses, end to end: IPv6, several --host at once, --bind, and the socket file of --uds
(a stale one is replaced, one a live server listens on is left alone)."""

import http.client
import os
import re
import socket
import tempfile
import unittest

from luvicorn_proc import Luvicorn, exchange


def get(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def get_unix(path):
    return exchange(path, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


class BindsTest(unittest.TestCase):
    def start(self, *args, port=True):
        server = Luvicorn("examples/hello.lua", *args, port=port)
        self.addCleanup(server.kill)
        return server

    def sock_path(self):
        d = tempfile.mkdtemp(prefix="luvicorn_binds_")
        self.addCleanup(os.rmdir, d)
        path = os.path.join(d, "app.sock")
        self.addCleanup(lambda: os.path.exists(path) and os.remove(path))
        return path

    def test_ipv6_loopback(self):
        server = self.start("--host", "::1")
        port = int(server.wait_line(r"Luvicorn running on http://\[::1\]:(\d+)").group(1))
        self.assertEqual(get("::1", port)[0], 200)
        self.assertEqual(server.stop(), 0, server.log())

    def test_several_hosts_and_a_bind_at_once(self):
        path = self.sock_path()
        server = self.start("--host", "127.0.0.1", "--host", "::1", "--bind", "unix:" + path)
        v6 = int(server.wait_line(r"Luvicorn running on http://\[::1\]:(\d+)").group(1))
        v4 = int(server.wait_line(r"Luvicorn running on http://127\.0\.0\.1:(\d+)").group(1))
        server.wait_line(r"Luvicorn running on unix socket " + re.escape(path))
        self.assertEqual(get("127.0.0.1", v4)[0], 200)
        self.assertEqual(get("::1", v6)[0], 200)
        self.assertTrue(get_unix(path).startswith(b"HTTP/1.1 200 "))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o666)
        self.assertEqual(server.stop(), 0, server.log())
        self.assertFalse(os.path.exists(path))

    def test_a_stale_socket_file_is_replaced(self):
        path = self.sock_path()
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()  # the file stays, nobody listens: what a crashed server leaves
        self.assertTrue(os.path.exists(path))
        server = self.start("--uds", path, port=False)
        server.wait_line(r"Luvicorn running on unix socket " + re.escape(path))
        self.assertTrue(get_unix(path).startswith(b"HTTP/1.1 200 "))
        self.assertEqual(server.stop(), 0, server.log())

    def test_a_socket_a_live_server_listens_on_is_left_alone(self):
        path = self.sock_path()
        first = self.start("--uds", path, port=False)
        first.wait_line(r"Luvicorn running on unix socket")
        second = self.start("--uds", path, port=False)
        self.assertEqual(second.proc.wait(10), 3, second.log())
        self.assertIn("a running server is listening on it", second.log())
        # the first server still has its socket file
        self.assertTrue(get_unix(path).startswith(b"HTTP/1.1 200 "))
        self.assertEqual(first.stop(), 0, first.log())

    def test_a_bad_bind_exits_3(self):
        server = self.start("--bind", "nowhere", port=False)
        self.assertEqual(server.proc.wait(10), 3, server.log())
        self.assertIn('--bind: "nowhere" is not HOST:PORT', server.log())


if __name__ == "__main__":
    unittest.main()
