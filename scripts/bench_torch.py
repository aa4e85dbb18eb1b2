#!/usr/bin/env python3
"""bench_torch.py -- the PyTorch side of osp's GPU benchmarks, measured on the same card in the
same call as `osp bench`, so that the reported numbers are ratios on one machine.

  python3 scripts/bench_torch.py [--json OUT.json] [--quick]

(a) attention: every SDPA backend (flash, cudnn, efficient; a backend that raises is skipped)
    at Wan2.1-1.3B shapes (12 heads x 128, bf16, batch 1) for 480P (32,760 tokens) and 720P
    (75,600), and the Skiparse P=2 case "4 subsequences of a quarter length" (batch 4, N/4
    tokens), forward and forward+backward. TFLOP/s = 4 N^2 d H for the forward, 3.5x that for
    forward+backward; the 4-subsequence case counts 4 * 4 (N/4)^2 d H.
(b) diffusers WanTransformer3DModel with the Wan2.1-1.3B config, random init, bf16: forward at
    480P (latent [1,16,21,60,104]) and 720P ([1,16,21,90,160]) with text [1,512,4096], with the
    SDPA backend PyTorch picks by default (named from a profiler trace) and, for 480P, forced
    to cuDNN.
(c) one training step at 480P: forward + backward with gradient checkpointing, bf16 parameters,
    loss = out.float().square().mean(); median ms and torch.cuda.max_memory_allocated().

Timing: CUDA events around each call after warm-up, median of the repeats. A global time budget
(--budget, default 200 s) skips what is left with a note, so the whole run stays within a few
minutes; --quick uses fewer repeats and skips the 720P model forward.
"""
import argparse
import datetime
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HEADS, HEAD_DIM = 12, 128
TOKENS = {"480P": 32760, "720P": 75600}
LATENT = {"480P": (1, 16, 21, 60, 104), "720P": (1, 16, 21, 90, 160)}
WAN13B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
              out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
              cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)

T0 = time.time()
NOTES = []


def note(msg):
    NOTES.append(msg)
    print("note: " + msg, flush=True)


def over_budget(args, what):
    if time.time() - T0 > args.budget:
        note("skipped %s: time budget of %.0f s used up" % (what, args.budget))
        return True
    return False


def sdpa_backends():
    """[(name, context-manager factory)] for the SDPA backends this torch can force."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        out = [("flash", lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION))]
        if hasattr(SDPBackend, "CUDNN_ATTENTION"):
            out.append(("cudnn", lambda: sdpa_kernel(SDPBackend.CUDNN_ATTENTION)))
        out.append(("efficient", lambda: sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION)))
        return out
    except ImportError:  # torch < 2.3: the older switch, no cuDNN
        from torch.backends.cuda import sdp_kernel
        return [("flash", lambda: sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False)),
                ("efficient", lambda: sdp_kernel(enable_flash=False, enable_math=False, enable_mem_efficient=True))]


def time_ms(fn, warmup, repeat):
    """Median milliseconds of fn() over `repeat` calls, CUDA events, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def short_error(e):
    s = str(e).strip().splitlines()
    return "%s: %s" % (type(e).__name__, (s[0] if s else "")[:160])


# --------------------------------------------------------------------------- (a) attention

def bench_attention(args):
    rows = []
    warm, rep = (1, 3) if args.quick else (2, 5)
    cases = []
    for res, n in TOKENS.items():
        cases.append(("%s full" % res, 1, n))
        cases.append(("%s 4 x N/4" % res, 4, n // 4))
    for name, ctx in sdpa_backends():
        for label, batch, n in cases:
            if over_budget(args, "attention %s %s" % (name, label)):
                return rows
            flops = 4.0 * batch * n * n * HEAD_DIM * HEADS
            q, k, v = (torch.randn(batch, HEADS, n, HEAD_DIM, device="cuda", dtype=torch.bfloat16,
                                   requires_grad=True) for _ in range(3))
            g = torch.randn_like(q)
            base = dict(backend=name, case=label, batch=batch, tokens=n, heads=HEADS, head_dim=HEAD_DIM)
            for pas, mult in (("fwd", 1.0), ("fwd+bwd", 3.5)):
                row = dict(base, **{"pass": pas})
                try:
                    with ctx():
                        if pas == "fwd":
                            def fn():
                                with torch.no_grad():
                                    F.scaled_dot_product_attention(q, k, v)
                        else:
                            def fn():
                                F.scaled_dot_product_attention(q, k, v).backward(g)
                        ms = time_ms(fn, warm, rep)
                    row.update(ms=round(ms, 3), tflops=round(mult * flops / ms / 1e9, 1))
                    print("attention %-9s %-12s %-7s %9.2f ms %6.0f TFLOP/s" % (name, label, pas, ms, row["tflops"]),
                          flush=True)
                except Exception as e:  # unsupported backend/shape, or OOM: record and go on
                    row.update(skipped=short_error(e))
                    print("attention %-9s %-12s %-7s skipped (%s)" % (name, label, pas, row["skipped"]), flush=True)
                    torch.cuda.empty_cache()
                rows.append(row)
                q.grad = k.grad = v.grad = None
            q = k = v = g = None  # free before the next shape
            torch.cuda.empty_cache()
    return rows


# --------------------------------------------------------------------------- (b), (c) the DiT

def default_sdpa_kernel(model, dtype):
    """Name of the attention kernel PyTorch runs by default inside the model (tiny input)."""
    from torch.profiler import ProfilerActivity, profile
    x = torch.randn(1, 16, 3, 16, 16, device="cuda", dtype=dtype)
    t = torch.tensor([500.0], device="cuda")
    txt = torch.randn(1, 512, 4096, device="cuda", dtype=dtype)
    with torch.no_grad():
        model(hidden_states=x, timestep=t, encoder_hidden_states=txt, return_dict=False)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            model(hidden_states=x, timestep=t, encoder_hidden_states=txt, return_dict=False)
            torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    keys = ("flash", "fmha", "cudnn", "attention", "sdpa", "attn")
    hits = [n for n in names if any(k in n.lower() for k in keys)]
    kind = "unknown"
    joined = " ".join(hits).lower()
    if "cudnn" in joined:
        kind = "cudnn"
    elif "flash" in joined:
        kind = "flash"
    elif "fmha" in joined or "efficient" in joined:
        kind = "efficient"
    return kind, hits[:4]


def bench_model(args):
    res = {}
    try:
        import diffusers
        from diffusers import WanTransformer3DModel
    except Exception as e:
        note("diffusers not importable (%s): model benchmarks skipped" % short_error(e))
        return {"skipped": "diffusers import failed: " + short_error(e)}
    res["diffusers"] = diffusers.__version__
    res["config"] = dict(WAN13B, patch_size=list(WAN13B["patch_size"]))
    dtype = torch.bfloat16
    warm, rep = (1, 2) if args.quick else (2, 5)
    t_init = time.time()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = WanTransformer3DModel(**WAN13B)
    model = model.to(dtype).eval()
    res["params"] = sum(p.numel() for p in model.parameters())
    res["init_s"] = round(time.time() - t_init, 1)
    print("model: WanTransformer3DModel 1.3B config, %.3fB parameters, bf16 (init %.1f s)"
          % (res["params"] / 1e9, res["init_s"]), flush=True)
    try:
        kind, kernels = default_sdpa_kernel(model, dtype)
        res["default_sdpa"] = kind
        res["default_sdpa_kernels"] = kernels
        print("model: default SDPA backend inside the model: %s %s" % (kind, kernels[:2]), flush=True)
    except Exception as e:
        res["default_sdpa"] = "unknown (%s)" % short_error(e)
    txt = torch.randn(1, 512, 4096, device="cuda", dtype=dtype)
    t = torch.tensor([500.0], device="cuda")

    def forward_case(key, resname, ctx=None):
        if over_budget(args, "model " + key):
            return
        x = torch.randn(*LATENT[resname], device="cuda", dtype=dtype)

        def fn():
            with torch.no_grad():
                model(hidden_states=x, timestep=t, encoder_hidden_states=txt, return_dict=False)
        try:
            torch.cuda.reset_peak_memory_stats()
            if ctx is None:
                ms = time_ms(fn, warm, rep)
            else:
                with ctx():
                    ms = time_ms(fn, warm, rep)
            res[key] = dict(latent=list(LATENT[resname]), tokens=TOKENS[resname], ms=round(ms, 1),
                            max_memory_bytes=torch.cuda.max_memory_allocated())
            print("model %-22s %9.1f ms" % (key, ms), flush=True)
        except Exception as e:  # OOM at 720P on a small card, or an unsupported forced backend
            res[key] = {"skipped": short_error(e)}
            note("model %s skipped (%s)" % (key, short_error(e)))
        x = None
        torch.cuda.empty_cache()

    forward_case("forward_480p", "480P")
    backends = dict(sdpa_backends())
    if not args.quick and "cudnn" in backends:
        forward_case("forward_480p_cudnn", "480P", backends["cudnn"])
    if args.quick:
        note("--quick: 720P model forward skipped")
    else:
        forward_case("forward_720p", "720P")

    # (c) one training step at 480P, gradient checkpointing, bf16 parameters and gradients
    if not over_budget(args, "model train_step_480p"):
        try:
            model.train()
            model.enable_gradient_checkpointing()
            x = torch.randn(*LATENT["480P"], device="cuda", dtype=dtype)

            def step():
                model.zero_grad(set_to_none=True)
                out = model(hidden_states=x, timestep=t, encoder_hidden_states=txt, return_dict=False)[0]
                out.float().square().mean().backward()
            torch.cuda.reset_peak_memory_stats()
            ms = time_ms(step, 1 if args.quick else 2, 2 if args.quick else 5)
            res["train_step_480p"] = dict(latent=list(LATENT["480P"]), tokens=TOKENS["480P"], ms=round(ms, 1),
                                          max_memory_bytes=torch.cuda.max_memory_allocated(),
                                          gradient_checkpointing=True, optimizer="none")
            print("model %-22s %9.1f ms, peak %.1f GB" % ("train_step_480p", ms,
                                                          res["train_step_480p"]["max_memory_bytes"] / 1e9), flush=True)
        except Exception as e:
            res["train_step_480p"] = {"skipped": short_error(e)}
            note("model train_step_480p skipped (%s)" % short_error(e))
    model = None
    torch.cuda.empty_cache()
    return res


# --------------------------------------------------------------------------- report

def print_table(out):
    print("\n== PyTorch %s on %s (%s)" % (out["torch"], out["device"], out["date"]))
    print("%-10s %-12s %-8s %10s %9s" % ("backend", "case", "pass", "ms", "TFLOP/s"))
    for r in out["attention"]:
        if "skipped" in r:
            print("%-10s %-12s %-8s %20s" % (r["backend"], r["case"], r["pass"], "skipped"))
        else:
            print("%-10s %-12s %-8s %10.2f %9.1f" % (r["backend"], r["case"], r["pass"], r["ms"], r["tflops"]))
    m = out.get("model", {})
    if "skipped" in m:
        print("model: skipped (%s)" % m["skipped"])
        return
    print("model (diffusers %s, default SDPA: %s)" % (m.get("diffusers", "?"), m.get("default_sdpa", "?")))
    for key in ("forward_480p", "forward_480p_cudnn", "forward_720p", "train_step_480p"):
        v = m.get(key)
        if v is None:
            continue
        if "skipped" in v:
            print("  %-20s skipped (%s)" % (key, v["skipped"]))
        else:
            print("  %-20s %9.1f ms   peak %.1f GB" % (key, v["ms"], v["max_memory_bytes"] / 1e9))
    for n in out["notes"]:
        print("note: " + n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no 720P model forward")
    ap.add_argument("--budget", type=float, default=200.0, help="seconds after which remaining parts are skipped")
    ap.add_argument("--no-model", action="store_true", help="attention only")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_torch: no CUDA device visible to PyTorch %s" % torch.__version__)
        return 1
    if not hasattr(F, "scaled_dot_product_attention"):
        print("bench_torch: PyTorch %s has no scaled_dot_product_attention (needs 2.x)" % torch.__version__)
        return 1
    out = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "flops": "attention TFLOP/s = 4*B*N^2*d*H (fwd), 3.5x for fwd+bwd",
        "attention": [],
        "model": {},
        "notes": NOTES,
    }
    print("bench_torch: torch %s, CUDA %s, cuDNN %s, %s" % (out["torch"], out["cuda"], out["cudnn"], out["device"]),
          flush=True)

    def save():
        out["elapsed_s"] = round(time.time() - T0, 1)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)

    out["attention"] = bench_attention(args)
    save()  # partial results survive a later crash or timeout
    if args.no_model:
        out["model"] = {"skipped": "--no-model"}
    else:
        try:
            out["model"] = bench_model(args)
        except Exception as e:  # keep the attention results whatever happens
            out["model"] = {"skipped": short_error(e)}
            note("model benchmarks failed: " + short_error(e))
    save()
    print_table(out)
    print("bench_torch: %.0f s%s" % (time.time() - T0, (", results in " + args.json) if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
