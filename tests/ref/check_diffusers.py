"""check_diffusers.py -- checks `osp forward` against diffusers' WanTransformer3DModel, the
PyTorch implementation users train today, on a random tiny model: the output and, for
loss = sum(out * R), the gradient of every parameter and of the latents and text.

Needs torch >= 2.4 and diffusers (the GPU machine has torch; scripts/gpu_test.sh installs the
carried diffusers wheel). Both sides run in float32 on the CPU, so the comparison is of the math,
not of bf16 rounding. Tolerance: `out` and most gradients agree to ~1e-5; the self-attention q/k
gradients of a random model are ill-conditioned (near-uniform attention) and the two fp32
implementations round differently (diffusers keeps LayerNorm, modulation, the residual and the
RoPE tables in fp32 islands even in a float64 model), so they differ by up to ~1e-3 -- the same
amount diffusers itself differs from the float64 reference tests/ref/wan_ref.py. Default tol 5e-3:
a wiring error (RoPE pairing, a swapped norm, a wrong modulation row) shows as O(1e-1..1).

  python3 tests/ref/check_diffusers.py --osp build/osp --out /tmp/dcheck [--tol 5e-3]

Writes DIR/diffusion_pytorch_model.safetensors (diffusers key names), DIR/inputs.h5,
DIR/expected.h5 (grads under original Wan key names, as osp writes them) and DIR/out.h5, then
prints compare.py's table; exits non-zero when any relative error exceeds --tol.
"""
import argparse
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
import wan_ref  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description="osp forward vs diffusers WanTransformer3DModel", allow_abbrev=False)
    ap.add_argument("--osp", required=True, help="osp binary")
    ap.add_argument("--out", required=True, help="work directory")
    ap.add_argument("--tol", type=float, default=5e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from diffusers import WanTransformer3DModel  # imported late: --help works without it

    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    heads, hd, text_dim = 2, 64, 24
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=hd,
                              in_channels=4, out_channels=4, text_dim=text_dim, freq_dim=64, ffn_dim=256,
                              num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                              image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024).float()
    # random weights everywhere (the default init zeroes some, which would hide wiring errors)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.15)
    state = {k: v.detach().contiguous() for k, v in m.state_dict().items()}
    wan_ref.write_safetensors(os.path.join(a.out, "diffusion_pytorch_model.safetensors"), state, "F32")

    B, C, T, H, W, L = 2, 4, 3, 6, 10, 7  # 3 x 3 x 5 token grid: frames matter, not square
    x = torch.randn(B, C, T, H, W, requires_grad=True)
    ts = torch.tensor([870.0, 130.0])
    txt = torch.randn(B, L, text_dim, requires_grad=True)
    y = m(hidden_states=x, timestep=ts, encoder_hidden_states=txt, return_dict=False)[0]
    R = torch.randn_like(y)
    (y * R).sum().backward()

    with h5py.File(os.path.join(a.out, "inputs.h5"), "w") as f:
        f["latents"] = x.detach().numpy()
        f["timesteps"] = ts.numpy()
        f["text"] = txt.detach().numpy()
        f["R"] = R.numpy()
    to_orig = {wan_ref.key_to_layout(k, "diffusers"): k for k in wan_ref.state_to_original(state)}
    with h5py.File(os.path.join(a.out, "expected.h5"), "w") as f:
        f["out"] = y.detach().numpy().astype(np.float64)
        for name, p in m.named_parameters():
            f["grads/" + to_orig[name]] = p.grad.numpy().astype(np.float64)
        f["grads_input/latents"] = x.grad.numpy().astype(np.float64)
        f["grads_input/text"] = txt.grad.numpy().astype(np.float64)
    print(f"diffusers WanTransformer3DModel: {sum(p.numel() for p in m.parameters())} parameters, "
          f"latents {list(x.shape)}, text {list(txt.shape)}")
    cmd = [a.osp, "forward", "--device", "cpu", "--ckpt", os.path.join(a.out, "diffusion_pytorch_model.safetensors"),
           "--heads", str(heads), "--set", f"model.text_len={L}", "--inputs", os.path.join(a.out, "inputs.h5"),
           "--out", os.path.join(a.out, "out.h5")]
    subprocess.run(cmd, check=True)
    return compare.main([os.path.join(a.out, "out.h5"), os.path.join(a.out, "expected.h5"), "--tol", str(a.tol),
                         "--prefix", "grads", "--prefix", "grads_input"])


if __name__ == "__main__":
    sys.exit(main())
