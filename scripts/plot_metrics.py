#!/usr/bin/env python3
"""plot_metrics.py — plot the training and validation loss of an osp run.

usage: plot_metrics.py RUN_DIR | RUN_DIR/metrics.jsonl [--out loss.png] [--log]

Reads metrics.jsonl as written by `osp train`: one JSON object per line,
  {"kind": "train", "step": S, "loss": L, "grad_norm": G, "lr": R, ...}
  {"kind": "val",   "step": S, "val_loss": V}
  {"kind": "note",  "text": "..."}
Non-finite values are written as null and are skipped. A run that crashed and was
resumed (`osp train --resume`) repeats the steps after its last checkpoint; for every
step the LAST entry wins, which is what the resumed run computed. Lines that are not
valid JSON (e.g. a line cut short by a crash) are ignored with a warning.

Writes a PNG (default RUN_DIR/loss.png): train loss per logged step (and its moving
average when there are many points), validation loss as markers, and the learning rate
on a second axis. Needs matplotlib (Agg backend, no display needed).
"""
import argparse
import json
import math
import os
import sys


def read_metrics(path):
    """Returns (train, val, lr) as sorted lists of (step, value); the last entry per step wins."""
    train, val, lr = {}, {}, {}
    bad = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            kind, step = rec.get("kind"), rec.get("step")
            if not isinstance(step, int):
                continue
            if kind == "train":
                train[step] = rec.get("loss")
                lr[step] = rec.get("lr")
            elif kind == "val":
                val[step] = rec.get("val_loss")
    if bad:
        print(f"plot_metrics: warning: {path}: skipped {bad} malformed line(s)", file=sys.stderr)

    def finite(d):
        return sorted((s, float(v)) for s, v in d.items() if isinstance(v, (int, float)) and math.isfinite(v))

    return finite(train), finite(val), finite(lr)


def moving_average(ys, k):
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= k:
            acc -= ys[i - k]
        out.append(acc / min(i + 1, k))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Plot train/validation loss vs step from an osp run's metrics.jsonl.",
        epilog="example: scripts/plot_metrics.py runs/demo --out runs/demo/loss.png",
    )
    ap.add_argument("path", help="run directory (containing metrics.jsonl) or a metrics.jsonl file")
    ap.add_argument("--out", help="output PNG (default: <run dir>/loss.png)")
    ap.add_argument("--log", action="store_true", help="logarithmic loss axis")
    ap.add_argument("--title", help="plot title (default: the run directory)")
    args = ap.parse_args(argv)

    path = args.path
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    if not os.path.isfile(path):
        print(f"plot_metrics: error: {path}: no such file (give a run directory or its metrics.jsonl)",
              file=sys.stderr)
        return 1
    run_dir = os.path.dirname(os.path.abspath(path))
    out = args.out or os.path.join(run_dir, "loss.png")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_metrics: error: matplotlib is not installed; install it with "
              "`apt-get install python3-matplotlib` (or `pip install matplotlib`)", file=sys.stderr)
        return 1

    train, val, lr = read_metrics(path)
    if not train and not val:
        print(f"plot_metrics: error: {path}: no finite train or val losses to plot", file=sys.stderr)
        return 1

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if train:
        xs, ys = zip(*train)
        ax.plot(xs, ys, color="tab:blue", alpha=0.35 if len(ys) > 50 else 0.9, lw=1, label="train loss")
        if len(ys) > 50:
            k = max(5, len(ys) // 50)
            ax.plot(xs, moving_average(list(ys), k), color="tab:blue", lw=1.8, label=f"train loss (mean of {k})")
    if val:
        xs, ys = zip(*val)
        ax.plot(xs, ys, "o-", color="tab:orange", ms=4, lw=1.2, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (flow-matching MSE)")
    if args.log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if lr:
        ax2 = ax.twinx()
        xs, ys = zip(*lr)
        (h,) = ax2.plot(xs, ys, color="gray", ls="--", lw=0.8, label="learning rate")
        ax2.set_ylabel("learning rate", color="gray")
        ax2.tick_params(axis="y", colors="gray")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        handles.append(h)
        labels.append("learning rate")
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    ax.set_title(args.title or os.path.basename(run_dir.rstrip("/")))
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        print(f"plot_metrics: error: {out}: {e.strerror}", file=sys.stderr)
        return 1
    last = f"train loss {train[-1][1]:.5f} at step {train[-1][0]}" if train else "no train loss"
    vlast = f", val loss {val[-1][1]:.5f} at step {val[-1][0]}" if val else ""
    print(f"{len(train)} train / {len(val)} val points ({last}{vlast}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
