#!/usr/bin/python3
"""A bounded load test of segnet-serve on loopback (docs/serve.md, "Measurements").

  /usr/bin/python3 bench/serve_load.py --build build --clients 4 --requests 4 [--time-limit 600] [-- SERVER ARGS]

Starts segnet-serve on 127.0.0.1 with the shipped model, then CLIENTS threads each upload a
bundled CamVid image REQUESTS times, one after another (POST /api/segment, label PNG back).
Stops at the count or at --time-limit seconds, whichever comes first. Prints the errors (any
answer but 200 with a PNG), p50/p99 latency and throughput; exits 1 on any error or timeout.
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "programs"))
from serve_harness import Server, post, read, repository_root  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the whole run")
    parser.add_argument("--image", default=os.path.join(repository_root(), "data", "camvid", "val", "0016E5_08109.png"))
    parser.add_argument("server_args", nargs="*", help="more segnet-serve flags, after --")
    args = parser.parse_args()
    image = read(args.image)
    weights = os.path.join(repository_root(), "models", "segnet-basic-camvid.safetensors")
    latencies, errors = [], []
    lock = threading.Lock()
    deadline = time.monotonic() + args.time_limit

    with Server(os.path.join(args.build, "examples", "segnet-serve"), weights, "--queue", str(args.clients),
                "--timeout", str(int(args.time_limit)), *args.server_args) as server:
        post(server.port, "/api/segment", image)  # warm-up: first-touch of the model's buffers

        def client():
            for _ in range(args.requests):
                if time.monotonic() > deadline:
                    return
                started = time.monotonic()
                r = post(server.port, "/api/segment", image, timeout=max(1.0, deadline - started))
                with lock:
                    if r.status == 200 and r.body.startswith(b"\x89PNG"):
                        latencies.append(time.monotonic() - started)
                    else:
                        errors.append(repr(r))

        began = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began

    expected = args.clients * args.requests
    print("clients %d x requests %d, server flags %s" % (args.clients, args.requests, " ".join(args.server_args) or "(none)"))
    print("answered %d/%d, errors %d, %.1f s" % (len(latencies), expected, len(errors), elapsed))
    if latencies:
        print("latency p50 %.0f ms, p99 %.0f ms; throughput %.2f images/s" %
              (1000 * percentile(latencies, 50), 1000 * percentile(latencies, 99), len(latencies) / elapsed))
    for e in errors[:5]:
        print("error: " + e)
    return 0 if not errors and len(latencies) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
