#!/usr/bin/python3
"""Side-by-side timing of segnet-bench and the same networks in PyTorch on this machine.

    /usr/bin/python3 bench/compare_pytorch.py --bench build/bench/segnet-bench
    /usr/bin/python3 bench/compare_pytorch.py --bench ... --threads 2 --models segnet-basic --rounds 3
    /usr/bin/python3 bench/compare_pytorch.py --bench build/bench/segnet-bench --baseline old/build/bench/segnet-bench
    /usr/bin/python3 bench/compare_pytorch.py --bench ... --torch-modes fp32-eager,fp32-jit --cases infer

For every (model, case, threads) it alternates rounds: one PyTorch process per PyTorch mode,
then segnet-bench once per precision, each timing --iters iterations after warm-up, and reports
per precision the median over all rounds of the per-round medians, the ratio ours/PyTorch
(< 1: we are faster) against the fastest PyTorch mode of that precision, and both peak resident
memories. PyTorch's modes (--torch-modes, default all, each in the cases it applies to):
  fp32-eager     eager FP32 (inference under torch.no_grad)
  fp32-jit       inference only: torch.jit.freeze(torch.jit.trace(model.eval())), then
                 torch.jit.optimize_for_inference (torch 1.13 has it); at least 3 warm-up calls,
                 as the profiling executor optimises the graph on the second
  bf16-autocast  torch.autocast("cpu", dtype=torch.bfloat16) with a channels_last model and
                 input; training: forward and loss under autocast, backward, SGD step
Ours runs `--precision fp32` in the fp32 rows (against the faster of fp32-eager and fp32-jit) and
`--precision bf16` in the bf16 rows (against bf16-autocast); the "ran" column is the precision
segnet-bench reports it ran (fp32 on a CPU without BF16 units). The CPU's model name and the
features that matter here (avx2, avx512f, avx512_bf16, amx_bf16, amx_tile, avx512_vnni, from
/proc/cpuinfo) head the table and the JSON. PyTorch's bf16 on a CPU without BF16 units can be
very slow; it still runs, and --skip '*:*:bf16-autocast' leaves it out (ours still runs).
Each PyTorch measurement runs in a fresh process (this script re-invoked with --torch-worker) so
that the peak RSS of one case does not leak into the next. Cases: inference (batch 1, eval mode)
and training (batch 4: forward in train mode, cross-entropy with random labels, backward, SGD
step with momentum, zero_grad).

--baseline PATH adds a second segnet-bench (say, one built from an earlier commit) to the same
alternation: each round runs PyTorch, then ours and the baseline in an order that swaps every
round (so neither always follows PyTorch), with the same arguments (both binaries must accept
them; a baseline built before --precision runs the fp32 rows only). Extra columns: the
baseline's median ms, ours/baseline for the wall-time medians and for the medians of cpu_ms
(process CPU time per iteration and thread, steadier on a busy machine), and the baseline's
peak RSS, whose ratio ours/baseline is in the JSON.

--json-out FILE writes {"cpu": {model_name, cpus, flags}, "torch": version, "size": [h, w],
"torch_modes": [...], "results": [one object per row, with every PyTorch mode's times]}.

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


# PyTorch's modes: the precision each is compared at, the cases it applies to, what it runs.
TORCH_MODES = {
    "fp32-eager": ("fp32", ("infer", "train"), "eager FP32 (torch.no_grad in inference)"),
    "fp32-jit": ("fp32", ("infer",), "torch.jit.trace + torch.jit.freeze + torch.jit.optimize_for_inference, FP32"),
    "bf16-autocast": ("bf16", ("infer", "train"),
                      "torch.autocast('cpu', dtype=torch.bfloat16), channels_last model and input"),
}
PRECISIONS = ("fp32", "bf16")
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")


def cpu_info():
    """The CPU's model name and the features that decide FP32 and bf16 speed, from /proc/cpuinfo."""
    name, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and name == "unknown":
                    name = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model_name": name, "cpus": os.cpu_count(), "flags": {f: f in flags for f in CPU_FLAGS}}


def cpu_line(cpu):
    return (f"cpu: {cpu['model_name']}, {cpu['cpus']} CPUs; "
            + ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in cpu["flags"].items()))


def timed(step, warmup, iters):
    """Runs step() warmup + iters times; the milliseconds of the last iters."""
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def torch_worker(args):
    """Runs in its own process: times one case in one PyTorch mode and prints one JSON line."""
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_torch_models(torch)[args.model](args.classes)
    x = torch.randn(args.batch, 3, args.h, args.w)
    detail = args.torch_mode
    bf16 = args.torch_mode == "bf16-autocast"
    if bf16:  # oneDNN's bf16 convolutions want NHWC
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if args.mode == "infer":
        net.eval()
        warmup = args.warmup
        with torch.no_grad():
            if args.torch_mode == "fp32-jit":
                # trace, not script: script cannot type the (indices, size) stack of the forward.
                frozen = torch.jit.freeze(torch.jit.trace(net, x))
                detail = "trace+freeze"
                if hasattr(torch.jit, "optimize_for_inference"):
                    frozen = torch.jit.optimize_for_inference(frozen)
                    detail += "+optimize_for_inference"
                run = frozen
                warmup = max(warmup, 3)  # the profiling executor optimises the graph on the second call
            else:
                run = net
            if bf16:
                def step():
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        run(x)
            else:
                def step():
                    run(x)
            times = timed(step, warmup, args.iters)
    else:
        net.train()
        labels = torch.randint(0, args.classes, (args.batch, args.h, args.w))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            # bf16: forward and loss under autocast (the loss itself runs in FP32 there), the
            # backward follows the forward's dtypes, FP32 master weights; no loss scaling.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(net(x), labels)
            loss.backward()
            opt.step()
            opt.zero_grad()
        times = timed(step, args.warmup, args.iters)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({"median_ms": statistics.median(times), "min_ms": min(times), "peak_rss_mb": rss,
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "mode": args.torch_mode,
                      "detail": detail}))


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def takes_precision(exe):
    """Whether a segnet-bench binary knows --precision (one built before it does not)."""
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    return "--precision" in out.stdout


def parse_list(text, known, what):
    items = [t.strip() for t in text.split(",") if t.strip()]
    for t in items:
        if t not in known:  # a usage error: exit 2, as argparse does
            print(f"compare_pytorch.py: {what}: '{t}' is not one of {', '.join(known)}", file=sys.stderr)
            sys.exit(2)
    return items


def skipped(skip, model, case, torch_mode=None):
    """--skip entries: MODEL:CASE (the whole case) or MODEL:CASE:TORCH_MODE, '*' matching any."""
    def match(pattern, value):
        return pattern in ("*", value)
    for entry in skip:
        parts = entry.split(":")
        if len(parts) == 2 and match(parts[0], model) and match(parts[1], case):
            return True
        if (len(parts) == 3 and torch_mode and match(parts[0], model) and match(parts[1], case)
                and match(parts[2], torch_mode)):
            return True
    return False


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
    p.add_argument("--warmup", type=int, default=1, help="warm-up iterations (fp32-jit: at least 3)")
    p.add_argument("--rounds", type=int, default=2, help="alternating PyTorch/segnet rounds per case")
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--torch-modes", default=",".join(TORCH_MODES),
                   help="PyTorch modes to time, each where it applies: " + "; ".join(
                       f"{m}: {d} ({'/'.join(c)})" for m, (_, c, d) in TORCH_MODES.items())
                   + ". Ours runs --precision fp32 against the fp32 modes and bf16 against bf16-autocast")
    p.add_argument("--skip", default="", help="comma list of MODEL:CASE (skip the case) or MODEL:CASE:TORCH_MODE "
                   "(skip that PyTorch mode there; ours still runs), '*' for any: segnet:train, *:*:bf16-autocast")
    p.add_argument("--json-out", default="", help="write the CPU, the PyTorch version and all results to this file")
    p.add_argument("--baseline", default="", help="a second segnet-bench (e.g. an earlier build) timed in the same "
                   "alternation; adds its ms, the ratios ours/baseline (wall, cpu_ms) and its peak RSS")
    # internal: one PyTorch measurement
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torch-mode", default="fp32-eager", help=argparse.SUPPRESS)
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
    torch_modes = parse_list(args.torch_modes, list(TORCH_MODES), "--torch-modes")
    cases = parse_list(args.cases, ["infer", "train"], "--cases")
    for flag, exe in (("--bench", args.bench), ("--baseline", args.baseline)):
        if exe and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            print(f"compare_pytorch.py: {flag} '{exe}' is not an executable file (build segnet-bench first)",
                  file=sys.stderr)
            sys.exit(2)
    cpu = cpu_info()
    bf16_units = cpu["flags"]["avx512_bf16"] or cpu["flags"]["amx_bf16"]
    precisions = [q for q in PRECISIONS if any(TORCH_MODES[m][0] == q for m in torch_modes)]
    if "bf16" in precisions and not takes_precision(args.bench):
        print(f"compare_pytorch.py: --bench {args.bench} does not take --precision; build segnet-bench from this "
              "tree, or --torch-modes fp32-eager,fp32-jit", file=sys.stderr)
        sys.exit(2)
    # Each binary gets --precision only when it knows it: a baseline built before the option runs
    # its FP32 (its only precision) and sits out the bf16 rows.
    flags = {exe: takes_precision(exe) for exe in [args.bench] + ([args.baseline] if args.baseline else [])}
    results = []
    print(cpu_line(cpu))
    print(f"machine: {os.uname().nodename}; load {os.getloadavg()[0]:.2f}; size 3x{h}x{w}; PyTorch modes: "
          + ", ".join(torch_modes))
    if "bf16-autocast" in torch_modes and not bf16_units:
        print("note: this CPU has no BF16 units (avx512_bf16, amx_bf16): PyTorch's bf16 may be very slow here; "
              "--skip '*:*:bf16-autocast' leaves it out")
    if args.baseline:
        print(f"ours: {args.bench}; baseline: {args.baseline}"
              + ("" if flags[args.baseline] else " (no --precision: FP32 rows only)"))
    print(f"{'model':<13} {'case':<9} {'thr':>3} {'prec':<4} {'ran':<4} {'ours ms':>9} {'torch ms':>9} "
          f"{'ratio':>6} {'best torch':<13} {'ours MB':>7} {'torch MB':>8}"
          + (f" {'base ms':>9} {'/base':>6} {'cpu/base':>8} {'base MB':>7}" if args.baseline else "")
          + "  PyTorch modes (ms)")
    torch_version = None
    for model in args.models.split(","):
        for case in cases:
            if skipped(skip, model, case):
                continue
            batch = args.infer_batch if case == "infer" else args.train_batch
            iters = args.iters or (5 if case == "infer" else 2)
            applicable = [m for m in torch_modes if case in TORCH_MODES[m][1]]
            case_precisions = [q for q in precisions if any(TORCH_MODES[m][0] == q for m in applicable)]
            timed_modes = [m for m in applicable if not skipped(skip, model, case, m)]
            for threads in (int(t) for t in args.threads.split(",")):
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                tor = {m: [] for m in timed_modes}
                ours = {q: [] for q in case_precisions}
                base = {q: [] for q in case_precisions}
                for rnd in range(args.rounds):
                    for m in timed_modes:
                        tor[m].append(run_json([sys.executable, os.path.abspath(__file__), "--torch-worker",
                                                "--torch-mode", m, "--model", model, "--mode", case, "--batch",
                                                str(batch), "--h", str(h), "--w", str(w), "--threads", str(threads),
                                                "--iters", str(iters), "--warmup", str(args.warmup), "--classes",
                                                str(args.classes)], env))
                    bench_args = ["--model", model, "--mode", case, "--batch", str(batch), "--size", f"{h}x{w}",
                                  "--threads", str(threads), "--iters", str(iters), "--warmup", str(args.warmup),
                                  "--classes", str(args.classes), "--json"]
                    for q in case_precisions:
                        runs = [(ours[q], args.bench)]
                        if args.baseline and (flags[args.baseline] or q == "fp32"):
                            runs.append((base[q], args.baseline))
                        for out, exe in (runs if rnd % 2 == 0 else runs[::-1]):
                            out.append(run_json([exe] + bench_args + (["--precision", q] if flags[exe] else []), env))
                for q in case_precisions:
                    row = precision_row(model, case, batch, threads, q, ours[q], base[q],
                                        {m: tor[m] for m in timed_modes if TORCH_MODES[m][0] == q})
                    torch_version = torch_version or next((r["torch"] for m in timed_modes for r in tor[m]), None)
                    results.append(row)
                    print(format_row(row, args.baseline), flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"cpu": cpu, "torch": torch_version, "size": [h, w], "torch_modes": torch_modes,
                       "results": results}, f, indent=1)


def precision_row(model, case, batch, threads, precision, ours, base, tor):
    """One row: ours at `precision` against the fastest PyTorch mode of that precision (by the
    median over rounds of the per-round medians), and the baseline when it ran."""
    o_ms = statistics.median(r["median_ms"] for r in ours)
    o_mb = max(r["peak_rss_mb"] for r in ours)
    modes = {m: {"median_ms": statistics.median(r["median_ms"] for r in rs),
                 "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                 "rounds": [r["median_ms"] for r in rs], "detail": rs[0]["detail"]}
             for m, rs in tor.items()}
    best = min(modes, key=lambda m: modes[m]["median_ms"]) if modes else None
    row = {"model": model, "case": case, "batch": batch, "threads": threads, "precision": precision,
           # what segnet-bench ran: fp32 for a bf16 request on a CPU without BF16 units
           "ours_ran": ours[0].get("precision", "fp32"), "ours_ms": o_ms, "ours_mb": o_mb,
           "ours_rounds": [r["median_ms"] for r in ours], "torch_modes": modes, "torch_best": best,
           "torch_ms": modes[best]["median_ms"] if best else None,
           "torch_mb": modes[best]["peak_rss_mb"] if best else None,
           "ratio": o_ms / modes[best]["median_ms"] if best else None}
    if base:
        b_ms = statistics.median(r["median_ms"] for r in base)
        b_mb = max(r["peak_rss_mb"] for r in base)
        o_cpu = statistics.median(r["cpu_ms"] for r in ours)
        b_cpu = statistics.median(r["cpu_ms"] for r in base)
        row.update({"base_ms": b_ms, "ours_over_base": o_ms / b_ms, "ours_cpu_ms": o_cpu,
                    "base_cpu_ms": b_cpu, "ours_over_base_cpu": o_cpu / b_cpu, "base_mb": b_mb,
                    "ours_over_base_mb": o_mb / b_mb, "base_rounds": [r["median_ms"] for r in base],
                    "ours_cpu_rounds": [r["cpu_ms"] for r in ours],
                    "base_cpu_rounds": [r["cpu_ms"] for r in base]})
    return row


def format_row(row, with_baseline):
    def num(v, fmt):  # fmt: ">W.Pf"; a missing value is "-" in the same width
        return format("-", fmt.split(".")[0]) if v is None else format(v, fmt)
    text = (f"{row['model']:<13} {row['case'] + ' b' + str(row['batch']):<9} {row['threads']:>3} "
            f"{row['precision']:<4} {row['ours_ran']:<4} {row['ours_ms']:>9.1f} {num(row['torch_ms'], '>9.1f')} "
            f"{num(row['ratio'], '>6.2f')} {row['torch_best'] or '-':<13} {row['ours_mb']:>7.0f} "
            f"{num(row['torch_mb'], '>8.0f')}")
    if with_baseline:
        if "base_ms" in row:
            text += (f" {row['base_ms']:>9.1f} {row['ours_over_base']:>6.3f} {row['ours_over_base_cpu']:>8.3f} "
                     f"{row['base_mb']:>7.0f}")
        else:
            text += f" {'-':>9} {'-':>6} {'-':>8} {'-':>7}"
    modes = ", ".join(f"{m} {v['median_ms']:.1f}" for m, v in row["torch_modes"].items())
    return text + "  " + (modes or "skipped")


if __name__ == "__main__":
    sys.exit(main())
