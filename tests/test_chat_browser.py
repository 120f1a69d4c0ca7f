"""Browser test of examples/chat.

Headless Chromium (Debian's `chromium`) opens the chat page twice, driven over the DevTools protocol with
Python's `websockets`: a message sent in one page appears in the other, and a line written to the
server's stdin appears in both. Skipped when chromium is not installed (`make test` installs it)."""

import asyncio
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luvicorn_proc import HAS_LUVRS, Luvicorn  # noqa: E402

DEADLINE = 20.0
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def read_until(stream, pattern, buf, timeout=DEADLINE):
    """Reads `stream` until `pattern` matches the accumulated bytes; returns (match, bytes)."""
    end = time.monotonic() + timeout
    while True:
        m = re.search(pattern, buf)
        if m:
            return m, buf
        left = end - time.monotonic()
        if left <= 0:
            return None, buf
        ready, _, _ = select.select([stream], [], [], left)
        if not ready:
            return None, buf
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            return re.search(pattern, buf), buf
        buf += chunk


class DevTools:
    """A minimal Chrome DevTools Protocol client (flattened sessions)."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), DEADLINE))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError("%s failed: %s" % (method, reply["error"]))
                return reply["result"]

    async def open_page(self, url):
        target = await self.call("Target.createTarget", {"url": url})
        attached = await self.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        return attached["sessionId"]

    async def evaluate(self, session, expression):
        result = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return result["result"].get("value")

    async def wait_for(self, session, expression, what):
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if await self.evaluate(session, expression):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("timed out waiting for " + what)


class ChatBrowserTests:
    loop = None

    def setUp(self):
        self.server = Luvicorn("examples/chat/main.lua", "--host", "127.0.0.1", loop=self.loop,
                               stdin=True)
        self.addCleanup(self.server.stop, signal.SIGINT)
        self.server.started(DEADLINE)
        self.url = self.server.url("/")
        self.profile = tempfile.mkdtemp(prefix="chat-browser-")
        self.browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--user-data-dir=" + self.profile, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        m, err = read_until(self.browser.stderr, rb"DevTools listening on (ws://\S+)", b"")
        if not m:
            self.fail("chromium did not start:\n" + err.decode(errors="replace"))
        self.devtools_url = m.group(1).decode()

    def tearDown(self):
        self.browser.terminate()
        try:
            self.browser.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.browser.kill()
            self.browser.wait(timeout=DEADLINE)
        self.browser.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def test_two_pages_and_stdin(self):
        asyncio.run(self.scenario())

    async def scenario(self):
        async with websockets.connect(self.devtools_url, max_size=None) as ws:
            dt = DevTools(ws)
            one = await dt.open_page(self.url)
            two = await dt.open_page(self.url)
            connected = "document.getElementById('status') && " \
                        "document.getElementById('status').textContent === 'connected'"
            await dt.wait_for(one, connected, "page one to connect")
            await dt.wait_for(two, connected, "page two to connect")

            def has(text):
                return "document.getElementById('messages').innerText.includes(%s)" % json.dumps(text)

            await dt.evaluate(one, "document.getElementById('input').value = 'hello from page one';"
                                   "document.getElementById('form').requestSubmit(); true")
            await dt.wait_for(two, has("hello from page one"), "the message in page two")
            await dt.wait_for(one, has("hello from page one"), "the message echoed in page one")

            self.server.proc.stdin.write("a line from the server terminal\n")
            self.server.proc.stdin.flush()
            await dt.wait_for(one, has("a line from the server terminal"), "the stdin line in page one")
            await dt.wait_for(two, has("a line from the server terminal"), "the stdin line in page two")


@unittest.skipUnless(CHROMIUM, "chromium not installed")
class LuvChatBrowserTests(ChatBrowserTests, unittest.TestCase):
    loop = "luv"


@unittest.skipUnless(CHROMIUM and HAS_LUVRS, "chromium not installed or build/luvrs.so not built")
class LuvrsChatBrowserTests(ChatBrowserTests, unittest.TestCase):
    loop = "luvrs"


if __name__ == "__main__":
    unittest.main()
