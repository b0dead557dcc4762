"""segnet-serve's HTTP API on loopback (CTest serve_api.<group>; docs/serve.md).

  serve_api_test.py GROUP BUILD_DIR
GROUP: labels (the label PNG equals segnet-segment's), hostile (every hostile request gets its
4xx and the next good request works), queue (a full queue answers 503 + Retry-After), timeout
(a request that waits past --timeout answers 503), sigterm (in-flight requests finish, exit 0),
cli (bad flags exit 2, bad data exit 1, one line each), sampling (--samples T on a Bayesian
checkpoint: segnet-segment --samples T's labels, the mean uncertainty and its map).
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
from serve_harness import Server, exchange, get, multipart, post, read, repository_root, request_bytes  # noqa: E402

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
    with Server(os.path.join(build, "examples", "segnet-serve"), WEIGHTS, "--queue", "8", "--timeout", "1") as server:
        results = concurrently(server.port, 6, "/api/segment?format=json&sample=" + SAMPLE)
        late = [r for r in results if r.status == 503]
        check(len(late) >= 1 and all(b"--timeout" in r.body and r.headers.get("retry-after") for r in late),
              "six at once, --timeout 1: those that waited too long get 503", [r.status for r in results])
        served = [json.loads(r.body) for r in results if r.status == 200]
        check(len(served) >= 1 and all(s["milliseconds"]["wait"] <= 1100 for s in served),
              "those answered waited at most --timeout", [s["milliseconds"] for s in served])
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


def group_sampling(build):
    """A Bayesian SegNet-Basic trained one epoch on the test's small shapes set, served with
    --samples 4: the labels are segnet-segment --samples 4's (the samples depend only on the
    model's seed, T and the image), and the JSON carries the uncertainty."""
    examples = os.path.join(build, "examples")
    shapes = os.path.join(ROOT, "tests", "data", "shapes")
    image = os.path.join(shapes, "val", "images", "0000.png")
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([os.path.join(examples, "segnet-train"), "--model", "bayesian-segnet-basic", "--train",
                        os.path.join(shapes, "train", "list.txt"), "--classes", "4", "--ignore", "-1", "--balance", "natural", "--batch", "4",
                        "--epochs", "1", "--threads", "2", "--seed", "1", "--out", os.path.join(work, "bayes")],
                       check=True, stdout=subprocess.DEVNULL)
        weights = os.path.join(work, "bayes", "last.safetensors")
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


if __name__ == "__main__":
    group, build = sys.argv[1], sys.argv[2]
    if not os.path.exists(os.path.join(build, "examples", "segnet-serve")):
        print("SKIPPED: segnet-serve is not built (install libcpp-httplib-dev and pkg-config)")
        sys.exit(77)
    globals()["group_" + group](build)
    print("%d failure(s)" % len(failures) if failures else "all passed")
    sys.exit(1 if failures else 0)
