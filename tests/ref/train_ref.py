"""train_ref.py -- an independent float64 PyTorch re-implementation of `osp train` (flow matching
+ AdamW), used by tests/test_ref_train.sh to check osp's training step end to end.

  python3 train_ref.py make  --out DIR --seed S --set key=value ...
      DIR/init.safetensors  random Wan2.1 weights (original keys, F32) for `osp train --init`
      DIR/train.h5          random latents [N,C,T,H,W] and text [N,L,Dt] (float32)
  python3 train_ref.py check --init DIR/init.safetensors --data DIR/train.h5 --run RUN_DIR \
                             --set key=value ... [--perturb key=value] [--tol-* X]
      trains the same model from the same weights on the same batches in float64 and compares
      with osp's run: per-step loss, gradient norm and learning rate (metrics.jsonl), and every
      tensor of the last checkpoint's model.safetensors and ema.safetensors. Exit 1 on failure.

The --set list is the same one given to `osp train`; every setting the reference needs must be
in it (no defaults are taken from osp). The model is wan_ref.forward (float64 autograd). What is
reproduced, from the documented contracts (train/flow.h, data/dataset.h, optim/adamw.h):
  - sample order: per epoch e, a Fisher-Yates shuffle of the N rows, draw i = splitmix64(key+i),
    key = key3(seed, e, 1); batch j takes perm[j*B .. j*B+B-1]; the N mod B rest is dropped;
    the (one-bucket) batch order is shuffled with key3(seed, e, 0x5C4ED0E5).
  - noise: counter-based Box-Muller on flow_key(seed, step, mb*65536); sigma of sample i from
    flow_key(seed, step, mb*65536+i+1) (logit-normal or uniform, then shifted); timestep
    1000*sigma (fp32); text dropout drawn from flow_key(seed, step, 0xd709) number mb*65536+i.
  - x_sigma = (1-sigma) x0 + sigma eps, target = eps - x0, loss = mean squared error over the
    micro-batch, micro-batch losses and gradients averaged over grad_accum.
  - lr: linear warm-up lr*(step+1)/warmup, then constant or cosine to min_lr at `steps`.
  - AdamW: global-norm clipping (scale clip/norm when norm > clip), m, v, bias correction
    1-beta^t, p -= lr * (m_hat/(sqrt(v_hat)+eps) + wd*p) on every parameter; EMA
    e = d*e + (1-d)*p after each update, starting from the initial weights.
Hyper-parameters are rounded to float32 first (osp stores them as float); all arithmetic is
float64. The random numbers use Python's math (the same libm as osp), so the batches, noise
and sigmas are those osp drew, up to its float32 roundings.
"""
import argparse
import json
import math
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.dont_write_bytecode = True   # keep the source tree clean when run from ctest
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref  # noqa: E402

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15

# ----------------------------------------------------------------------------------------
# counter-based random numbers (train/flow.c, data/dataset.c contracts)


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def splitmix64(x):
    return _mix64((x + GOLDEN) & M64)


def flow_key(seed, a, b):
    k = _mix64((seed + GOLDEN) & M64)
    k = _mix64(k ^ ((a * 0xD1B54A32D192ED03) & M64))
    return _mix64(k ^ ((b * 0x8CB92BA72F3D8DD7 + 1) & M64))


def flow_uniform(key, i):
    return (_mix64((key + (i + 1) * GOLDEN) & M64) >> 11) * (1.0 / 9007199254740992.0)


def flow_randn(n, key):
    """n standard normals of stream `key`, rounded to float32 as osp stores them."""
    out = np.empty(n, dtype=np.float32)
    for p in range((n + 1) // 2):
        u, v = flow_uniform(key, 2 * p), flow_uniform(key, 2 * p + 1)
        u = max(u, 1e-300)
        r, a = math.sqrt(-2.0 * math.log(u)), 6.283185307179586 * v
        out[2 * p] = r * math.cos(a)
        if 2 * p + 1 < n:
            out[2 * p + 1] = r * math.sin(a)
    return out


def f32(x):
    return float(np.float32(x))


def train_sigma(logit_normal, mean, std, shift, key):
    if logit_normal:
        z = float(flow_randn(1, key)[0])
        s = 1.0 / (1.0 + math.exp(-(mean + std * z)))
    else:
        s = flow_uniform(key, 0)
    return f32(shift * s / (1.0 + (shift - 1.0) * s))


def shuffle(v, key):
    v = list(v)
    for i in range(len(v) - 1, 0, -1):
        j = splitmix64((key + i) & M64) % (i + 1)
        v[i], v[j] = v[j], v[i]
    return v


def key3(seed, a, b):
    return splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b)


def batch_rows(seed, n, B, pos):
    """Rows of batch number `pos` (since epoch 0) of a one-bucket file of n samples."""
    steps = n // B
    e, s = divmod(pos, steps)
    perm = shuffle(range(n), key3(seed, e, 1))
    order = shuffle(range(steps), key3(seed, e, 0x5C4ED0E5))
    j = order[s]
    return perm[j * B:(j + 1) * B]


def lr_at(step, h):
    lr, min_lr, warmup, total = h["lr"], h["min_lr"], h["warmup"], h["steps"]
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if h["schedule"] == "constant" or total <= warmup:
        return lr
    p = min(1.0, (step - warmup) / (total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------------------
# settings


MODEL_KEYS = ["model.dim", "model.ffn_dim", "model.num_heads", "model.num_layers", "model.in_channels",
              "model.out_channels", "model.text_dim", "model.text_len", "model.freq_dim", "model.patch",
              "model.eps", "model.pos_embed", "model.attention.mode", "model.attention.sparse_ratio",
              "model.attention.num_full_blocks"]
TRAIN_KEYS = ["seed", "train.steps", "train.batch_size", "train.grad_accum", "train.lr", "train.min_lr",
              "train.weight_decay", "train.beta1", "train.beta2", "train.adam_eps", "train.grad_clip",
              "train.ema_decay", "train.warmup", "train.schedule", "train.sigma_sampling", "train.logit_mean",
              "train.logit_std", "train.shift", "train.text_dropout"]


def parse_sets(sets, need):
    d = {}
    for s in sets:
        k, sep, v = s.partition("=")
        if not sep:
            sys.exit("train_ref: --set %s: expected key=value" % s)
        d[k] = v
    missing = [k for k in need if k not in d]
    if missing:
        sys.exit("train_ref: --set must give %s" % ", ".join(missing))
    return d


def model_config(d):
    patch = [int(x) for x in d["model.patch"].strip("[]").split(",")]
    return wan_ref.make_config(
        dim=int(d["model.dim"]), num_heads=int(d["model.num_heads"]), ffn_dim=int(d["model.ffn_dim"]),
        num_layers=int(d["model.num_layers"]), in_dim=int(d["model.in_channels"]),
        out_dim=int(d["model.out_channels"]), text_dim=int(d["model.text_dim"]),
        text_len=int(d["model.text_len"]), freq_dim=int(d["model.freq_dim"]), patch_size=patch,
        eps=f32(d["model.eps"]), mode=d["model.attention.mode"],
        sparse_ratio=int(d["model.attention.sparse_ratio"]),
        num_full_blocks=int(d["model.attention.num_full_blocks"]),
        pos_sincos=d["model.pos_embed"] == "rope+sincos")


def train_hparams(d):
    h = {}
    for k in ("train.lr", "train.min_lr", "train.weight_decay", "train.beta1", "train.beta2", "train.adam_eps",
              "train.grad_clip", "train.ema_decay", "train.logit_mean", "train.logit_std", "train.shift",
              "train.text_dropout"):
        h[k[6:]] = f32(d[k])                  # osp keeps these as float
    for k in ("train.steps", "train.batch_size", "train.grad_accum", "train.warmup"):
        h[k[6:]] = int(d[k])
    h["seed"] = int(d["seed"]) & M64
    h["schedule"], h["sigma_sampling"] = d["train.schedule"], d["train.sigma_sampling"]
    assert h["schedule"] in ("constant", "cosine") and h["sigma_sampling"] in ("logit_normal", "uniform")
    return h


# ----------------------------------------------------------------------------------------
# the reference trainer


def train(params, cfg, h, latents, text, log=print):
    """params {key: float64}, latents [N,C,T,H,W] / text [N,L,Dt] float32 numpy. Returns the
    per-step records (loss, grad_norm, lr, clipped), final params and EMA."""
    p = {k: v.clone() for k, v in params.items()}
    ema = {k: v.clone() for k, v in params.items()}
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v2 = {k: torch.zeros_like(v) for k, v in params.items()}
    N, B, GA, seed = latents.shape[0], h["batch_size"], h["grad_accum"], h["seed"]
    if N // B < 1:
        sys.exit("train_ref: %d samples < batch size %d" % (N, B))
    n = int(np.prod(latents.shape[1:]))
    Lt, Dt = cfg["text_len"], cfg["text_dim"]
    b1, b2, eps, wd = h["beta1"], h["beta2"], h["adam_eps"], h["weight_decay"]
    logit = h["sigma_sampling"] == "logit_normal"
    records, pos, dropped = [], 0, 0
    for step in range(h["steps"]):
        lr = lr_at(step, h)
        q = {k: t.detach().clone().requires_grad_(True) for k, t in p.items()}
        loss_sum = 0.0
        for mb in range(GA):
            rows = batch_rows(seed, N, B, pos)
            pos += 1
            x0 = torch.from_numpy(latents[rows].astype(np.float64))
            txt = np.zeros((B, Lt, Dt))
            txt[:, :text.shape[1]] = text[rows]
            for i in range(B):
                if h["text_dropout"] > 0 and \
                        flow_uniform(flow_key(seed, step, 0xd709), mb * 65536 + i) < h["text_dropout"]:
                    txt[i] = 0.0
                    dropped += 1
            sig = [train_sigma(logit, h["logit_mean"], h["logit_std"], h["shift"],
                               flow_key(seed, step, mb * 65536 + i + 1)) for i in range(B)]
            noise = flow_randn(B * n, flow_key(seed, step, mb * 65536))
            e = torch.from_numpy(noise.astype(np.float64)).reshape(x0.shape)
            s = torch.tensor(sig, dtype=torch.float64).reshape(B, 1, 1, 1, 1)
            xs = (1.0 - s) * x0 + s * e
            target = e - x0
            tsteps = torch.tensor([float(np.float32(1000.0) * np.float32(v)) for v in sig], dtype=torch.float64)
            pred = wan_ref.forward(q, cfg, xs, tsteps, torch.from_numpy(txt))
            loss = ((pred - target) ** 2).mean() / GA
            loss.backward()
            loss_sum += float(loss.detach())
        g = {k: q[k].grad.detach() for k in p}
        norm = math.sqrt(sum(float((t * t).sum()) for t in g.values()))
        clip = h["grad_clip"]
        gscale = clip / norm if (clip > 0 and norm > clip) else 1.0
        t = step + 1
        bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        for k in p:
            gi = g[k] * gscale
            m[k] = b1 * m[k] + (1.0 - b1) * gi
            v2[k] = b2 * v2[k] + (1.0 - b2) * gi * gi
            upd = (m[k] / bc1) / (torch.sqrt(v2[k] / bc2) + eps)
            p[k] = p[k] - lr * (upd + wd * p[k])
            ema[k] = h["ema_decay"] * ema[k] + (1.0 - h["ema_decay"]) * p[k]
        records.append(dict(step=t, loss=loss_sum, grad_norm=norm, lr=lr, clipped=gscale < 1.0, dropped=dropped))
        log("  ref step %2d  loss %.6f  grad_norm %.5f%s  lr %.4e" % (
            t, loss_sum, norm, " (clipped)" if gscale < 1.0 else "", lr))
    return records, p, ema


# ----------------------------------------------------------------------------------------
# commands


def cmd_make(a):
    d = parse_sets(a.set, MODEL_KEYS)
    cfg = model_config(d)
    gen = torch.Generator().manual_seed(a.seed)
    params = {k: v.float() for k, v in wan_ref.random_params(cfg, gen).items()}
    os.makedirs(a.out, exist_ok=True)
    wan_ref.write_safetensors(os.path.join(a.out, "init.safetensors"), params, "F32")
    C, (T, H, W), L = cfg["in_dim"], a.grid, a.text_rows
    lat = torch.randn(a.num, C, T, H, W, generator=gen).numpy().astype(np.float32)
    txt = torch.randn(a.num, L, cfg["text_dim"], generator=gen).numpy().astype(np.float32)
    for i in range(a.num):               # prompts of different lengths: zero rows at the end
        txt[i, int(torch.randint(1, L + 1, (1,), generator=gen)):] = 0.0
    with h5py.File(os.path.join(a.out, "train.h5"), "w") as f:
        f["latents"] = lat
        f["text"] = txt
    print("train_ref make: %s: %d params, %d samples of %dx%dx%dx%d, text %dx%d" % (
        a.out, sum(v.numel() for v in params.values()), a.num, C, T, H, W, L, cfg["text_dim"]))
    return 0


def rel(a, b):
    nb = float(b.norm())
    return float((a - b).norm()) / nb if nb > 0 else float((a - b).norm())


def load_osp_run(run, steps):
    """osp's side: the train records of metrics.jsonl (log_every 1) by step, and the model and
    EMA tensors of the step-`steps` checkpoint (None where a file is missing)."""
    recs = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "train":
                recs[r["step"]] = r
    ck = os.path.join(run, "checkpoints", "step_%08d" % steps)
    w = {}
    for what in ("model", "ema"):
        path = os.path.join(ck, what + ".safetensors")
        w[what] = (path, wan_ref.load_checkpoint(path) if os.path.isfile(path) else None)
    return recs, w


def compare(a, h, init, shapes, osp_recs, osp_w, records, final, ema, quiet=False):
    """Returns (failures, summary line); prints the per-step table unless quiet."""
    say = (lambda *x: None) if quiet else print
    fails = []
    say("%-5s %14s %14s %10s %12s %10s %10s" % ("step", "osp loss", "ref loss", "rel err", "grad norm",
                                                 "rel err", "lr rel"))
    worst = dict(loss=0.0, gnorm=0.0, lr=0.0)
    for r in records:
        o = osp_recs.get(r["step"])
        if o is None:
            fails.append("step %d missing from %s/metrics.jsonl (train.log_every must be 1)" % (r["step"], a.run))
            continue
        el = abs(o["loss"] - r["loss"]) / abs(r["loss"])
        eg = abs(o["grad_norm"] - r["grad_norm"]) / r["grad_norm"]
        er = abs(o["lr"] - r["lr"]) / r["lr"] if r["lr"] > 0 else abs(o["lr"])
        worst = dict(loss=max(worst["loss"], el), gnorm=max(worst["gnorm"], eg), lr=max(worst["lr"], er))
        say("%-5d %14.8f %14.8f %10.2e %12.6f%s %10.2e %10.2e" % (
            r["step"], o["loss"], r["loss"], el, r["grad_norm"], "c" if r["clipped"] else " ", eg, er))
    for name, tol in (("loss", a.tol_loss), ("gnorm", a.tol_gnorm), ("lr", 1e-6)):
        if worst[name] > tol:
            fails.append("per-step %s rel err %.3e > tol %.1e" % (name, worst[name], tol))
    say("(c = clipped by train.grad_clip %g in the reference: %d of %d steps; text dropped in %d of %d "
        "samples)" % (h["grad_clip"], sum(r["clipped"] for r in records), len(records),
                      records[-1]["dropped"] if records else 0, h["steps"] * h["grad_accum"] * h["batch_size"]))

    # weights: every tensor of model and EMA, and the update (final - init) of the model
    rows = []
    for what, ref in (("model", final), ("ema", ema)):
        path, got = osp_w[what]
        if got is None:
            fails.append("%s: no such file" % path)
            continue
        for k in shapes:
            if k not in got or tuple(got[k].shape) != tuple(ref[k].shape):
                fails.append("%s: %s missing or mis-shaped" % (path, k))
                continue
            rows.append((what, k, rel(got[k], ref[k]), rel(got[k] - init[k], ref[k] - init[k])))
    wmax = max((r[2] for r in rows), default=0.0)
    umax = max((r[3] for r in rows), default=0.0)
    uworst = max(rows, key=lambda r: r[3]) if rows else ("", "", 0, 0)
    say("weights: %d tensors (model + ema); max ||osp-ref||/||ref|| %.2e (tol %.0e); "
        "max rel err of the update (w - w0) %.2e (tol %.0e) at %s %s" % (
            len(rows), wmax, a.tol_weight, umax, a.tol_update, uworst[0], uworst[1]))
    if a.verbose and not quiet:
        for r in rows:
            print("  %-5s %-44s %10.2e %10.2e" % r)
    bad = [r for r in rows if r[2] > a.tol_weight or r[3] > a.tol_update]
    for r in bad[:10]:
        fails.append("%s %s: weight rel err %.3e, update rel err %.3e" % r)
    if len(bad) > 10:
        fails.append("... and %d more tensors" % (len(bad) - 10))
    if not records or not rows:
        fails.append("nothing compared")
    summary = "%d steps, max rel err: loss %.2e (tol %.0e), grad norm %.2e (tol %.0e), weights %.2e " \
              "(tol %.0e), updates %.2e (tol %.0e)" % (len(records), worst["loss"], a.tol_loss, worst["gnorm"],
                                                       a.tol_gnorm, wmax, a.tol_weight, umax, a.tol_update)
    return fails, summary


def cmd_check(a):
    t0 = time.time()
    torch.set_num_threads(1)
    d = parse_sets(a.set, MODEL_KEYS + TRAIN_KEYS)
    for s in a.control:
        if s.partition("=")[0] not in TRAIN_KEYS:
            sys.exit("train_ref: --control %s: not one of the train settings (%s)" % (s, ", ".join(TRAIN_KEYS)))
    cfg, h = model_config(d), train_hparams(d)
    init = wan_ref.load_checkpoint(a.init)
    shapes = wan_ref.param_shapes(cfg)
    if set(init) != set(shapes) or any(tuple(init[k].shape) != tuple(s) for k, s in shapes.items()):
        sys.exit("train_ref: %s does not hold exactly the parameters of the configured model" % a.init)
    with h5py.File(a.data, "r") as f:
        latents = np.asarray(f["latents"], dtype=np.float32)
        text = np.asarray(f["text"], dtype=np.float32)
    osp_recs, osp_w = load_osp_run(a.run, h["steps"])

    records, final, ema = train(init, cfg, h, latents, text)
    fails, summary = compare(a, h, init, shapes, osp_recs, osp_w, records, final, ema)
    for msg in fails:
        print("train_ref: FAIL " + msg)
    print("train_ref: %s: %s (%.1f s)" % ("FAIL" if fails else "ok", summary, time.time() - t0))

    # negative controls: the reference with one train setting changed must NOT match osp,
    # and must miss it by a numeric criterion (not by a missing file or step)
    for s in a.control:
        k, _, v = s.partition("=")
        dc = dict(d)
        dc[k] = v
        hc = train_hparams(dc)
        rc, fc, ec = train(init, cfg, hc, latents, text, log=lambda *x: None)
        cf, cs = compare(a, hc, init, shapes, osp_recs, osp_w, rc, fc, ec, quiet=True)
        if not any("rel err" in m for m in cf):
            fails.append("control %s (osp ran with %s): the reference still matches osp" % (s, d[k]))
            print("train_ref: FAIL control %s: %s" % (s, cs))
        else:
            print("train_ref: control %s (osp ran with %s) is detected: %s" % (s, d[k], cs))
    return 1 if fails else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="float64 reference of osp train", allow_abbrev=False)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="random init weights and training data")
    mk.add_argument("--out", required=True)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--num", type=int, default=6, help="samples")
    mk.add_argument("--grid", type=int, nargs=3, default=[2, 10, 12], metavar=("T", "H", "W"))
    mk.add_argument("--text-rows", type=int, default=8, help="text rows L stored in the file")
    mk.add_argument("--set", action="append", default=[])
    ck = sub.add_parser("check", help="train in float64 and compare with an osp run")
    ck.add_argument("--init", required=True)
    ck.add_argument("--data", required=True)
    ck.add_argument("--run", required=True, help="osp run_dir")
    ck.add_argument("--set", action="append", default=[])
    ck.add_argument("--control", action="append", default=[],
                    help="negative control: key=value (a train setting) changed in a second reference "
                         "run, which must then fail the comparison (repeatable)")
    ck.add_argument("--tol-loss", type=float, default=1e-6, help="per-step loss rel err")
    ck.add_argument("--tol-gnorm", type=float, default=1e-5, help="per-step gradient norm rel err")
    ck.add_argument("--tol-weight", type=float, default=1e-5, help="final weight tensors, ||a-b||/||b||")
    ck.add_argument("--tol-update", type=float, default=1e-3, help="w - w0 per tensor, ||a-b||/||b||")
    ck.add_argument("-v", "--verbose", action="store_true", help="print every tensor")
    a = ap.parse_args(argv)
    return cmd_make(a) if a.cmd == "make" else cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
