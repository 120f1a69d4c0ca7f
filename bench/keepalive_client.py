#!/usr/bin/env python3
"""keepalive_client.py PORT N CONNS: exactly N keep-alive GET requests over CONNS connections, one in
flight on each (as wrk does), then exits; a bounded load for counting instructions per request."""
import selectors
import socket
import sys


def main():
    port, n, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
    sel = selectors.DefaultSelector()
    pending = {}
    sent = done = 0
    for _ in range(min(conns, n)):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        pending[s] = b""
        s.send(request)
        sent += 1
    while done < n:
        events = sel.select(10)
        if not events:
            sys.exit("keepalive_client: no answer for 10 s")
        for key, _ in events:
            s = key.fileobj
            data = s.recv(65536)
            if not data:
                sys.exit("keepalive_client: the server closed a connection")
            buf = pending[s] + data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].lower()
                at = head.find(b"\r\ncontent-length:")
                length = int(head[at + 17:].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(buf) < end + 4 + length:
                    break
                if not buf.startswith(b"HTTP/1.1 200 "):
                    sys.exit("keepalive_client: unexpected response %r" % buf[:80])
                buf = buf[end + 4 + length:]
                done += 1
                if sent < n:
                    s.send(request)
                    sent += 1
            pending[s] = buf
    print(done)


if __name__ == "__main__":
    main()
