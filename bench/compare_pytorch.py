#!/usr/bin/python3
"""Side-by-side timing of segnet-bench and the same networks in PyTorch on this machine.

    /usr/bin/python3 bench/compare_pytorch.py --bench build/bench/segnet-bench
    /usr/bin/python3 bench/compare_pytorch.py --bench ... --threads 2 --models segnet-basic --rounds 3
    /usr/bin/python3 bench/compare_pytorch.py --bench build/bench/segnet-bench --baseline old/build/bench/segnet-bench

For every (model, case, threads) it alternates rounds: one PyTorch process, then one
segnet-bench process, each timing --iters iterations after warm-up, and reports the median over
all rounds of the per-round medians, the ratio ours/PyTorch (< 1: we are faster) and both peak
resident memories. Each PyTorch measurement runs in a fresh process (this script re-invoked with
--torch-worker) so that the peak RSS of one case does not leak into the next. Cases: inference
(batch 1, eval mode, torch.no_grad) and training (batch 4: forward in train mode, cross-entropy
with random labels, backward, SGD step with momentum, zero_grad).

--baseline PATH adds a second segnet-bench (say, one built from an earlier commit) to the same
alternation: each round runs PyTorch, then ours and the baseline in an order that swaps every
round (so neither always follows PyTorch), with the same arguments (both binaries must accept
them). Extra columns: the baseline's median ms, ours/baseline for the wall-time medians and for
the medians of cpu_ms (process CPU time per iteration and thread, steadier on a busy machine),
and the baseline's peak RSS, whose ratio ours/baseline is in the JSON.

The PyTorch networks mirror include/segnet/models: SegNet-Basic = 4 x [conv7x7 64 (bias) + BN +
ReLU + maxpool 2x2 ceil_mode, return_indices], 4 x [MaxUnpool2d to the stored pre-pool size +
conv7x7 64 (no bias) + BN], conv1x1 classifier; SegNet = VGG16 encoder (3x3 conv + BN + ReLU,
bias) and the mirrored decoder, 3x3 classifier.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def build_torch_models(torch):
    nn = torch.nn
    F = torch.nn.functional

    class EncoderDecoder(nn.Module):
        """SegNet's forward: each encoder, then 2x2 max pooling (Caffe's ceil) keeping the indices;
        each decoder unpools with its encoder's indices to that encoder's size."""

        def forward(self, x):
            stack = []
            for e in self.enc:
                x = e(x)
                size = x.shape[-2:]
                x, idx = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
                stack.append((idx, size))
            for d in self.dec:
                idx, size = stack.pop()
                x = F.max_unpool2d(x, idx, 2, 2, output_size=size)
                x = d(x)
            return self.classifier(x)

    class SegNetBasic(EncoderDecoder):
        def __init__(self, classes=11, c=64, k=7):
            super().__init__()
            self.enc = nn.ModuleList()
            cin = 3
            for _ in range(4):
                self.enc.append(nn.Sequential(nn.Conv2d(cin, c, k, padding=k // 2), nn.BatchNorm2d(c), nn.ReLU()))
                cin = c
            self.dec = nn.ModuleList(
                nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c)) for _ in range(4))
            self.classifier = nn.Conv2d(c, classes, 1)

    def vgg(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    def vgg_stages(cin, groups):
        """One nn.Sequential of vgg blocks per group of output widths; returns them and the last width."""
        stages = nn.ModuleList()
        for group in groups:
            layers = []
            for c in group:
                layers += vgg(cin, c)
                cin = c
            stages.append(nn.Sequential(*layers))
        return stages, cin

    class SegNet(EncoderDecoder):
        ENC = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
        DEC = [[512, 512, 512], [512, 512, 256], [256, 256, 128], [128, 64], [64]]

        def __init__(self, classes=11):
            super().__init__()
            self.enc, cin = vgg_stages(3, self.ENC)
            self.dec, cin = vgg_stages(cin, self.DEC)
            self.classifier = nn.Conv2d(cin, classes, 3, padding=1)

    return {"segnet-basic": SegNetBasic, "segnet": SegNet}


def torch_worker(args):
    """Runs in its own process: times one case in PyTorch and prints one JSON line."""
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_torch_models(torch)[args.model](args.classes)
    x = torch.randn(args.batch, 3, args.h, args.w)
    times = []
    if args.mode == "infer":
        net.eval()
        with torch.no_grad():
            for i in range(args.warmup + args.iters):
                t0 = time.perf_counter()
                net(x)
                if i >= args.warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    else:
        net.train()
        labels = torch.randint(0, args.classes, (args.batch, args.h, args.w))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            loss = loss_fn(net(x), labels)
            loss.backward()
            opt.step()
            opt.zero_grad()
            if i >= args.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({"median_ms": statistics.median(times), "min_ms": min(times), "peak_rss_mb": rss,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/bench/segnet-bench", help="path to segnet-bench")
    p.add_argument("--models", default="segnet-basic,segnet")
    p.add_argument("--cases", default="infer,train", help="infer (batch --infer-batch), train (batch --train-batch)")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--size", default="360x480")
    p.add_argument("--infer-batch", type=int, default=1)
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--iters", type=int, default=0, help="iterations per round (0: 5 infer, 2 train)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="alternating PyTorch/segnet rounds per case")
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--skip", default="", help="comma list of model:case to skip, e.g. segnet:train")
    p.add_argument("--json-out", default="", help="write all results to this file")
    p.add_argument("--baseline", default="", help="a second segnet-bench (e.g. an earlier build) timed in the same "
                   "alternation; adds its ms, the ratios ours/baseline (wall, cpu_ms) and its peak RSS")
    # internal: one PyTorch measurement
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="segnet-basic", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="infer", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--h", type=int, default=360, help=argparse.SUPPRESS)
    p.add_argument("--w", type=int, default=480, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_worker:
        args.threads = int(args.threads)
        return torch_worker(args)

    h, w = (int(v) for v in args.size.split("x"))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    results = []
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}; size 3x{h}x{w}")
    if args.baseline:
        print(f"ours: {args.bench}; baseline: {args.baseline}")
    print(f"{'model':<13} {'case':<12} {'thr':>3} {'torch ms':>10} {'ours ms':>10} {'ratio':>6} "
          f"{'torch MB':>9} {'ours MB':>8}"
          + (f" {'base ms':>10} {'/base':>6} {'cpu/base':>8} {'base MB':>8}" if args.baseline else ""))
    for model in args.models.split(","):
        for case in args.cases.split(","):
            if f"{model}:{case}" in skip:
                continue
            batch = args.infer_batch if case == "infer" else args.train_batch
            iters = args.iters or (5 if case == "infer" else 2)
            for threads in (int(t) for t in args.threads.split(",")):
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                tor, ours, base = [], [], []
                for rnd in range(args.rounds):
                    tor.append(run_json([sys.executable, os.path.abspath(__file__), "--torch-worker", "--model", model,
                                         "--mode", case, "--batch", str(batch), "--h", str(h), "--w", str(w),
                                         "--threads", str(threads), "--iters", str(iters), "--warmup",
                                         str(args.warmup), "--classes", str(args.classes)], env))
                    bench_args = ["--model", model, "--mode", case, "--batch", str(batch), "--size", f"{h}x{w}",
                                  "--threads", str(threads), "--iters", str(iters), "--warmup", str(args.warmup),
                                  "--classes", str(args.classes), "--json"]
                    runs = [(ours, args.bench)] + ([(base, args.baseline)] if args.baseline else [])
                    for out, exe in (runs if rnd % 2 == 0 else runs[::-1]):
                        out.append(run_json([exe] + bench_args, env))
                t_ms = statistics.median(r["median_ms"] for r in tor)
                o_ms = statistics.median(r["median_ms"] for r in ours)
                t_mb = max(r["peak_rss_mb"] for r in tor)
                o_mb = max(r["peak_rss_mb"] for r in ours)
                row = {"model": model, "case": case, "batch": batch, "threads": threads, "torch_ms": t_ms,
                       "ours_ms": o_ms, "ratio": o_ms / t_ms, "torch_mb": t_mb, "ours_mb": o_mb,
                       "torch_rounds": [r["median_ms"] for r in tor], "ours_rounds": [r["median_ms"] for r in ours]}
                extra = ""
                if args.baseline:
                    b_ms = statistics.median(r["median_ms"] for r in base)
                    b_mb = max(r["peak_rss_mb"] for r in base)
                    o_cpu = statistics.median(r["cpu_ms"] for r in ours)
                    b_cpu = statistics.median(r["cpu_ms"] for r in base)
                    row.update({"base_ms": b_ms, "ours_over_base": o_ms / b_ms, "ours_cpu_ms": o_cpu,
                                "base_cpu_ms": b_cpu, "ours_over_base_cpu": o_cpu / b_cpu, "base_mb": b_mb,
                                "ours_over_base_mb": o_mb / b_mb, "base_rounds": [r["median_ms"] for r in base],
                                "ours_cpu_rounds": [r["cpu_ms"] for r in ours],
                                "base_cpu_rounds": [r["cpu_ms"] for r in base]})
                    extra = f" {b_ms:>10.1f} {o_ms / b_ms:>6.3f} {o_cpu / b_cpu:>8.3f} {b_mb:>8.0f}"
                results.append(row)
                print(f"{model:<13} {case + ' b' + str(batch):<12} {threads:>3} {t_ms:>10.1f} {o_ms:>10.1f} "
                      f"{o_ms / t_ms:>6.2f} {t_mb:>9.0f} {o_mb:>8.0f}" + extra, flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
