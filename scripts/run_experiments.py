#!/usr/bin/env python3
"""Trains (or resumes) every model of an experiment plan, evaluates each checkpoint and writes
the comparison as Markdown and JSON: one command reruns Table 1 or your own variants.

    scripts/run_experiments.py experiments/table1.json --data ../shared/data/camvid
    scripts/run_experiments.py PLAN --data DIR [--out DIR] [--bin DIR] [--only a,b] [--table-only]

Run it again at any time: finished runs are not retrained, interrupted ones resume exactly from
their last.safetensors (segnet-train --resume), and evaluations already made for a checkpoint
are reused. Ctrl-C stops the current training at the next batch (its checkpoint is saved) and
the script exits 130. Training can take days: run it niced (`nice -n 19 scripts/...`).

The plan (JSON; docs/experiments.md section 7 describes every key):
    {"title": "...", "train": "train.txt", "val": "val.txt", "epochs": 120,
     "stages": [{"until": 100, "size": "180x240"}, {"until": 120}],
     "args": ["--augment", "--schedule", "poly", "--val-size", "native"],
     "runs": [{"name": "segnet-basic", "model": "segnet-basic", "args": ["--balance", "median"]}],
     "paper": {"segnet-basic": {"G": 82.7, "C": 62.0, "mIoU": 47.7, "BF": 35.78}},
     "bench": {"size": "360x480", "threads": 2, "iters": 5}}
Each stage trains up to epoch `until` with its own --size (none: the images' own size), on the
schedule of `epochs` (segnet-train --stop-after). Outputs go to OUT/<run name>/ (segnet-train's
folder, plus val.json, train.json and bench.json), and OUT/table.md, OUT/table.json.

Exit status: 0 done, 1 a program failed (its message is printed), 2 bad usage or a bad plan,
130 interrupted.
"""
import argparse
import json
import os
import signal
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = (("G", "global_accuracy"), ("C", "class_accuracy"), ("mIoU", "mean_iou"), ("BF", "bf"))


class PlanError(Exception):
    pass


def fail(status, message):
    print("run_experiments: " + message, file=sys.stderr)
    sys.exit(status)


def load_plan(path):
    try:
        with open(path) as f:
            plan = json.load(f)
    except OSError as e:
        raise PlanError("%s: cannot read (%s)" % (path, e.strerror))
    except json.JSONDecodeError as e:
        raise PlanError("%s: not JSON (%s)" % (path, e))
    where = path + ": "
    if not isinstance(plan, dict):
        raise PlanError(where + "expected an object")
    for key in ("train", "epochs", "runs"):
        if key not in plan:
            raise PlanError(where + "'%s' is missing" % key)
    if not isinstance(plan["epochs"], int) or plan["epochs"] < 1:
        raise PlanError(where + "'epochs' must be a positive integer")
    stages = plan.setdefault("stages", [{"until": plan["epochs"]}])
    previous = 0
    for i, stage in enumerate(stages):
        until = stage.get("until") if isinstance(stage, dict) else None
        if not isinstance(until, int) or until <= previous or until > plan["epochs"]:
            raise PlanError(where + "stage %d: 'until' must rise and stay within 1..epochs (%d)" % (i + 1, plan["epochs"]))
        previous = until
    if previous != plan["epochs"]:
        raise PlanError(where + "the last stage must end at 'epochs' (%d), not %d" % (plan["epochs"], previous))
    names = set()
    if not isinstance(plan["runs"], list) or not plan["runs"]:
        raise PlanError(where + "'runs' must be a non-empty list")
    for run in plan["runs"]:
        if not isinstance(run, dict) or not run.get("name") or not run.get("model"):
            raise PlanError(where + "every run needs a 'name' and a 'model'")
        if run["name"] in names or "/" in run["name"]:
            raise PlanError(where + "run name '%s' is repeated or holds a '/'" % run["name"])
        names.add(run["name"])
        for key in ("args",):
            if not all(isinstance(a, str) for a in run.get(key, [])):
                raise PlanError(where + "run '%s': 'args' must be strings" % run["name"])
    if not all(isinstance(a, str) for a in plan.get("args", [])):
        raise PlanError(where + "'args' must be strings")
    return plan


def checkpoint_metadata(path):
    """The string metadata of a safetensors file (segnet checkpoints keep epoch, model, ...)."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        if size > 100_000_000:
            raise ValueError("%s: header of %d bytes is not a safetensors header" % (path, size))
        return json.loads(f.read(size)).get("__metadata__", {})


def checkpoint_parameters(path):
    """Learnable scalars in a checkpoint (optimizer state and batch-norm statistics excluded)."""
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    count = 0
    for name, tensor in header.items():
        if name == "__metadata__" or name.startswith("optimizer.") or name.endswith(("running_mean", "running_var")):
            continue
        size = 1
        for d in tensor["shape"]:
            size *= d
        count += size
    return count


def epochs_done(out):
    last = os.path.join(out, "last.safetensors")
    return int(checkpoint_metadata(last).get("epoch", 0)) if os.path.exists(last) else 0


def run_program(command):
    """Runs a segnet program; exits like it on failure (1, 2) or interruption (130)."""
    print("+ " + " ".join(command), flush=True)
    status = subprocess.call(command)
    if status == 130 or status == -signal.SIGINT:
        fail(130, "interrupted; run the same command again to resume")
    if status != 0:
        fail(1 if status != 2 else 2, "%s exited with status %d" % (os.path.basename(command[0]), status))


def train(plan, run, out, data, bin_dir):
    done = epochs_done(out)
    for stage in plan["stages"]:
        if stage["until"] <= done:
            continue
        command = [os.path.join(bin_dir, "segnet-train")]
        if os.path.exists(os.path.join(out, "last.safetensors")):  # also a run stopped inside its first epoch
            command += ["--resume", os.path.join(out, "last.safetensors")]
        else:
            command += ["--model", run["model"]]
        command += ["--train", os.path.join(data, plan["train"]), "--out", out, "--epochs", str(plan["epochs"])]
        if plan.get("val"):
            command += ["--val", os.path.join(data, plan["val"])]
        if stage["until"] < plan["epochs"]:
            command += ["--stop-after", str(stage["until"])]
        if stage.get("size"):
            command += ["--size", stage["size"]]
        command += plan.get("args", []) + run.get("args", []) + stage.get("args", [])
        run_program(command)
        done = epochs_done(out)


def fresh(result, source):
    return os.path.exists(result) and os.path.getmtime(result) >= os.path.getmtime(source)


def evaluate(plan, out, data, bin_dir, split):
    """segnet-evaluate's JSON for the run's selected checkpoint on one split (cached)."""
    checkpoint = os.path.join(out, "best.safetensors")
    if not os.path.exists(checkpoint):
        checkpoint = os.path.join(out, "last.safetensors")
    result = os.path.join(out, split + ".json")
    if not fresh(result, checkpoint):
        command = [os.path.join(bin_dir, "segnet-evaluate"), "--weights", checkpoint, "--list",
                   os.path.join(data, plan[split]), "--json", result + ".tmp"]
        if plan.get("eval_size"):
            command += ["--size", plan["eval_size"]]
        run_program(command)
        os.replace(result + ".tmp", result)
    with open(result) as f:
        scores = json.load(f)
    scores["checkpoint"] = os.path.basename(checkpoint)
    scores["epoch"] = int(checkpoint_metadata(checkpoint).get("epoch", 0))
    return scores


def bench(plan, run, out, bin_dir):
    """Median CPU inference time of the run's model (segnet-bench, batch 1; cached)."""
    options = plan.get("bench", {})
    result = os.path.join(out, "bench.json")
    if not os.path.exists(result):
        command = [os.path.join(bin_dir, "segnet-bench"), "--model", run["model"], "--size", options.get("size", "360x480"),
                   "--iters", str(options.get("iters", 5)), "--threads", str(options.get("threads", 2)),
                   "--precision", options.get("precision", "fp32"), "--json"]
        print("+ " + " ".join(command), flush=True)
        try:
            text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            fail(1, "segnet-bench failed for %s: %s" % (run["model"], getattr(e, "stderr", "") or e))
        with open(result + ".tmp", "w") as f:
            f.write(text)
        os.replace(result + ".tmp", result)
    with open(result) as f:
        return json.load(f)


def architectures(bin_dir):
    text = subprocess.run([os.path.join(bin_dir, "segnet-architectures"), "--json"], check=True,
                          capture_output=True, text=True).stdout
    return {row["name"]: row for row in json.loads(text)}


def cell(value, digits=2):
    return "-" if value is None else "%.*f" % (digits, value)


def write_table(plan, rows, out):
    """OUT/table.json (everything) and OUT/table.md (ours beside the paper's test figures)."""
    with open(os.path.join(out, "table.json.tmp"), "w") as f:
        json.dump({"title": plan.get("title", ""), "epochs": plan["epochs"], "stages": plan["stages"],
                   "args": plan.get("args", []), "runs": rows}, f, indent=1)
    os.replace(os.path.join(out, "table.json.tmp"), os.path.join(out, "table.json"))
    bench_options = plan.get("bench", {})
    lines = ["# " + plan.get("title", "Experiment"), "",
             "Written by `scripts/run_experiments.py`. Ours: the checkpoint selected by val G, evaluated on "
             "val and on train; paper: its test split. CPU ms: segnet-bench, batch 1, %s, %d threads, median."
             % (bench_options.get("size", "360x480"), bench_options.get("threads", 2)), "",
             "| run | params (M) | storage | CPU ms | epochs | val G | val C | val mIoU | val BF | train G | train C "
             "| train mIoU | paper G | paper C | paper mIoU | paper BF |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        val, trn, paper = r.get("val") or {}, r.get("train") or {}, r.get("paper") or {}
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["name"], cell(r["parameters"] / 1e6 if r.get("parameters") else None, 3),
            "n/a" if r.get("storage_multiplier") == "n/a" else r.get("storage_multiplier", "-"),
            cell(r.get("cpu_ms"), 0), "%d/%d" % (r["epochs_done"], plan["epochs"]),
            *(cell(val.get(key)) for _, key in METRICS), *(cell(trn.get(key)) for _, key in METRICS[:3]),
            *(cell(paper.get(short)) for short, _ in METRICS)))
    with open(os.path.join(out, "table.md.tmp"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(os.path.join(out, "table.md.tmp"), os.path.join(out, "table.md"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", help="experiment plan (JSON)")
    parser.add_argument("--data", required=True, help="folder the plan's list files are in")
    parser.add_argument("--out", help="output folder (default: experiments/<plan name without .json>)")
    parser.add_argument("--bin", default=os.path.join(ROOT, "build"), help="build folder (default: build/)")
    parser.add_argument("--only", help="comma-separated run names")
    parser.add_argument("--table-only", action="store_true", help="train nothing; evaluate finished runs, write the table")
    args = parser.parse_args()
    try:
        plan = load_plan(args.plan)
    except PlanError as e:
        fail(2, str(e))
    runs = plan["runs"]
    if args.only:
        wanted = args.only.split(",")
        unknown = [w for w in wanted if w not in {r["name"] for r in runs}]
        if unknown:
            fail(2, "--only: no run named '%s' in %s" % (unknown[0], args.plan))
        runs = [r for r in runs if r["name"] in wanted]
    out = args.out or os.path.join(ROOT, "experiments", os.path.splitext(os.path.basename(args.plan))[0])
    bins = {name: os.path.join(args.bin, sub, name) for name, sub in
            (("segnet-train", "examples"), ("segnet-evaluate", "examples"), ("segnet-architectures", "examples"),
             ("segnet-bench", "bench"))}
    have_bench = os.access(bins.pop("segnet-bench"), os.X_OK)  # optional: the CPU ms column
    missing = [p for p in bins.values() if not os.access(p, os.X_OK)]
    if missing:
        fail(2, "%s: not built (cmake --build %s --target %s)" % (missing[0], args.bin, os.path.basename(missing[0])))
    for needed in [plan["train"]] + ([plan["val"]] if plan.get("val") else []):
        if not os.path.isfile(os.path.join(args.data, needed)):
            fail(2, "%s: no such list file (--data)" % os.path.join(args.data, needed))
    if not have_bench:
        print("run_experiments: no %s: the CPU ms column stays empty (build the segnet-bench target)"
              % os.path.join(args.bin, "bench", "segnet-bench"), file=sys.stderr)
    os.makedirs(out, exist_ok=True)
    counts = architectures(os.path.dirname(bins["segnet-architectures"]))
    rows = []
    for run in runs:
        run_out = os.path.join(out, run["name"])
        bin_dir = os.path.dirname(bins["segnet-train"])
        if not args.table_only:
            train(plan, run, run_out, args.data, bin_dir)
        row = {"name": run["name"], "model": run["model"], "args": run.get("args", []),
               "epochs_done": epochs_done(run_out), "paper": plan.get("paper", {}).get(run["name"])}
        last = os.path.join(run_out, "last.safetensors")
        if os.path.exists(last):
            row["parameters"] = checkpoint_parameters(last)
            # segnet-architectures counts at 11 classes; a K-channel skip (FCN-Basic) stores K
            if checkpoint_metadata(last).get("classes") == "11":
                row["storage_multiplier"] = counts.get(run["model"], {}).get("storage_multiplier")
        if row["epochs_done"] == plan["epochs"]:
            row["val"] = evaluate(plan, run_out, args.data, bin_dir, "val") if plan.get("val") else None
            row["train"] = evaluate(plan, run_out, args.data, bin_dir, "train")
            if have_bench:
                row["cpu_ms"] = bench(plan, run, run_out, os.path.join(args.bin, "bench"))["median_ms"]
        rows.append(row)
        write_table(plan, rows, out)
    print(open(os.path.join(out, "table.md")).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
