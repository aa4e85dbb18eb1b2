#!/usr/bin/env python3
"""probe_text.py -- how much a model trained on the shapes world relies on each prompt word.

For N clips of a shapes-world file (osp data synth: text rows are the words "color shape
moving direction", labels [N,3] = color, shape, direction), it computes the flow-matching loss
(docs/model.md §11: x = (1-s) x0 + s eps, target eps - x0, timestep 1000 s) at fixed noise levels with
`osp forward`, once with the true prompts and once with one word replaced: the colour by another
colour, the shape by another shape, the direction by its opposite (left<->right, up<->down),
and with no text at all (a word with a single value in the file: n/a). Same noise in every
column, so differences are the model's doing.

A word the model uses raises the loss when replaced; a column equal to `true` means the model
ignores that word. Example (the demo's checkpoint):

  /usr/bin/python3 scripts/probe_text.py --ckpt runs/demo/checkpoints/step_00002000/model.safetensors \\
      --data data/shapes_val.h5 --config configs/tiny.yaml
"""
import argparse
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ROW = {"color": 0, "shape": 1, "direction": 3}           # word rows of shapes_embed_prompt
COUNT = {"color": 7, "shape": 3, "direction": 4}
OPPOSITE = {0: 1, 1: 0, 2: 3, 3: 2}                      # left right up down


def main(argv=None):
    ap = argparse.ArgumentParser(description="prompt-word reliance of a shapes-world model", allow_abbrev=False)
    ap.add_argument("--osp", default="build/osp", help="osp binary (default build/osp)")
    ap.add_argument("--ckpt", required=True, help="model.safetensors of a checkpoint")
    ap.add_argument("--data", required=True, help="shapes-world HDF5 file (e.g. data/shapes_val.h5)")
    ap.add_argument("--config", default=None, help="the training config (attention mode, heads, text_len)")
    ap.add_argument("--set", action="append", default=[], help="extra key=value passed to osp forward")
    ap.add_argument("--num", type=int, default=32, help="clips (default 32)")
    ap.add_argument("--sigmas", default="0.6,0.8,0.95", help="noise levels (default 0.6,0.8,0.95)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    with h5py.File(a.data, "r") as f:
        for k in ("latents", "text", "labels"):
            if k not in f:
                sys.exit(f"probe_text: {a.data}: missing dataset `{k}` (not a shapes-world file?)")
        n = min(a.num, f["latents"].shape[0])
        x0 = f["latents"][:n].astype(np.float32)
        text = f["text"][:n].astype(np.float32)
        labels = f["labels"][:n]
        all_text, all_labels = f["text"][()], f["labels"][()]
    # one embedding per (kind, value), taken from the file itself
    vec = {kind: {} for kind in ROW}
    for t, lab in zip(all_text, all_labels):
        for kind, col in (("color", 0), ("shape", 1), ("direction", 2)):
            vec[kind].setdefault(int(lab[col]), t[ROW[kind]])

    def replaced(kind):
        """text with `kind` replaced in every clip, or None when the file has a single value of it"""
        col = {"color": 0, "shape": 1, "direction": 2}[kind]
        have = sorted(vec[kind])
        t = text.copy()
        for i, lab in enumerate(labels):
            v = int(lab[col])
            others = [w for w in have if w != v]
            if not others:
                return None
            # the opposite direction when the file has it, else the next value the file has
            w = OPPOSITE[v] if kind == "direction" and OPPOSITE[v] in have else \
                min(others, key=lambda w: (w - v) % COUNT[kind])
            t[i, ROW[kind]] = vec[kind][w]
        return t

    variants = [("true", text), ("color", replaced("color")), ("shape", replaced("shape")),
                ("direction", replaced("direction")), ("no text", np.zeros_like(text))]
    sets = []
    for s in a.set:
        sets += ["--set", s]
    if a.config:
        sets = ["--config", a.config] + sets
    rng = np.random.default_rng(a.seed)
    print(f"{n} clips of {a.data}, checkpoint {a.ckpt}; loss with the word replaced "
          f"(direction: by its opposite)")
    print("%6s " % "sigma" + " ".join("%10s" % name for name, _ in variants))
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.h5"), os.path.join(tmp, "out.h5")
        for sig in [float(s) for s in a.sigmas.split(",")]:
            eps = rng.standard_normal(x0.shape).astype(np.float32)
            xs = (1 - sig) * x0 + sig * eps
            row = []
            for _, t in variants:
                if t is None:
                    row.append(float("nan"))
                    continue
                with h5py.File(inp, "w") as g:
                    g["latents"] = xs
                    g["timesteps"] = np.full(n, 1000.0 * sig, np.float32)
                    g["text"] = t
                cmd = [a.osp, "forward", "--device", a.device, "--ckpt", a.ckpt, "--inputs", inp, "--out", out] + sets
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit("probe_text: osp forward failed: " + (r.stderr.strip().splitlines() or ["?"])[-1])
                with h5py.File(out, "r") as g:
                    pred = g["out"][()]
                row.append(float(np.mean((pred - (eps - x0)) ** 2)))
            print("%6.2f " % sig + " ".join("%10s" % "n/a" if v != v else "%10.5f" % v for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
