"""make_case.py -- writes one reference test case for `osp forward`: a random Wan2.1-style
checkpoint (original / diffusers / prefixed key layout, F32 or BF16, single file or shards),
random inputs, and the float64 reference output and gradients from wan_ref.py.

  DIR/model.safetensors                    (or diffusion_pytorch_model-0000i-of-0000N.safetensors
                                            + diffusion_pytorch_model.safetensors.index.json)
  DIR/inputs.h5    latents [B,C,T,H,W], timesteps [B], text [B,text_len,text_dim], R [B,Cout,T,H,W]
  DIR/expected.h5  out, grads/<original key>, grads_input/{latents,text}   (loss = sum(out * R))
  DIR/config.json  Wan-style model config + the case settings
"""
import argparse
import json
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.dont_write_bytecode = True   # keep the source tree clean when run from ctest
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="generate a Wan2.1 reference case", allow_abbrev=False)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--in", dest="in_ch", type=int, default=16)
    ap.add_argument("--out-ch", type=int, default=16)
    ap.add_argument("--text-dim", type=int, default=64)
    ap.add_argument("--text-len", type=int, default=16)
    ap.add_argument("--freq", type=int, default=256)
    ap.add_argument("--patch", type=int, nargs=3, default=[1, 2, 2], metavar=("PT", "PH", "PW"))
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=3, help="latent frames T")
    ap.add_argument("--height", type=int, default=10, help="latent height H")
    ap.add_argument("--width", type=int, default=12, help="latent width W")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=["full", "hybrid"], default="full")
    ap.add_argument("--sparse-ratio", type=int, default=2)
    ap.add_argument("--full-blocks", type=int, default=4)
    ap.add_argument("--pos-sincos", action="store_true",
                    help="add osp's fixed sin-cos position table (model.pos_embed=rope+sincos)")
    ap.add_argument("--layout", choices=["original", "diffusers", "prefixed"], default="original")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--shards", type=int, default=1)
    return ap.parse_args(argv)


def write_checkpoint(outdir, params, layout, dtype, shards):
    """Returns the path to pass as --ckpt (the file, or the directory for shards)."""
    st_dtype = "BF16" if dtype == "bf16" else "F32"
    named = {wan_ref.key_to_layout(k, layout): v for k, v in params.items()}
    if shards <= 1:
        path = os.path.join(outdir, "model.safetensors")
        wan_ref.write_safetensors(path, named, st_dtype)
        return path
    # split the key list (in order) into `shards` chunks of roughly equal bytes
    keys = list(named)
    sizes = [named[k].numel() for k in keys]
    total, target = sum(sizes), sum(sizes) / shards
    groups, cur, acc = [], [], 0
    for k, n in zip(keys, sizes):
        cur.append(k)
        acc += n
        if acc >= target * (len(groups) + 1) and len(groups) < shards - 1:
            groups.append(cur)
            cur = []
    groups.append(cur)
    while len(groups) < shards:          # tiny models: never leave a shard file out
        big = max(range(len(groups)), key=lambda i: len(groups[i]))
        g = groups.pop(big)
        groups[big:big] = [g[:len(g) // 2], g[len(g) // 2:]]
    weight_map, total_bytes = {}, 0
    for i, g in enumerate(groups):
        fn = "diffusion_pytorch_model-%05d-of-%05d.safetensors" % (i + 1, shards)
        total_bytes += wan_ref.write_safetensors(os.path.join(outdir, fn), {k: named[k] for k in g}, st_dtype)
        for k in g:
            weight_map[k] = fn
    with open(os.path.join(outdir, "diffusion_pytorch_model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total_bytes}, "weight_map": weight_map}, f, indent=2)
    return outdir


def main(argv=None):
    a = parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = wan_ref.make_config(dim=a.dim, num_heads=a.heads, ffn_dim=a.ffn, num_layers=a.layers,
                              in_dim=a.in_ch, out_dim=a.out_ch, text_dim=a.text_dim,
                              text_len=a.text_len, freq_dim=a.freq, patch_size=a.patch, eps=a.eps,
                              mode=a.mode, sparse_ratio=a.sparse_ratio, num_full_blocks=a.full_blocks,
                              pos_sincos=a.pos_sincos)
    pt, ph, pw = a.patch
    if a.frames % pt or a.height % ph or a.width % pw:
        sys.exit("make_case: frames/height/width must be multiples of the patch %s" % a.patch)
    os.makedirs(a.out, exist_ok=True)
    gen = torch.Generator().manual_seed(a.seed)
    params = wan_ref.random_params(cfg, gen)
    # what the checkpoint holds (f32 or bf16-rounded) is exactly what the reference uses
    if a.dtype == "bf16":
        params = {k: wan_ref.to_bf16_exact(v).double() for k, v in params.items()}
    else:
        params = {k: v.float().double() for k, v in params.items()}
    lat, ts, text, R = wan_ref.random_inputs(cfg, a.batch, a.frames, a.height, a.width, gen)

    ckpt = write_checkpoint(a.out, params, a.layout, a.dtype, a.shards)
    out, grads, glat, gtxt = wan_ref.forward_backward(params, cfg, lat, ts, text, R)

    with h5py.File(os.path.join(a.out, "inputs.h5"), "w") as f:
        f["latents"] = lat.numpy().astype(np.float32)
        f["timesteps"] = ts.numpy().astype(np.float32)
        f["text"] = text.numpy().astype(np.float32)
        f["R"] = R.numpy().astype(np.float32)
    with h5py.File(os.path.join(a.out, "expected.h5"), "w") as f:
        f["out"] = out.numpy().astype(np.float32)
        for k in wan_ref.param_shapes(cfg):
            f["grads/" + k] = grads[k].numpy().astype(np.float32)
        f["grads_input/latents"] = glat.numpy().astype(np.float32)
        f["grads_input/text"] = gtxt.numpy().astype(np.float32)

    conf = {
        "_class_name": "WanModel", "model_type": "t2v",
        "dim": cfg["dim"], "ffn_dim": cfg["ffn_dim"], "num_heads": cfg["num_heads"],
        "num_layers": cfg["num_layers"], "in_dim": cfg["in_dim"], "out_dim": cfg["out_dim"],
        "text_dim": cfg["text_dim"], "text_len": cfg["text_len"], "freq_dim": cfg["freq_dim"],
        "patch_size": cfg["patch_size"], "eps": cfg["eps"],
        "attention": {"mode": cfg["mode"], "sparse_ratio": cfg["sparse_ratio"],
                      "num_full_blocks": cfg["num_full_blocks"],
                      "blocks": wan_ref.block_kinds(cfg)},
        "pos_embed": "rope+sincos" if a.pos_sincos else "rope",
        "case": {"layout": a.layout, "dtype": a.dtype, "shards": a.shards, "batch": a.batch,
                 "frames": a.frames, "height": a.height, "width": a.width, "seed": a.seed,
                 "ckpt": os.path.relpath(ckpt, a.out)},
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
    print("make_case: %s D=%d H=%d L=%d %s(P=%d,K=%d) %s/%s/%d-shard latents %s tokens %d "
          "|out|=%.3g ckpt=%s (%.1fs)" % (
              a.out, a.dim, a.heads, a.layers, a.mode, a.sparse_ratio, a.full_blocks, a.layout,
              a.dtype, a.shards, "x".join(map(str, lat.shape)),
              (a.frames // pt) * (a.height // ph) * (a.width // pw), float(out.norm()),
              os.path.relpath(ckpt, a.out), time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
