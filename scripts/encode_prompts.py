#!/usr/bin/env python3
"""encode_prompts.py — umT5 embeddings of prompts for `osp sample --prompts`.

usage:
  encode_prompts.py PROMPTS.txt --model WAN_DIR --out prompts.h5 [--negative TEXT]
  encode_prompts.py PROMPTS.txt --tiny-random SEED --out prompts.h5        (no weights)

PROMPTS.txt holds one prompt per line (blank lines and lines starting with # are skipped).
Each prompt is whitespace cleaned, tokenized to 512 tokens and encoded by the umT5 encoder
exactly as scripts/prepare_data.py encodes captions (trimmed to the true length, rows past
it zero). Written atomically to prompts.h5:

  text      [N, 512, Dt]  float32 (--dtype bf16/fp16 to store half precision)
  text_len  [N]           int32
  prompts   [N]           strings (name the sampled files)
  negative  [512, Dt]     the --negative prompt's embedding (absent: `osp sample` guides
                          against an all-zero embedding)
  negative_prompt [1]     its text

`osp data inspect prompts.h5` reports the file. --model, --text-encoder, --tokenizer,
--tiny-random, --text-config and --device are as in prepare_data.py (which see).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    print(f"encode_prompts: error: {msg}", file=sys.stderr)
    sys.exit(1)


def load_text_model(args, device):
    """(tokenizer, encoder, description) as prepare_data.py builds them"""
    import json
    import torch
    import prepare_data as pd
    if args.tiny_random is not None or args.text_config:
        from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel
        seed = args.tiny_random if args.tiny_random is not None else 0
        tcfg = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                    relative_attention_num_buckets=32, dropout_rate=0.0)
        if args.text_config:
            with open(args.text_config) as fh:
                tcfg = json.load(fh)
        torch.manual_seed(seed + 1)  # the same weights as prepare_data.py --tiny-random SEED
        te = UMT5EncoderModel(UMT5Config(**tcfg))
        tok = ByT5Tokenizer() if not args.tokenizer else pd._tokenizer(args.tokenizer)
        desc = f"random UMT5EncoderModel (d_model {te.config.d_model}, seed {seed + 1})"
    else:
        from transformers import UMT5EncoderModel
        if not (args.model or (args.text_encoder and args.tokenizer)):
            die("give --model WAN_DIR (or --text-encoder and --tokenizer, or --tiny-random SEED)")
        src = args.text_encoder or args.model
        sub = {} if args.text_encoder else {"subfolder": "text_encoder"}
        try:
            te = UMT5EncoderModel.from_pretrained(src, torch_dtype=torch.float32, **sub)
        except Exception as e:  # noqa: BLE001
            die(f"{src}: cannot load the umT5 encoder ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        tok = pd._tokenizer(args.tokenizer or args.model, sub_ok=not args.tokenizer)
        desc = f"UMT5EncoderModel {src}"
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    te = te.to(device=device, dtype=dt[args.text_dtype or ("bf16" if device.type == "cuda" else "fp32")]).eval()
    return tok, te, desc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("prompts", help="text file, one prompt per line")
    ap.add_argument("--out", required=True)
    ap.add_argument("--negative", help="negative prompt (e.g. Wan2.1's default negative prompt)")
    ap.add_argument("--model", help="diffusers Wan2.1 folder or Hub id (text_encoder/, tokenizer/)")
    ap.add_argument("--text-encoder")
    ap.add_argument("--tokenizer")
    ap.add_argument("--tiny-random", type=int, metavar="SEED")
    ap.add_argument("--text-config")
    ap.add_argument("--text-len", type=int, default=512)
    ap.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="storage")
    ap.add_argument("--text-dtype", choices=("fp32", "bf16", "fp16"), help="compute (default bf16 on cuda)")
    ap.add_argument("--device")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    try:
        import h5py
        import numpy as np
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        die(f"{e.name} is not installed (needs torch, numpy, h5py, transformers, sentencepiece)")
    except Exception as e:  # noqa: BLE001 - e.g. a diffusers newer than the installed torch supports
        die(f"cannot import the libraries ({type(e).__name__}: {e}); current diffusers/transformers need torch >= 2")
    import prepare_data as pd
    try:
        with open(args.prompts, encoding="utf-8") as fh:
            prompts = [pd.clean_caption(ln) for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as e:
        die(f"{args.prompts}: cannot read ({e.strerror})")
    if not prompts:
        die(f"{args.prompts}: no prompts")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.set_grad_enabled(False)
    tok, te, desc = load_text_model(args, device)
    m = {"tok": tok, "te": te}
    embs, lens = [], []
    for i in range(0, len(prompts), args.batch):
        e, n = pd.encode_text(m, prompts[i:i + args.batch], args.text_len, device)
        embs.append(e)
        lens.append(n)
    text, text_len = np.concatenate(embs), np.concatenate(lens).astype(np.int32)
    tmp = f"{args.out}.tmp.{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            arr, attr = pd.to_store(text, args.dtype)
            d = f.create_dataset("text", data=arr)
            if attr:
                d.attrs["dtype"] = attr
            f["text_len"] = text_len
            s = h5py.string_dtype("utf-8")
            f.create_dataset("prompts", data=np.array(prompts, dtype=object), dtype=s)
            if args.negative is not None:
                ne, _ = pd.encode_text(m, [pd.clean_caption(args.negative)], args.text_len, device)
                arr, attr = pd.to_store(ne[0], args.dtype)
                d = f.create_dataset("negative", data=arr)
                if attr:
                    d.attrs["dtype"] = attr
                f.create_dataset("negative_prompt", data=np.array([args.negative], dtype=object), dtype=s)
            f.attrs["text_encoder"] = desc
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"wrote {args.out}: {len(prompts)} prompt(s), text [{text.shape[0]},{text.shape[1]},{text.shape[2]}] "
          f"{args.dtype}, text_len {int(text_len.min())}..{int(text_len.max())}"
          f"{', negative' if args.negative is not None else ''} ({desc})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
