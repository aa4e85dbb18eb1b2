"""wan_ref.py -- independent float64 PyTorch reference of the Wan2.1 DiT (T2V), written from
the model's description (docs/model.md §3-§6, docs/skiparse.md §2-§8), used to check osp's C
implementation forward and backward.

Two attention modes:
  full    every block attends over all tokens of its sample.
  hybrid  OSP-Next dual_end schedule: blocks [0, K/2) and [L-K/2, L) full, every other block
          sparse (token pattern if its index is even, group pattern if odd). A sparse block is
          written here as DENSE attention over the original (unpadded) tokens with a block mask
          "query i sees key j iff both lie in the same Skiparse-2D subsequence". This is
          deliberately a different formulation from osp's pad/rearrange/switch pipeline; a second
          path (`sparse_attention_gather`) follows the pad + rearrange recipe literally and is
          only used by the self-test to cross-check the mask.

Everything is float64 so that the result is a precise reference for fp32 code. Parameters
are a dict keyed by ORIGINAL Wan2.1 names; `load_checkpoint` also reads diffusers-named,
"model.diffusion_model."-prefixed, sharded, F32/BF16/F16 safetensors files (no safetensors
package needed). Run `python3 wan_ref.py --selftest [full|hybrid|all]` for the self-checks.
"""
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch

PREFIX = "model.diffusion_model."

# ----------------------------------------------------------------------------------------
# configuration


def make_config(dim=256, num_heads=2, ffn_dim=512, num_layers=2, in_dim=16, out_dim=16,
                text_dim=64, text_len=16, freq_dim=256, patch_size=(1, 2, 2), eps=1e-6,
                mode="full", sparse_ratio=2, num_full_blocks=4, pos_sincos=False):
    assert dim % num_heads == 0, "dim must be divisible by num_heads"
    assert (dim // num_heads) % 2 == 0, "head dim must be even (RoPE pairs)"
    assert mode in ("full", "hybrid"), mode
    return dict(dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, num_layers=num_layers,
                in_dim=in_dim, out_dim=out_dim, text_dim=text_dim, text_len=text_len,
                freq_dim=freq_dim, patch_size=list(patch_size), eps=eps, mode=mode,
                sparse_ratio=sparse_ratio, num_full_blocks=num_full_blocks, pos_sincos=pos_sincos)


def param_shapes(cfg):
    """Ordered {original key: shape} of every parameter (docs/model.md §10)."""
    D, F, pt, ph, pw = cfg["dim"], cfg["ffn_dim"], *cfg["patch_size"]
    s = {}
    s["patch_embedding.weight"] = (D, cfg["in_dim"], pt, ph, pw)
    s["patch_embedding.bias"] = (D,)
    s["text_embedding.0.weight"] = (D, cfg["text_dim"])
    s["text_embedding.0.bias"] = (D,)
    s["text_embedding.2.weight"] = (D, D)
    s["text_embedding.2.bias"] = (D,)
    s["time_embedding.0.weight"] = (D, cfg["freq_dim"])
    s["time_embedding.0.bias"] = (D,)
    s["time_embedding.2.weight"] = (D, D)
    s["time_embedding.2.bias"] = (D,)
    s["time_projection.1.weight"] = (6 * D, D)
    s["time_projection.1.bias"] = (6 * D,)
    for i in range(cfg["num_layers"]):
        b = "blocks.%d." % i
        s[b + "modulation"] = (1, 6, D)
        for a in ("self_attn", "cross_attn"):
            for p in ("q", "k", "v", "o"):
                s[b + a + "." + p + ".weight"] = (D, D)
                s[b + a + "." + p + ".bias"] = (D,)
            s[b + a + ".norm_q.weight"] = (D,)
            s[b + a + ".norm_k.weight"] = (D,)
        s[b + "norm3.weight"] = (D,)
        s[b + "norm3.bias"] = (D,)
        s[b + "ffn.0.weight"] = (F, D)
        s[b + "ffn.0.bias"] = (F,)
        s[b + "ffn.2.weight"] = (D, F)
        s[b + "ffn.2.bias"] = (D,)
    s["head.head.weight"] = (pt * ph * pw * cfg["out_dim"], D)
    s["head.head.bias"] = (pt * ph * pw * cfg["out_dim"],)
    s["head.modulation"] = (1, 2, D)
    return s


def config_from_state(state, num_heads, text_len, eps=1e-6, **attn):
    """Dimensions that can be read off the parameter shapes; heads/text_len must be given."""
    pe = state["patch_embedding.weight"]
    pt, ph, pw = pe.shape[2:]
    layers = sum(1 for k in state if re.fullmatch(r"blocks\.\d+\.modulation", k))
    return make_config(dim=pe.shape[0], num_heads=num_heads,
                       ffn_dim=state["blocks.0.ffn.0.weight"].shape[0], num_layers=layers,
                       in_dim=pe.shape[1],
                       out_dim=state["head.head.weight"].shape[0] // (pt * ph * pw),
                       text_dim=state["text_embedding.0.weight"].shape[1], text_len=text_len,
                       freq_dim=state["time_embedding.0.weight"].shape[1],
                       patch_size=(pt, ph, pw), eps=eps, **attn)


# ----------------------------------------------------------------------------------------
# key layouts: original <-> diffusers (pure renaming, docs/model.md §10)

_TO_DIFFUSERS = [
    (r"text_embedding\.0\.", "condition_embedder.text_embedder.linear_1."),
    (r"text_embedding\.2\.", "condition_embedder.text_embedder.linear_2."),
    (r"time_embedding\.0\.", "condition_embedder.time_embedder.linear_1."),
    (r"time_embedding\.2\.", "condition_embedder.time_embedder.linear_2."),
    (r"time_projection\.1\.", "condition_embedder.time_proj."),
    (r"blocks\.(\d+)\.modulation", r"blocks.\1.scale_shift_table"),
    (r"blocks\.(\d+)\.self_attn\.o\.", r"blocks.\1.attn1.to_out.0."),
    (r"blocks\.(\d+)\.self_attn\.([qkv])\.", r"blocks.\1.attn1.to_\2."),
    (r"blocks\.(\d+)\.self_attn\.norm_", r"blocks.\1.attn1.norm_"),
    (r"blocks\.(\d+)\.cross_attn\.o\.", r"blocks.\1.attn2.to_out.0."),
    (r"blocks\.(\d+)\.cross_attn\.([qkv])\.", r"blocks.\1.attn2.to_\2."),
    (r"blocks\.(\d+)\.cross_attn\.norm_", r"blocks.\1.attn2.norm_"),
    (r"blocks\.(\d+)\.norm3\.", r"blocks.\1.norm2."),   # the diffusers norm2/norm3 swap
    (r"blocks\.(\d+)\.ffn\.0\.", r"blocks.\1.ffn.net.0.proj."),
    (r"blocks\.(\d+)\.ffn\.2\.", r"blocks.\1.ffn.net.2."),
    (r"head\.head\.", "proj_out."),
    (r"head\.modulation$", "scale_shift_table"),
]
_FROM_DIFFUSERS = [
    (r"condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"condition_embedder\.time_proj\.", "time_projection.1."),
    (r"blocks\.(\d+)\.scale_shift_table$", r"blocks.\1.modulation"),
    (r"blocks\.(\d+)\.attn1\.to_out\.0\.", r"blocks.\1.self_attn.o."),
    (r"blocks\.(\d+)\.attn1\.to_([qkv])\.", r"blocks.\1.self_attn.\2."),
    (r"blocks\.(\d+)\.attn1\.norm_", r"blocks.\1.self_attn.norm_"),
    (r"blocks\.(\d+)\.attn2\.to_out\.0\.", r"blocks.\1.cross_attn.o."),
    (r"blocks\.(\d+)\.attn2\.to_([qkv])\.", r"blocks.\1.cross_attn.\2."),
    (r"blocks\.(\d+)\.attn2\.norm_", r"blocks.\1.cross_attn.norm_"),
    (r"blocks\.(\d+)\.norm2\.", r"blocks.\1.norm3."),
    (r"blocks\.(\d+)\.ffn\.net\.0\.proj\.", r"blocks.\1.ffn.0."),
    (r"blocks\.(\d+)\.ffn\.net\.2\.", r"blocks.\1.ffn.2."),
    (r"proj_out\.", "head.head."),
    (r"^scale_shift_table$", "head.modulation"),
]


def _rename(key, table):
    for pat, rep in table:
        new, n = re.subn(pat, rep, key)
        if n:
            return new
    return key


def key_to_layout(key, layout):
    if layout == "original":
        return key
    if layout == "prefixed":
        return PREFIX + key
    if layout == "diffusers":
        return _rename(key, _TO_DIFFUSERS)
    raise ValueError("unknown layout " + layout)


def state_to_original(state):
    """Strip the ComfyUI prefix and undo diffusers names, whichever applies."""
    if any(k.startswith(PREFIX) for k in state):
        state = {(k[len(PREFIX):] if k.startswith(PREFIX) else k): v for k, v in state.items()}
    if "condition_embedder.time_proj.weight" in state:
        state = {_rename(k, _FROM_DIFFUSERS): v for k, v in state.items()}
    return state


# ----------------------------------------------------------------------------------------
# safetensors (hand-written: 8-byte LE header length, JSON header, raw LE data)

_ST_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def to_bf16_exact(t):
    """Round a float tensor to bf16 (round-to-nearest-even) and return it as float32."""
    return t.to(torch.float32).to(torch.bfloat16).to(torch.float32)


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: ordered {name: torch tensor}; dtype F32 or BF16 (values rounded first)."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().to(torch.float32).contiguous().numpy()
        if dtype == "F32":
            raw = a.astype("<f4").tobytes()
        elif dtype == "BF16":
            bits = to_bf16_exact(torch.from_numpy(a)).numpy().view(np.uint32) >> 16
            raw = bits.astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for raw in blobs:
            f.write(raw)
    return off


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[b:e]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            a = bits.view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=np.dtype(_ST_NP[info["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(a.astype(np.float64).reshape(info["shape"]))
    return out


def load_checkpoint(path):
    """A .safetensors file, a shard index .json, or a directory holding either."""
    if os.path.isdir(path):
        idx = os.path.join(path, "diffusion_pytorch_model.safetensors.index.json")
        if os.path.exists(idx):
            path = idx
        else:
            files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
            assert len(files) == 1, "%s: expected one .safetensors file" % path
            path = os.path.join(path, files[0])
    if path.endswith(".json"):
        with open(path) as f:
            wm = json.load(f)["weight_map"]
        state = {}
        for shard in sorted(set(wm.values())):
            state.update(read_safetensors(os.path.join(os.path.dirname(path), shard)))
        assert set(state) == set(wm), "shard contents do not match the index"
    else:
        state = read_safetensors(path)
    return state_to_original(state)


# ----------------------------------------------------------------------------------------
# building blocks (all float64)


def sinusoid(t, freq_dim):
    """t [B] -> [B, freq_dim]: cos first, omega_i = 10000^(-i/(freq_dim/2))."""
    half = freq_dim // 2
    omega = torch.pow(torch.tensor(10000.0, dtype=torch.float64),
                      -torch.arange(half, dtype=torch.float64) / half)
    a = t.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


def linear(x, p, name):
    return x @ p[name + ".weight"].t() + p[name + ".bias"]


def layer_norm(x, eps, weight=None, bias=None):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)   # biased variance
    y = (x - mu) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight + bias
    return y


def rms_norm(x, weight, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def pos_table(f, h, w, D):
    """[f*h*w, D] fixed absolute positions (osp model.pos_embed=rope+sincos): features split
    (t, h, w) as d_t = D - 4(D//6), d_h = d_w = 2(D//6); per axis (sin, cos) pairs of
    pos * 100^(-2j/d_axis), an odd axis width leaving its last feature 0."""
    dh = 2 * (D // 6)
    ti, hi, wi = torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij")
    blocks = []
    for pos, da in zip((ti, hi, wi), (D - 2 * dh, dh, dh)):
        blk = torch.zeros(f * h * w, da, dtype=torch.float64)
        j = torch.arange(da // 2, dtype=torch.float64)
        ang = pos.reshape(-1, 1).to(torch.float64) * torch.pow(torch.tensor(100.0, dtype=torch.float64), -2.0 * j / da)
        blk[:, 0:2 * (da // 2):2] = torch.sin(ang)
        blk[:, 1:2 * (da // 2):2] = torch.cos(ang)
        blocks.append(blk)
    return torch.cat(blocks, dim=1)


def silu(x):
    return x * torch.sigmoid(x)


def rope_angles(f, h, w, head_dim, theta=10000.0):
    """[f*h*w, head_dim/2] angles from the original (t, h, w) token coordinates; pairs split
    d_t = d - 4(d//6), d_h = d_w = 2(d//6) real channels, frequency theta^(-2j/d_axis)."""
    d = head_dim
    dims = [d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)]
    ti, hi, wi = torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij")
    parts = []
    for pos, da in zip((ti, hi, wi), dims):
        j = torch.arange(da // 2, dtype=torch.float64)
        freq = torch.pow(torch.tensor(theta, dtype=torch.float64), -2.0 * j / da)
        parts.append(pos.reshape(-1, 1).to(torch.float64) * freq[None, :])
    return torch.cat(parts, dim=1)


def apply_rope(x, ang):
    """x [B, L, H, d] with interleaved pairs (x[2j], x[2j+1]); ang [L, d/2]."""
    B, L, H, d = x.shape
    xr = x.reshape(B, L, H, d // 2, 2)
    c = torch.cos(ang)[None, :, None, :]
    s = torch.sin(ang)[None, :, None, :]
    x0, x1 = xr[..., 0], xr[..., 1]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).reshape(B, L, H, d)


def attention(q, k, v, mask=None):
    """q [B, Lq, H, d], k/v [B, Lk, H, d]; mask [Lq, Lk] bool (True = may attend)."""
    d = q.shape[-1]
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
    if mask is not None:
        s = s.masked_fill(~mask[None, None], float("-inf"))
    a = torch.softmax(s, dim=-1)
    return torch.einsum("bhqk,bkhd->bqhd", a, v)


# ----------------------------------------------------------------------------------------
# Skiparse-2D (docs/skiparse.md §2-§3, §9)


def padded_extent(n, P):
    return n + (P * P - n % (P * P)) % (P * P)


def subsequence_ids(h, w, P, pattern):
    """[h, w] subsequence id of every grid position. Ids are defined on the grid padded to
    multiples of P^2 (bottom/right), but padding only appends positions, so the ids of the
    original positions do not depend on it."""
    hh = torch.arange(padded_extent(h, P))[:, None]
    ww = torch.arange(padded_extent(w, P))[None, :]
    if pattern == "token":
        s = (hh % P) * P + (ww % P)
    elif pattern == "group":
        s = ((hh // P) % P) * P + ((ww // P) % P)
    else:
        raise ValueError(pattern)
    return s[:h, :w]


def sparse_mask(f, h, w, P, pattern):
    """[L, L] bool over raster tokens (t, h, w): same subsequence (time never matters)."""
    s = subsequence_ids(h, w, P, pattern).reshape(1, h * w).expand(f, h * w).reshape(-1)
    return s[:, None] == s[None, :]


def block_kinds(cfg):
    """'full' | 'token' | 'group' for every block (dual_end schedule)."""
    L = cfg["num_layers"]
    if cfg["mode"] == "full":
        return ["full"] * L
    K = cfg["num_full_blocks"]
    assert K % 2 == 0 and 0 <= K <= L, "num_full_blocks must be even and <= num_layers"
    kinds = []
    for i in range(L):
        if i < K // 2 or i >= L - K // 2:
            kinds.append("full")
        else:
            kinds.append("token" if i % 2 == 0 else "group")
    return kinds


def _rearrange_index(f, h, w, P, pattern):
    """Literal (S1)-(S3): index [P^2, f*H'/P*W'/P] into the padded raster grid, subsequence
    major, compact row-major inside; plus validity of each entry."""
    Hp, Wp = padded_extent(h, P), padded_extent(w, P)
    g = torch.arange(f * Hp * Wp).reshape(f, Hp, Wp)
    if pattern == "token":   # h = h'P + p, w = w'P + q -> s = (p, q), pos = (t, h', w')
        r = g.reshape(f, Hp // P, P, Wp // P, P).permute(2, 4, 0, 1, 3)
    else:                    # h = aP^2 + p1 P + p2 -> s = (p1, q1), pos = (t, aP + p2, cP + q2)
        r = g.reshape(f, Hp // (P * P), P, P, Wp // (P * P), P, P).permute(2, 5, 0, 1, 3, 4, 6)
    idx = r.reshape(P * P, -1)
    t_, rem = idx // (Hp * Wp), idx % (Hp * Wp)
    valid = (rem // Wp < h) & (rem % Wp < w)
    return idx, valid, Hp, Wp


def sparse_attention_gather(q, k, v, f, h, w, P, pattern):
    """Cross-check path: pad with zeros, rearrange into P^2 subsequences, attend inside each
    with padded keys masked, undo the rearrangement, crop. q/k/v [B, L, H, d] (post-RoPE)."""
    idx, valid, Hp, Wp = _rearrange_index(f, h, w, P, pattern)
    B, L, nh, d = q.shape

    def pad(x):
        xp = x.new_zeros(B, f, Hp, Wp, nh, d)
        xp[:, :, :h, :w] = x.reshape(B, f, h, w, nh, d)
        return xp.reshape(B, f * Hp * Wp, nh, d)

    qp, kp, vp = pad(q), pad(k), pad(v)
    out = q.new_zeros(B, f * Hp * Wp, nh, d)
    for s in range(P * P):
        ix = idx[s]
        o = attention(qp[:, ix], kp[:, ix], vp[:, ix], valid[s][None, :].expand(len(ix), -1))
        out = out.index_copy(1, ix, o)
    return out.reshape(B, f, Hp, Wp, nh, d)[:, :, :h, :w].reshape(B, L, nh, d)


# ----------------------------------------------------------------------------------------
# the model


def forward(p, cfg, latents, t, text, sparse_impl="mask"):
    """p: {original key: float64 tensor}; latents [B, C, T, H, W]; t [B] (real);
    text [B, Lt <= text_len, text_dim] -> [B, out_dim, T, H, W] float64."""
    D, nh, eps = cfg["dim"], cfg["num_heads"], cfg["eps"]
    hd = D // nh
    pt, ph, pw = cfg["patch_size"]
    x = latents.to(torch.float64)
    B, C, T, H, W = x.shape
    assert T % pt == 0 and H % ph == 0 and W % pw == 0, "latent not divisible by the patch"
    f, h, w = T // pt, H // ph, W // pw
    L = f * h * w

    # patch embedding as a GEMM, input feature order (c, pt, ph, pw)
    xp = x.reshape(B, C, f, pt, h, ph, w, pw).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, L, -1)
    x = xp @ p["patch_embedding.weight"].reshape(D, -1).t() + p["patch_embedding.bias"]
    if cfg.get("pos_sincos"):                # osp's model.pos_embed=rope+sincos (not in Wan2.1)
        x = x + pos_table(f, h, w, D)

    # time: sinusoid -> MLP (e) -> projection (e0, 6 rows)
    e = linear(silu(linear(sinusoid(t, cfg["freq_dim"]), p, "time_embedding.0")), p, "time_embedding.2")
    e0 = linear(silu(e), p, "time_projection.1").reshape(B, 6, D)

    # text: zero-pad to text_len rows, no mask
    u = text.to(torch.float64)
    assert u.shape[1] <= cfg["text_len"], "text longer than text_len"
    if u.shape[1] < cfg["text_len"]:
        u = torch.cat([u, u.new_zeros(B, cfg["text_len"] - u.shape[1], u.shape[2])], dim=1)
    c = linear(gelu_tanh(linear(u, p, "text_embedding.0")), p, "text_embedding.2")

    ang = rope_angles(f, h, w, hd)
    P = cfg["sparse_ratio"]
    masks = {}
    for i, kind in enumerate(block_kinds(cfg)):
        b = "blocks.%d." % i
        m = p[b + "modulation"] + e0                       # [B, 6, D]
        sh1, sc1, g1, sh2, sc2, g2 = [m[:, j:j + 1, :] for j in range(6)]

        # self-attention
        y = layer_norm(x, eps) * (1 + sc1) + sh1
        q = rms_norm(linear(y, p, b + "self_attn.q"), p[b + "self_attn.norm_q.weight"], eps)
        k = rms_norm(linear(y, p, b + "self_attn.k"), p[b + "self_attn.norm_k.weight"], eps)
        v = linear(y, p, b + "self_attn.v")
        q = apply_rope(q.reshape(B, L, nh, hd), ang)
        k = apply_rope(k.reshape(B, L, nh, hd), ang)
        v = v.reshape(B, L, nh, hd)
        if kind == "full":
            a = attention(q, k, v)
        elif sparse_impl == "gather":
            a = sparse_attention_gather(q, k, v, f, h, w, P, kind)
        else:
            if kind not in masks:
                masks[kind] = sparse_mask(f, h, w, P, kind)
            a = attention(q, k, v, masks[kind])
        x = x + linear(a.reshape(B, L, D), p, b + "self_attn.o") * g1

        # cross-attention: affine norm3, q/k RMSNorm, no RoPE, no mask, no gate
        y = layer_norm(x, eps, p[b + "norm3.weight"], p[b + "norm3.bias"])
        q = rms_norm(linear(y, p, b + "cross_attn.q"), p[b + "cross_attn.norm_q.weight"], eps)
        k = rms_norm(linear(c, p, b + "cross_attn.k"), p[b + "cross_attn.norm_k.weight"], eps)
        v = linear(c, p, b + "cross_attn.v")
        a = attention(q.reshape(B, L, nh, hd), k.reshape(B, -1, nh, hd), v.reshape(B, -1, nh, hd))
        x = x + linear(a.reshape(B, L, D), p, b + "cross_attn.o")

        # FFN
        y = layer_norm(x, eps) * (1 + sc2) + sh2
        x = x + linear(gelu_tanh(linear(y, p, b + "ffn.0")), p, b + "ffn.2") * g2

    # head: modulation + e (not e0)
    hm = p["head.modulation"] + e[:, None, :]
    y = layer_norm(x, eps) * (1 + hm[:, 1:2]) + hm[:, 0:1]
    out = linear(y, p, "head.head")                        # [B, L, pt*ph*pw*Cout]

    # unpatchify, output feature order (pt, ph, pw, c)
    Co = cfg["out_dim"]
    out = out.reshape(B, f, h, w, pt, ph, pw, Co).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return out.reshape(B, Co, f * pt, h * ph, w * pw)


def forward_backward(params, cfg, latents, t, text, R, sparse_impl="mask"):
    """out and d(sum(out * R))/d{params, latents, text}, all float64."""
    p = {k: v.detach().to(torch.float64).clone().requires_grad_(True) for k, v in params.items()}
    lat = latents.detach().to(torch.float64).clone().requires_grad_(True)
    txt = text.detach().to(torch.float64).clone().requires_grad_(True)
    out = forward(p, cfg, lat, t, txt, sparse_impl)
    (out * R.to(torch.float64)).sum().backward()
    grads = {k: v.grad.detach() for k, v in p.items()}
    return out.detach(), grads, lat.grad.detach(), txt.grad.detach()


# ----------------------------------------------------------------------------------------
# random weights / inputs (shared with make_case.py)


def random_params(cfg, gen):
    """O(1) activations: fan-in scaled normals, small nonzero biases, nonzero head weight."""
    D = cfg["dim"]
    p = {}
    for k, shp in param_shapes(cfg).items():
        r = torch.randn(*shp, generator=gen, dtype=torch.float64)
        if k.endswith("modulation"):
            v = r / math.sqrt(D)
        elif re.search(r"norm_[qk]\.weight$|norm3\.weight$", k):
            v = 1.0 + 0.1 * r
        elif k.endswith("norm3.bias"):
            v = 0.1 * r
        elif k.endswith(".bias"):
            v = 0.05 * r
        else:
            fan_in = int(np.prod(shp[1:]))
            v = r / math.sqrt(fan_in)
            if k.startswith("time_projection"):
                v = 0.5 * v   # keeps 1 + scale and the gates moderate
        p[k] = v
    return p


def random_inputs(cfg, B, T, H, W, gen):
    lat = torch.randn(B, cfg["in_dim"], T, H, W, generator=gen).to(torch.float32)
    ts = (torch.rand(B, generator=gen, dtype=torch.float64) * 1000.0).to(torch.float32)
    Lt = cfg["text_len"]
    text = torch.randn(B, Lt, cfg["text_dim"], generator=gen).to(torch.float32)
    for b in range(B):
        n = int(torch.randint(1, Lt + 1, (1,), generator=gen))
        text[b, n:] = 0.0
    R = torch.randn(B, cfg["out_dim"], T, H, W, generator=gen).to(torch.float32)
    return lat, ts, text, R


# ----------------------------------------------------------------------------------------
# self-tests (python3 wan_ref.py --selftest [full|hybrid|all])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _check(name, err, tol, results):
    ok = err <= tol
    print("  %-52s %.3e  (tol %.0e) %s" % (name, err, tol, "ok" if ok else "FAIL"))
    results.append(ok)


def _selftest_full(results):
    g = torch.Generator().manual_seed(1)
    # tiny model, head dim 12 -> RoPE split 4/4/4 real channels
    cfg = make_config(dim=24, num_heads=2, ffn_dim=32, num_layers=2, in_dim=3, out_dim=2,
                      text_dim=5, text_len=4, freq_dim=8, patch_size=(1, 2, 2))
    p = random_params(cfg, g)
    lat, ts, text, R = random_inputs(cfg, 2, 2, 4, 6, g)
    out, grads, glat, gtxt = forward_backward(p, cfg, lat, ts, text, R)
    # central finite differences of sum(out*R) along a random direction, per tensor
    worst = 0.0

    def loss(pp, la, tx):
        return float((forward(pp, cfg, la, ts, tx) * R.double()).sum())

    eps = 1e-6
    for k in p:
        dv = torch.randn(p[k].shape, generator=g, dtype=torch.float64)
        pp = dict(p); pp[k] = p[k] + eps * dv
        pm = dict(p); pm[k] = p[k] - eps * dv
        fd = (loss(pp, lat, text) - loss(pm, lat, text)) / (2 * eps)
        an = float((grads[k] * dv).sum())
        worst = max(worst, abs(fd - an) / max(abs(an), 1e-3))
    for x, gx, which in ((lat.double(), glat, 0), (text.double(), gtxt, 1)):
        dv = torch.randn(x.shape, generator=g, dtype=torch.float64)
        args_p = [lat.double(), text.double()]; args_p[which] = x + eps * dv
        args_m = [lat.double(), text.double()]; args_m[which] = x - eps * dv
        fd = (loss(p, *args_p) - loss(p, *args_m)) / (2 * eps)
        an = float((gx * dv).sum())
        worst = max(worst, abs(fd - an) / max(abs(an), 1e-3))
    _check("autograd vs finite differences (all tensors)", worst, 1e-6, results)

    # RoPE split at d = 128 is 44/42/42 and rotation preserves norms
    ang = rope_angles(2, 3, 4, 128)
    ok = ang.shape == (24, 64) and float(ang[5, 22:].abs().sum()) > 0
    _check("RoPE 128 -> 22/21/21 pairs (shape)", 0.0 if ok else 1.0, 0.0, results)
    xq = torch.randn(1, 24, 1, 128, generator=g, dtype=torch.float64)
    _check("RoPE preserves norms", _rel(apply_rope(xq, ang).norm(dim=-1), xq.norm(dim=-1)), 1e-14, results)

    # layouts and dtypes round-trip through the hand-written safetensors files
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        for layout in ("original", "diffusers", "prefixed"):
            st = {key_to_layout(k, layout): v for k, v in p.items()}
            if layout == "diffusers":
                assert "blocks.0.norm2.weight" in st and "proj_out.weight" in st and "scale_shift_table" in st
            fn = os.path.join(d, layout + ".safetensors")
            write_safetensors(fn, st, "F32")
            with open(fn, "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
            assert n % 8 == 0
            q = load_checkpoint(fn)
            assert set(q) == set(p), layout
            o2 = forward(q, cfg, lat, ts, text)
            ref = forward({k: v.float().double() for k, v in p.items()}, cfg, lat, ts, text)
            _check("layout %s round-trip (f32 file)" % layout, _rel(o2, ref), 1e-15, results)
        fn = os.path.join(d, "bf16.safetensors")
        write_safetensors(fn, p, "BF16")
        q = load_checkpoint(fn)
        err = max(_rel(q[k], to_bf16_exact(p[k]).double()) for k in p)
        _check("bf16 file reads back the rounded values", err, 0.0, results)
        rel = max(_rel(q[k], p[k]) for k in p)
        _check("bf16 rounding is really applied (rel > 1e-4)", 0.0 if rel > 1e-4 else 1.0, 0.0, results)
    # zero-padded text rows are attended: a shorter text (implicitly padded) gives the same out
    o_short = forward(p, cfg, lat, ts, text[:, :1])
    t1 = text.clone(); t1[:, 1:] = 0
    _check("implicit text zero-padding == explicit", _rel(o_short, forward(p, cfg, lat, ts, t1)), 1e-15, results)


WORKED_TOKEN = ["0 1 0 1 0 1 0 1", "2 3 2 3 2 3 2 3"] * 4
WORKED_GROUP = ["0 0 1 1 0 0 1 1"] * 2 + ["2 2 3 3 2 2 3 3"] * 2
WORKED_GROUP = WORKED_GROUP * 2


def _selftest_hybrid(results):
    # docs/skiparse.md §5 worked example (T=1, H=W=8, P=2)
    for pattern, table in (("token", WORKED_TOKEN), ("group", WORKED_GROUP)):
        want = torch.tensor([[int(c) for c in row.split()] for row in table])
        err = float((subsequence_ids(8, 8, 2, pattern) != want).sum())
        _check("worked example 3.5 ids, %s pattern" % pattern, err, 0.0, results)
        m = sparse_mask(1, 8, 8, 2, pattern)
        _check("  mask: 4 blocks of 16 (%s)" % pattern, abs(float(m.sum()) - 4 * 16 * 16), 0.0, results)
    # listed storage positions of token subsequence 3 members in the group pattern
    idx, valid, _, _ = _rearrange_index(1, 8, 8, 2, "group")
    where = {}
    for s in range(4):
        for pos, n in enumerate(idx[s].tolist()):
            where[(n // 8, n % 8)] = (s, pos)
    want = {(1, 1): (0, 5), (1, 3): (1, 5), (1, 5): (0, 7), (1, 7): (1, 7), (3, 1): (2, 5),
            (3, 3): (3, 5), (5, 1): (0, 13), (7, 7): (3, 15)}
    bad = sum(where[k] != v for k, v in want.items())
    _check("worked example 3.5 group storage positions", float(bad), 0.0, results)
    # padding: 5x6 grid at P=2 pads to 8x8; ids of valid tokens unchanged by the padding
    ids = subsequence_ids(5, 6, 2, "group")
    _check("padded grid ids == unpadded formula", float((ids != subsequence_ids(8, 8, 2, "group")[:5, :6]).sum()), 0.0, results)
    ext = [padded_extent(n, P) for n, P in ((5, 2), (6, 2), (8, 2), (45, 2), (9, 3), (12, 3))]
    _check("(S1) padded extents 5,6,8,45 @P2; 9,12 @P3", float(ext != [8, 8, 8, 48, 9, 18]), 0.0, results)
    # 3.4: valid tokens per subsequence at 720P (21x45x80, P=2): 19320 (p=0) / 18480 (p=1)
    for pattern in ("token", "group"):
        cnt = torch.bincount(subsequence_ids(45, 80, 2, pattern).reshape(-1), minlength=4) * 21
        _check("3.4 valid counts at 720P (%s)" % pattern,
               float(cnt.tolist() != [19320, 19320, 18480, 18480]), 0.0, results)

    g = torch.Generator().manual_seed(2)
    base = dict(dim=24, num_heads=2, ffn_dim=32, num_layers=8, in_dim=3, out_dim=2, text_dim=5,
                text_len=4, freq_dim=8, patch_size=(1, 2, 2))
    full = make_config(**base)
    p = random_params(full, g)
    for P, (T, H, W) in ((2, (2, 10, 12)), (2, (2, 16, 16)), (3, (2, 18, 24))):
        lat, ts, text, R = random_inputs(full, 2, T, H, W, g)
        ref, rg, _, _ = forward_backward(p, full, lat, ts, text, R)
        hyb = make_config(**base, mode="hybrid", sparse_ratio=P, num_full_blocks=4)
        assert block_kinds(hyb) == ["full"] * 2 + ["token", "group"] * 2 + ["full"] * 2
        o_m, g_m, gl_m, gt_m = forward_backward(p, hyb, lat, ts, text, R, "mask")
        o_g, g_g, gl_g, gt_g = forward_backward(p, hyb, lat, ts, text, R, "gather")
        tag = "P=%d grid %dx%d" % (P, H // 2, W // 2)
        _check("%s: mask == pad/rearrange path (out)" % tag, _rel(o_m, o_g), 1e-12, results)
        _check("%s: mask == pad/rearrange path (grads)" % tag,
               max([_rel(g_m[k], g_g[k]) for k in g_m] + [_rel(gl_m, gl_g), _rel(gt_m, gt_g)]), 1e-11, results)
        d = _rel(o_m, ref)
        _check("%s: hybrid differs from full (rel > 1e-3)" % tag, 0.0 if d > 1e-3 else 1.0, 0.0, results)
        allfull = make_config(**base, mode="hybrid", sparse_ratio=P, num_full_blocks=8)
        _check("%s: hybrid K=num_layers == full" % tag, _rel(forward(p, allfull, lat, ts, text), ref), 0.0, results)
        one = make_config(**base, mode="hybrid", sparse_ratio=1, num_full_blocks=4)
        _check("%s: hybrid P=1 == full" % tag, _rel(forward(p, one, lat, ts, text), ref), 1e-13, results)


def selftest(which="all"):
    torch.set_num_threads(1)
    results = []
    if which in ("full", "all"):
        print("wan_ref self-test: full model")
        _selftest_full(results)
    if which in ("hybrid", "all"):
        print("wan_ref self-test: hybrid (Skiparse-2D mask)")
        _selftest_hybrid(results)
    nbad = results.count(False)
    print("wan_ref self-test: %d checks, %d failed" % (len(results), nbad))
    return 1 if nbad else 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--selftest":
        sys.exit(selftest(sys.argv[2] if len(sys.argv) > 2 else "all"))
    print("usage: wan_ref.py --selftest [full|hybrid|all]", file=sys.stderr)
    sys.exit(2)
