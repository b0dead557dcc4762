#!/usr/bin/python3
"""Plot a segnet-train log (log.csv): training loss and the validation metrics per epoch.

    /usr/bin/python3 scripts/plot_training_log.py runs/camvid-segnet-basic/log.csv -o models/segnet-basic-camvid.png \
        [--title "SegNet-Basic on CamVid"] [--target G=82.7 C=62.0 mIoU=47.7 BF=35.78]

Needs Debian's python3-matplotlib (call /usr/bin/python3: the Debian packages belong to it).
The CSV is what segnet-train writes: epoch, lr, train_loss, val_global_accuracy,
val_class_accuracy, val_mean_iou, val_bf, seconds. A resumed run appends to the same file; if an
epoch appears twice (a run restarted from an earlier checkpoint) the later line wins.
"""
import argparse
import csv
import sys

METRICS = [("val_global_accuracy", "G"), ("val_class_accuracy", "C"), ("val_mean_iou", "mIoU"), ("val_bf", "BF")]


def read_log(path):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit(f"plot_training_log: cannot read '{path}': {e.strerror}")
    needed = {"epoch", "lr", "train_loss"} | {key for key, _ in METRICS}
    if not rows or not needed <= set(rows[0]):
        sys.exit(f"plot_training_log: '{path}' is not a segnet-train log (columns {', '.join(sorted(needed))})")
    by_epoch = {}
    for line, row in enumerate(rows, start=2):
        try:
            by_epoch[int(row["epoch"])] = {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
        except ValueError:
            sys.exit(f"plot_training_log: '{path}' line {line}: not a number in {row}")
    return [by_epoch[e] for e in sorted(by_epoch)]


def parse_targets(items):
    targets = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in {short for _, short in METRICS} or not value:
            sys.exit(f"plot_training_log: --target expects NAME=VALUE with NAME in G, C, mIoU, BF; got '{item}'")
        targets[name] = float(value)
    return targets


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", help="log.csv written by segnet-train")
    ap.add_argument("-o", "--out", required=True, help="output PNG")
    ap.add_argument("--title", default="segnet-train")
    ap.add_argument("--target", nargs="*", help="reference values drawn as dashed lines, e.g. G=82.7 mIoU=47.7")
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(args.log)
    targets = parse_targets(args.target)
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], color="black", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("weighted cross-entropy")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(epochs, [r["lr"] for r in rows], color="tab:gray", linestyle=":", label="learning rate")
    ax_lr.set_ylabel("learning rate (last step of the epoch)")
    ax_loss.legend(loc="upper right")
    ax_lr.legend(loc="center right")
    ax_loss.set_title("training")

    colors = dict(zip([short for _, short in METRICS], ["tab:blue", "tab:orange", "tab:green", "tab:red"]))
    for key, short in METRICS:
        values = [r[key] for r in rows]
        if all(v is None for v in values):
            continue
        ax_val.plot(epochs, values, color=colors[short], label=short)
        if short in targets:
            ax_val.axhline(targets[short], color=colors[short], linestyle="--", linewidth=0.8)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("%")
    ax_val.set_ylim(0, 100)
    ax_val.legend(loc="lower right", ncol=2)
    ax_val.set_title("validation" + (" (dashed: target)" if targets else ""))
    fig.suptitle(args.title)
    fig.tight_layout()
    try:
        fig.savefig(args.out)
    except OSError as e:
        sys.exit(f"plot_training_log: cannot write '{args.out}': {e.strerror}")
    print(f"plot_training_log: {len(rows)} epochs -> {args.out}")


if __name__ == "__main__":
    main()
