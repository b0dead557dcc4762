"""segnet-serve's HTTP API on loopback (CTest serve_api.<group>; docs/serve.md).

  serve_api_test.py GROUP BUILD_DIR
GROUP: labels (the label PNG equals segnet-segment's), hostile (every hostile request gets its
4xx and the next good request works), queue (a full queue answers 503 + Retry-After), timeout
(a request that waits for the network past --timeout answers 503), sigterm (in-flight requests finish, exit 0),
cli (bad flags exit 2, bad data exit 1, one line each), sampling (--samples T on a Bayesian
checkpoint: segnet-segment --samples T's labels, the mean uncertainty and its map), cutoff (a
network run past --timeout is cut short: 503 in about the timeout, the next request right),
clients (a half-closed client gets its answer; clients gone before or during the answer leave
the server running).
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_harness import Response, Server, exchange, get, multipart, post, read, repository_root, request_bytes  # noqa: E402

ROOT = repository_root()
WEIGHTS = os.path.join(ROOT, "models", "segnet-basic-camvid.safetensors")
IMAGE = os.path.join(ROOT, "data", "camvid", "val", "0016E5_08109.png")  # bundled, not a compiled-in sample
SAMPLE = "0016E5_07959.png"  # compiled into segnet-serve
failures = []


def check(condition, what, got=None):
    print(("ok    " if condition else "FAIL  ") + what + ("" if condition or got is None else ": got %r" % (got,)))
    if not condition:
        failures.append(what)


def good_request_works(port, after):
    r = post(port, "/api/segment?sample=" + SAMPLE)
    check(r.status == 200 and r.body.startswith(b"\x89PNG"), "a good request works after " + after, r)


def concurrently(port, count, path):
    """`count` requests released at the same moment."""
    results = [None] * count
    start = threading.Barrier(count)

    def one(i):
        start.wait()
        results[i] = exchange(port, request_bytes("POST", path))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def group_labels(build):
    segment = os.path.join(build, "examples", "segnet-segment")
    serve = os.path.join(build, "examples", "segnet-serve")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([segment, "--weights", WEIGHTS, "--input", IMAGE, "--out", out, "--precision", "fp32"],
                       check=True, stdout=subprocess.DEVNULL)
        expected = read(os.path.join(out, os.path.basename(IMAGE)))
    image = read(IMAGE)
    with Server(serve, WEIGHTS, "--precision", "fp32") as server:
        raw = post(server.port, "/api/segment", image, {"Content-Type": "image/png"})
        check(raw.status == 200 and raw.headers.get("content-type") == "image/png", "raw body: a PNG answer", raw)
        check(raw.body == expected, "raw body: the label PNG equals segnet-segment's")
        body, content_type = multipart("image", "x.png", image, "image/png")
        form = post(server.port, "/api/segment", body, {"Content-Type": content_type})
        check(form.body == expected, "multipart field 'image': the label PNG equals segnet-segment's", form)
        answer = post(server.port, "/api/segment?format=json", image)
        result = json.loads(answer.body) if answer.status == 200 else {}
        check(result.get("width") == 480 and result.get("height") == 360, "?format=json: the image's size", answer)
        counts = [c["pixels"] for c in result.get("classes", [])]
        check(len(counts) == 11 and sum(counts) == 480 * 360, "?format=json: 11 classes whose pixels add up", counts)
        check(abs(sum(c["share"] for c in result["classes"]) - 1) < 1e-3, "?format=json: shares add up to 1")
        accept = post(server.port, "/api/segment", image, {"Accept": "application/json"})
        check(accept.status == 200 and json.loads(accept.body)["classes"] == result["classes"],
              "Accept: application/json gives the same JSON", accept)
        images = json.loads(post(server.port, "/api/segment?format=json&images=1&sample=" + SAMPLE).body)
        check(images["overlay"].startswith("data:image/png;base64,") and images["mask"].startswith("data:image/png;base64,"),
              "?images=1: the overlay and the mask as PNG data URLs")
        model = json.loads(get(server.port, "/api/model").body)
        check(model["name"] == "segnet-basic" and len(model["classes"]) == 11 and model["classes"][0]["name"] == "Sky",
              "/api/model: name and classes", model)
        samples = json.loads(get(server.port, "/api/samples").body)["samples"]
        check(SAMPLE in samples, "/api/samples lists the compiled-in samples", samples)
        sample = get(server.port, "/samples/" + SAMPLE)
        check(sample.body == read(os.path.join(ROOT, "data", "camvid", "val", SAMPLE)), "/samples/<name>: its bytes")
        page = get(server.port, "/")
        check(page.status == 200 and b"/api/segment" in page.body and b"://" not in page.body,
              "/: the page, with no external resource", page)
        check(get(server.port, "/healthz").body == b"ok\n", "/healthz")


def group_hostile(build):
    serve = os.path.join(build, "examples", "segnet-serve")
    image = read(IMAGE)
    limits = ("--max-upload-bytes", "2000000", "--max-image-pixels", "200000", "--io-timeout", "1")
    with Server(serve, WEIGHTS, *limits) as server:
        port = server.port
        cases = [
            ("a body over --max-upload-bytes", 413,
             lambda: post(port, "/api/segment", b"\xff" * 2_000_001)),
            ("a Content-Length of 1 TB that never comes", 413,
             lambda: exchange(port, request_bytes("POST", "/api/segment", b"abc", content_length=10**12))),
            ("a truncated body (Content-Length 100000, 1000 bytes sent)", 400,
             lambda: exchange(port, request_bytes("POST", "/api/segment", image[:1000], content_length=100000))),
            ("a multipart body that is not multipart", 400,
             lambda: post(port, "/api/segment", b"0123456789", {"Content-Type": "multipart/form-data; boundary=xyz"})),
            ("a multipart body without the field 'image'", 400,
             lambda: post(port, "/api/segment", *_with_type(multipart("picture", "x.png", image)))),
            ("a body that is not an image", 400,
             lambda: post(port, "/api/segment", b"GIF89a this is not a PNG or JPEG")),
            ("an empty body", 400,
             lambda: post(port, "/api/segment", b"")),
            ("half a PNG", 400,
             lambda: post(port, "/api/segment", image[: len(image) // 2])),
            ("a PNG header declaring 100000x100000 pixels", 413,
             lambda: post(port, "/api/segment", read(os.path.join(ROOT, "tests", "data", "data_io", "huge_header.png")))),
            ("an image over --max-image-pixels (640x480 > 200000)", 413,
             lambda: post(port, "/api/segment", grey_png(640, 480))),
            ("an image the network cannot take (7x5)", 422,
             lambda: post(port, "/api/segment", read(os.path.join(ROOT, "tests", "fuzz", "corpus", "image", "rgb.png")))),
            ("an unknown sample", 404,
             lambda: post(port, "/api/segment?sample=nope.png")),
            ("?format=xml", 400,
             lambda: post(port, "/api/segment?format=xml&sample=" + SAMPLE)),
            ("path traversal on /samples/", 404,
             lambda: get(port, "/samples/../../../etc/passwd")),
            ("encoded path traversal on /samples/", 404,
             lambda: get(port, "/samples/..%2f..%2f..%2fetc%2fpasswd")),
            ("path traversal at the root", 404,
             lambda: get(port, "/../../etc/passwd")),
            ("a slow client: headers stop half-way", 400,
             lambda: exchange(port, request_bytes("POST", "/api/segment", image), pause_after=40, timeout=30)),
            ("a slow client: the body stops half-way", 400,
             lambda: exchange(port, request_bytes("POST", "/api/segment", image), pause_after=len(image) // 2, timeout=30)),
        ]
        for what, status, send in cases:
            r = send()
            check(r.status == status, what + " -> %d" % status, r)
            good_request_works(port, what)
        check(server.process.poll() is None, "the server is still running")


def grey_png(width, height):
    """A valid black greyscale PNG (written here: no bundled image is over the limit and under the upload size)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes(width) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _with_type(body_and_type):
    body, content_type = body_and_type
    return body, {"Content-Type": content_type}


def group_queue(build):
    with Server(os.path.join(build, "examples", "segnet-serve"), WEIGHTS, "--queue", "1") as server:
        results = concurrently(server.port, 3, "/api/segment?sample=" + SAMPLE)
        statuses = sorted(r.status for r in results)
        check(statuses == [200, 503, 503], "--queue 1, three at once: one answered, two 503", statuses)
        busy = [r for r in results if r.status == 503]
        check(all(r.headers.get("retry-after") == "1" for r in busy), "503 says Retry-After", busy)
        good_request_works(server.port, "a full queue")


def group_timeout(build):
    """Requests that wait for the network past --timeout get 503. --timeout bounds the whole
    request (waiting and running), so it is chosen from one run's time t here: T = 2 t + 1 s, and
    ceil(T / t) + 2 requests at once, so that the first finishes and the last waits longer than T."""
    serve = os.path.join(build, "examples", "segnet-serve")
    path = "/api/segment?format=json&sample=" + SAMPLE
    with Server(serve, WEIGHTS) as server:
        post(server.port, path)  # warm-up: the first run of a size allocates
        run = json.loads(post(server.port, path).body)["milliseconds"]["inference"] / 1000
    timeout = int(2 * run + 1.999)
    count = min(int(timeout / run) + 3, 12)
    with Server(serve, WEIGHTS, "--queue", str(count), "--timeout", str(timeout)) as server:
        results = concurrently(server.port, count, path)
        late = [r for r in results if r.status == 503]
        check(any(b"stayed busy" in r.body for r in late) and
              all(b"--timeout" in r.body and r.headers.get("retry-after") for r in late),
              "%d at once, --timeout %d (a run: %.1f s): those that waited too long get 503" % (count, timeout, run),
              [r.status for r in results])
        served = [json.loads(r.body) for r in results if r.status == 200]
        check(len(served) >= 1 and all(s["milliseconds"]["wait"] + s["milliseconds"]["inference"] <= timeout * 1000 + 100
                                       for s in served),
              "those answered waited and ran at most --timeout", [s["milliseconds"] for s in served])
        good_request_works(server.port, "timeouts")


def group_sigterm(build):
    server = Server(os.path.join(build, "examples", "segnet-serve"), WEIGHTS)
    result = {}
    in_flight = threading.Thread(target=lambda: result.update(r=post(server.port, "/api/segment?sample=" + SAMPLE)))
    in_flight.start()
    time.sleep(0.5)  # the request is in (a sample needs no upload); the network takes longer than this
    status = server.stop()
    in_flight.join()
    check(result["r"].status == 200 and result["r"].body.startswith(b"\x89PNG"),
          "SIGTERM: the request in flight is answered", result["r"])
    check(status == 0, "SIGTERM: exit status 0", status)
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    check(refused, "SIGTERM: no longer listening")
    # The port is printed just before listening starts: a SIGTERM at once lands in that window.
    early = Server(os.path.join(build, "examples", "segnet-serve"), WEIGHTS)
    try:
        status = early.stop(timeout=20)
    except subprocess.TimeoutExpired:
        status = "still running after 20 s"
    check(status == 0, "SIGTERM as soon as the port is printed: exit status 0", status)


def group_cli(build):
    serve = os.path.join(build, "examples", "segnet-serve")

    def run(*args):
        p = subprocess.run([serve, *args], capture_output=True, text=True, timeout=60)
        return p.returncode, p.stderr.strip().splitlines()

    for args, status, what in [
        (("--weights", WEIGHTS, "--port", "70000"), 2, "--port out of range"),
        (("--weights", WEIGHTS, "--bogus"), 2, "an unknown option"),
        (("--port", "0"), 2, "no --weights"),
        (("--weights", WEIGHTS, "--size", "7x5"), 2, "a --size the network cannot take"),
        (("--weights", os.path.join(ROOT, "no-such.safetensors")), 1, "a missing checkpoint"),
        (("--weights", IMAGE), 1, "a checkpoint that is not one"),
    ]:
        code, lines = run(*args)
        check(code == status and len(lines) == 1 and lines[0].startswith("segnet-serve: "),
              "%s: exit %d, one line" % (what, status), (code, lines))
    with Server(serve, WEIGHTS) as server:
        code, lines = run("--weights", WEIGHTS, "--port", str(server.port))
        check(code == 1 and len(lines) == 1 and "cannot listen" in lines[0], "a port in use: exit 1, one line",
              (code, lines))


SHAPES = os.path.join(ROOT, "tests", "data", "shapes")
SHAPES_IMAGE = os.path.join(SHAPES, "val", "images", "0000.png")  # 64x64


def bayesian_checkpoint(build, work):
    """A Bayesian SegNet-Basic (dropout) trained one epoch on the test's small shapes set."""
    subprocess.run([os.path.join(build, "examples", "segnet-train"), "--model", "bayesian-segnet-basic", "--train",
                    os.path.join(SHAPES, "train", "list.txt"), "--classes", "4", "--ignore", "-1", "--balance", "natural", "--batch", "4",
                    "--epochs", "1", "--threads", "2", "--seed", "1", "--out", os.path.join(work, "bayes")],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(work, "bayes", "last.safetensors")


def group_sampling(build):
    """A Bayesian SegNet-Basic trained one epoch on the test's small shapes set, served with
    --samples 4: the labels are segnet-segment --samples 4's (the samples depend only on the
    model's seed, T and the image), and the JSON carries the uncertainty."""
    examples = os.path.join(build, "examples")
    image = SHAPES_IMAGE
    with tempfile.TemporaryDirectory() as work:
        weights = bayesian_checkpoint(build, work)
        out = os.path.join(work, "mc")
        subprocess.run([os.path.join(examples, "segnet-segment"), "--weights", weights, "--input", image, "--out", out,
                        "--samples", "4", "--precision", "fp32"], check=True, stdout=subprocess.DEVNULL)
        expected = read(os.path.join(out, "0000.png"))
        serve = os.path.join(examples, "segnet-serve")
        with Server(serve, weights, "--samples", "4", "--precision", "fp32") as server:
            model = json.loads(get(server.port, "/api/model").body)
            check(model.get("samples") == 4, "/api/model: samples 4", model.get("samples"))
            raw = post(server.port, "/api/segment", read(image), {"Content-Type": "image/png"})
            check(raw.status == 200 and raw.body == expected, "the label PNG equals segnet-segment --samples 4's", raw)
            answer = post(server.port, "/api/segment?format=json&images=1", read(image))
            result = json.loads(answer.body) if answer.status == 200 else {}
            mean = result.get("uncertainty", {}).get("mean", -1)
            check(0 < mean <= 1, "?format=json: a mean uncertainty in (0, 1]", result.get("uncertainty"))
            check(result.get("uncertainty_map", "").startswith("data:image/png;base64,"),
                  "?images=1: the uncertainty map as a PNG data URL")
        with Server(serve, weights, "--precision", "fp32") as server:
            plain = json.loads(post(server.port, "/api/segment?format=json&images=1", read(image)).body)
            check("uncertainty" not in plain and "uncertainty_map" not in plain and
                  json.loads(get(server.port, "/api/model").body).get("samples") == 0,
                  "without --samples: no uncertainty, samples 0")
    p = subprocess.run([serve, "--weights", WEIGHTS, "--samples", "4"], capture_output=True, text=True, timeout=60)
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 2 and len(lines) == 1 and "has no dropout" in lines[0],
          "--samples on a model without dropout: exit 2, one line", (p.returncode, lines))


def group_cutoff(build):
    """--samples 100: a request's network run still going at --timeout is cut short and answered
    503 with Retry-After in about the timeout, not after the run, and the model then serves the
    next request as if the run had finished. The timeout is chosen from the time t of a 16x16
    image (T = 3 t + 1 s, whole seconds); the long run is a 128x128 image, 64 times the pixels."""
    serve = os.path.join(build, "examples", "segnet-serve")
    short, long_image = grey_png(16, 16), grey_png(128, 128)
    with tempfile.TemporaryDirectory() as work:
        weights = bayesian_checkpoint(build, work)
        flags = ("--samples", "100", "--precision", "fp32")
        with Server(serve, weights, *flags) as server:
            post(server.port, "/api/segment", short)  # warm-up: the first run of a size allocates
            started = time.monotonic()
            expected = post(server.port, "/api/segment", short)
            run = time.monotonic() - started
        timeout = int(3 * run + 1.999)
        with Server(serve, weights, *flags, "--timeout", str(timeout)) as server:
            started = time.monotonic()
            cut = post(server.port, "/api/segment", long_image)
            seconds = time.monotonic() - started
            check(cut.status == 503 and cut.headers.get("retry-after") == "1" and b"cut short" in cut.body,
                  "a run past --timeout %d is cut short: 503, Retry-After" % timeout, cut)
            check(seconds < timeout + 4, "the 503 comes in about --timeout %d (< %d s), not after the run: %.1f s"
                  % (timeout, timeout + 4, seconds), round(seconds, 2))
            after = post(server.port, "/api/segment", short)
            check(expected.status == 200 and after.status == 200 and after.body == expected.body,
                  "the next request gets the labels an uncut server gives", (expected, after))


def group_clients(build):
    """Clients that stop talking early: one that half-closes (shutdown(SHUT_WR)) right after a
    full request gets its answer; one that goes away before the answer (a plain close, then a
    reset) or in the middle of a large one does not end or wedge the server (SIGPIPE), and the
    next request is answered."""
    small = grey_png(64, 48)
    with Server(os.path.join(build, "examples", "segnet-serve"), WEIGHTS) as server:
        for connection in ("close", "keep-alive"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
                s.sendall(request_bytes("POST", "/api/segment", small,
                                        {"Content-Type": "image/png", "Connection": connection}))
                s.shutdown(socket.SHUT_WR)
                received = b""
                while True:  # to the end: the server closes its side once it has answered
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        break
                    received += chunk
            r = Response(received)
            check(r.status == 200 and r.body.startswith(b"\x89PNG") and
                  len(r.body) == int(r.headers.get("content-length", "-1")),
                  "a half-closed client (Connection: %s) gets the whole answer" % connection, r)

        def vanish(reset):
            """Sends a segmentation request and goes before the answer (the network takes longer)."""
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if reset:  # close() then sends RST, not FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(request_bytes("POST", "/api/segment?format=json&images=1&sample=" + SAMPLE))
            time.sleep(0.2)
            s.close()

        for reset in (False, True):
            vanish(reset)
            # Queued behind the vanished request: its answer is written (and fails) while this one runs.
            r = post(server.port, "/api/segment?sample=" + SAMPLE)
            check(r.status == 200 and r.body.startswith(b"\x89PNG"),
                  "a client gone before its answer (%s): the next request is answered" % ("reset" if reset else "close"), r)

        # Gone in the middle of the answer: a small receive buffer, a few bytes read, then a reset.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(60)
        s.connect(("127.0.0.1", server.port))
        s.sendall(request_bytes("POST", "/api/segment?format=json&images=1&sample=" + SAMPLE))
        first = s.recv(64)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        check(first.startswith(b"HTTP/1.1 200"), "the large answer had started", first[:20])
        good_request_works(server.port, "a client gone in the middle of an answer")
        check(get(server.port, "/healthz").body == b"ok\n", "/healthz answers after the vanished clients")
        check(server.process.poll() is None, "the server is still running after the vanished clients",
              server.process.poll())


if __name__ == "__main__":
    group, build = sys.argv[1], sys.argv[2]
    if not os.path.exists(os.path.join(build, "examples", "segnet-serve")):
        print("SKIPPED: segnet-serve is not built (install libcpp-httplib-dev and pkg-config)")
        sys.exit(77)
    globals()["group_" + group](build)
    print("%d failure(s)" % len(failures) if failures else "all passed")
    sys.exit(1 if failures else 0)
