"""Starts segnet-serve on a free loopback port and talks raw HTTP/1.1 to it (standard library only).

Shared by tests/programs/serve_api_test.py and bench/serve_load.py. Raw sockets rather than
http.client, so that a test can send what no well-behaved client would: a truncated body, a
Content-Length it never sends, headers that stop half-way.
"""
import os
import re
import select
import socket
import subprocess
import time


class Server:
    """segnet-serve --port 0 ... as a child process; `port` is the one it printed."""

    def __init__(self, binary, weights, *args):
        self.process = subprocess.Popen([binary, "--weights", weights, "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not found:
            self.process.kill()
            raise RuntimeError("segnet-serve did not start: " + line + self.process.stderr.read())
        self.port = int(found.group(1))

    def stop(self, timeout=60):
        """SIGTERM, then the exit status (the server finishes what is in flight first)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Response:
    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2) if lines and lines[0] else []
        self.status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def __repr__(self):
        return "HTTP %s %r" % (self.status, self.body[:120])


def request_bytes(method, path, body=b"", headers=None, content_length=None):
    """An HTTP/1.1 request; `content_length` may differ from len(body) to lie about it."""
    headers = dict(headers or {})
    headers.setdefault("Host", "127.0.0.1")
    headers.setdefault("Connection", "close")
    if method == "POST":
        headers.setdefault("Content-Length", str(len(body) if content_length is None else content_length))
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def exchange(port, data, timeout=120, pause_after=None):
    """Sends `data` (all of it, or the first `pause_after` bytes and then nothing more) and reads
    until the server closes the connection. Returns the Response (status None: closed unanswered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data if pause_after is None else data[:pause_after])
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            try:
                chunk = s.recv(1 << 16)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            response = Response(received)
            if response.status and len(response.body) >= int(response.headers.get("content-length", "-1")) >= 0:
                break
        return Response(received)


def post(port, path, body=b"", headers=None, **kwargs):
    return exchange(port, request_bytes("POST", path, body, headers), **kwargs)


def get(port, path, **kwargs):
    return exchange(port, request_bytes("GET", path), **kwargs)


def multipart(field, filename, content, content_type="application/octet-stream"):
    """A multipart/form-data body with one file field: (body, Content-Type header value)."""
    boundary = "segnet-serve-test-boundary"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\nContent-Type: %s\r\n\r\n"
            % (boundary, field, filename, content_type)).encode() + content + ("\r\n--%s--\r\n" % boundary).encode()
    return body, "multipart/form-data; boundary=" + boundary


def read(path):
    with open(path, "rb") as f:
        return f.read()


def repository_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
