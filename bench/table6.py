#!/usr/bin/python3
"""The paper's Table 6 (time, memory and model size of SegNet and its peers), measured on this CPU.

    /usr/bin/python3 bench/table6.py --build build
    /usr/bin/python3 bench/table6.py --build build --models segnet,deeplab-largefov --rounds 3 --json-out t6.json

For each network of the paper's Table 6 (SegNet, DeepLab-LargeFOV, FCN with learnt deconvolutions,
DeconvNet; then any other registry model named in --models) at 3x360x480 and K = 11 classes:
  forward ms      segnet-bench --mode infer, batch 1 (eval mode, the eval fusions on)
  backward ms     segnet-bench --mode train, batch 1, minus the forward: the training step (train-mode
                  forward, loss, backward, SGD update) less the eval forward, an estimate of the
                  backward pass (the paper times Caffe's backward alone)
  training MB     peak resident memory of segnet-bench --mode train at batch --train-batch (4,
                  the paper's training batch)
  inference MB    peak resident memory of segnet-bench --mode infer, batch 1
  model MB        parameters x 4 bytes (FP32), from segnet-architectures --json
each beside the paper's figure (Caffe on a 2015 NVIDIA Titan-class GPU) and as a ratio to SegNet's
in the same column, so that our CPU and their GPU compare in shape, not in absolute terms.
Rounds alternate the models (--rounds, medians reported); every measurement is a fresh process, so
peak memory is that model's own. A network not in this build's registry is listed as not built.
The CPU's model name heads the table and the JSON.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

# Table 6 of Badrinarayanan et al. (TPAMI 2017): forward ms, backward ms, GPU training memory MB,
# GPU inference memory MB, model size MB.
PAPER = {
    "segnet": ("SegNet", 422.50, 488.71, 6803, 1052, 117),
    "deeplab-largefov": ("DeepLab-LargeFOV", 110.06, 160.73, 5618, 1993, 83),
    "fcn-vgg16": ("FCN (learnt deconv)", 317.09, 484.11, 9735, 1806, 539),
    "deconvnet": ("DeconvNet", 474.65, 602.15, 9731, 1872, 877),
}
COLUMNS = ("forward ms", "backward ms", "training MB", "inference MB", "model MB")


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def bench(binary, model, mode, batch, args):
    command = [binary, "--model", model, "--mode", mode, "--batch", str(batch), "--size", args.size,
               "--threads", str(args.threads), "--iters", str(args.iters), "--warmup", "1", "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(command), done.returncode, done.stderr.strip()))
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build", help="the CMake build folder (bench/segnet-bench, examples/segnet-architectures)")
    parser.add_argument("--models", default=",".join(PAPER), help="registry names, comma-separated (default: the paper's four)")
    parser.add_argument("--size", default="360x480")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    segnet_bench = os.path.join(args.build, "bench", "segnet-bench")
    architectures = os.path.join(args.build, "examples", "segnet-architectures")
    for binary in (segnet_bench, architectures):
        if not os.access(binary, os.X_OK):
            sys.exit("table6.py: %s is not built (cmake --build %s --target %s)" % (binary, args.build, os.path.basename(binary)))
    registry = {m["name"]: m for m in json.loads(subprocess.run([architectures, "--json"], capture_output=True,
                                                                 text=True, check=True).stdout)}
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in registry and m not in PAPER]
    if unknown:
        sys.exit("table6.py: --models: %s not in the registry (segnet-architectures lists them)" % ", ".join(unknown))
    built = [m for m in models if m in registry]

    samples = {m: {"forward": [], "step": [], "train_rss": [], "infer_rss": []} for m in built}
    for round_index in range(args.rounds):
        for m in built:
            infer = bench(segnet_bench, m, "infer", 1, args)
            step = bench(segnet_bench, m, "train", 1, args)
            train = bench(segnet_bench, m, "train", args.train_batch, args) if args.train_batch != 1 else step
            s = samples[m]
            s["forward"].append(infer["median_ms"])
            s["step"].append(step["median_ms"])
            s["train_rss"].append(train["peak_rss_mb"])
            s["infer_rss"].append(infer["peak_rss_mb"])
            print("round %d/%d %s: forward %.1f ms, step %.1f ms" % (round_index + 1, args.rounds, m,
                                                                    infer["median_ms"], step["median_ms"]), file=sys.stderr)

    rows = {}
    for m in models:
        if m not in built:
            rows[m] = None
            continue
        s = samples[m]
        forward = statistics.median(s["forward"])
        rows[m] = (forward, statistics.median(s["step"]) - forward, statistics.median(s["train_rss"]),
                   statistics.median(s["infer_rss"]), registry[m]["parameters"] * 4 / 1e6)

    base = rows.get("segnet")
    base_paper = PAPER["segnet"][1:]
    cpu = cpu_name()
    print("Table 6 on %s, %d threads, 3x%s, K = 11; training memory at batch %d; medians of %d round(s)."
          % (cpu, args.threads, args.size, args.train_batch, args.rounds))
    print("Each cell: ours (ratio to our SegNet) | paper (ratio to the paper's SegNet). backward = step - forward.")
    print("| network | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for m in models:
        name = PAPER[m][0] if m in PAPER else m
        cells = []
        for i in range(len(COLUMNS)):
            ours = "not built" if rows[m] is None else "%.0f" % rows[m][i] + (
                " (%.2f)" % (rows[m][i] / base[i]) if base and base[i] else "")
            paper = "" if m not in PAPER else " | %g (%.2f)" % (PAPER[m][i + 1], PAPER[m][i + 1] / base_paper[i])
            cells.append(ours + paper.replace(" | ", " · "))
        print("| %s | %s |" % (name, " | ".join(cells)))
    if args.json_out:
        with open(args.json_out + ".tmp", "w") as f:
            json.dump({"cpu": cpu, "threads": args.threads, "size": args.size, "train_batch": args.train_batch,
                       "rounds": args.rounds, "columns": COLUMNS,
                       "rows": {m: {"ours": rows[m], "paper": PAPER.get(m, (None,))[1:] or None} for m in models}},
                      f, indent=1)
        os.replace(args.json_out + ".tmp", args.json_out)


if __name__ == "__main__":
    main()
