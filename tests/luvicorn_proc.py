"""The `luvicorn` command as the end-to-end tests run it: a real process on 127.0.0.1, its log lines
collected on threads, every wait bounded by a deadline. The loop module comes from LUVICORN_LOOP
(default luvrs) unless a test names one."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOP = os.environ.get("LUVICORN_LOOP", "luvrs")
ENV = ["env", "LUA_PATH=./lua/?.lua;./lua/?/init.lua;;", "LUA_CPATH=./build/?.so;;"]
HAS_LUVRS = os.path.exists(os.path.join(ROOT, "build", "luvrs.so"))
DEADLINE = 10.0


class Luvicorn:
    """A running `luvicorn` process; its stderr (the server's log) and stdout (what the app prints)
    are collected line by line by two threads."""

    def __init__(self, app, *args, loop=None, port=True, extra_env=None, pass_fds=(), stdin=False):
        cmd = ENV + (extra_env or []) + ["lua5.4", "bin/luvicorn", app, "--loop", loop or LOOP]
        if port:
            cmd += ["--port", "0"]
        cmd += list(args)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.PIPE if stdin else None, text=True, pass_fds=pass_fds)
        self.lines = []
        self.out_lines = []
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stdout, self.out_lines), daemon=True)]
        for t in self.threads:
            t.start()
        self.port = None

    def _read(self, stream, into):
        for line in stream:
            with self.cond:
                into.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=DEADLINE, stream="err"):
        """Waits until `predicate(lines)` holds for the stream's lines so far, or the deadline passes
        or the process has exited and its output is read; returns the predicate's last value."""
        deadline = time.monotonic() + timeout
        lines = self.lines if stream == "err" else self.out_lines
        with self.cond:
            while True:
                result = predicate(lines)
                left = deadline - time.monotonic()
                if result or left <= 0 or (self.proc.poll() is not None
                                           and not any(t.is_alive() for t in self.threads)):
                    return result
                self.cond.wait(min(left, 0.1))

    def wait_line(self, pattern, timeout=DEADLINE, stream="err"):
        """Waits until a line matches `pattern`; returns the match, or fails with the log."""
        rx = re.compile(pattern)

        def first_match(lines):
            return next((m for m in map(rx.search, lines) if m), None)

        m = self.wait_for(first_match, timeout, stream)
        if not m:
            raise AssertionError("no %s line matching %r within %ss; log:\n%s"
                                 % ("log" if stream == "err" else "output", pattern, timeout,
                                    self.log() + "\n" + self.output()))
        return m

    def started(self, timeout=DEADLINE):
        """Waits for the "running on" line; a server that never says it is killed, not left behind."""
        try:
            m = self.wait_line(r"Luvicorn running on http://127\.0\.0\.1:(\d+)", timeout)
        except AssertionError:
            self.kill()
            raise
        self.port = int(m.group(1))
        return self

    def url(self, path="/", scheme="http"):
        return "%s://127.0.0.1:%d%s" % (scheme, self.port, path)

    def stop(self, sig=signal.SIGTERM, timeout=DEADLINE):
        """Sends `sig`, waits for the exit, then releases everything; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for t in self.threads:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def log(self):
        """The server's log (stderr) so far."""
        with self.cond:
            return "\n".join(self.lines)

    def output(self):
        """What the app printed (stdout) so far."""
        with self.cond:
            return "\n".join(self.out_lines)


def wait_until(pred, timeout=DEADLINE, what="the condition"):
    """Polls `pred()` until it returns a true value, and returns that; fails after `timeout` seconds.
    For states no log line announces (files, child processes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.02)


def exchange(address, data, timeout=DEADLINE):
    """Connects to `address` (a Unix socket path, or a (host, port) pair), sends `data`, and returns all
    that comes back until the server closes the connection."""
    family = socket.AF_UNIX if isinstance(address, str) else (
        socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def write_app(testcase, source):
    """Writes a Lua app to a temporary file (removed after the test) and returns its path."""
    fd, path = tempfile.mkstemp(suffix=".lua", prefix="luvicorn_app_")
    with os.fdopen(fd, "w") as f:
        f.write(textwrap.dedent(source))
    testcase.addCleanup(os.remove, path)
    return path
