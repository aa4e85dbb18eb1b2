#!/usr/bin/env bash
# test_cli_errors.sh — bad user input never crashes osp. Every case below must exit with
# status 1 (not >= 128, i.e. no signal/abort, and not 0) and print exactly one line on
# stderr that starts with "osp: error:" and names the offending file/key/word. The --help
# forms must exit 0 and print a usage text on stdout.
# Env: OSP (binary), PY (python3 with numpy and h5py), TMPROOT (scratch root).
set -euo pipefail
: "${OSP:?set OSP to the osp binary}" "${PY:=python3}" "${TMPROOT:=/tmp}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS=1
ulimit -c 0
mkdir -p "$TMPROOT"
W=$(mktemp -d "$TMPROOT/cli_errors.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$W"; else echo "(kept $W)" >&2; fi' EXIT
cd "$W"
DEV="${OSP_TEST_DEVICE:-cpu}"
nfail=0
ncase=0

# expect_error NAME NEEDLE [NEEDLE2] -- COMMAND...: exit 1, one stderr line, prefix, needles
expect_error() {
    local name=$1 n1=$2 n2="" rc
    shift 2
    if [ "$1" != "--" ]; then n2=$1; shift; fi
    shift
    ncase=$((ncase + 1))
    set +e
    "$@" >"out.$ncase" 2>"err.$ncase"
    rc=$?
    set -e
    local lines first why=""
    lines=$(awk 'END { print NR }' "err.$ncase")
    first=$(head -n 1 "err.$ncase")
    if [ $rc -ne 1 ]; then why="exit status $rc (expected 1)"
    elif [ "$lines" -ne 1 ]; then why="$lines lines on stderr (expected 1)"
    elif [[ "$first" != "osp: error: "* ]]; then why="stderr does not start with 'osp: error: '"
    elif ! grep -qF -- "$n1" "err.$ncase"; then why="message does not name '$n1'"
    elif [ -n "$n2" ] && ! grep -qF -- "$n2" "err.$ncase"; then why="message does not name '$n2'"
    fi
    if [ -n "$why" ]; then
        echo "FAIL  $name: $why" >&2
        sed 's/^/      stderr: /' "err.$ncase" | head -5 >&2
        nfail=$((nfail + 1))
    else
        echo "ok    $name: $first"
    fi
}

# expect_help NAME COMMAND...: exit 0 and "usage" on stdout
expect_help() {
    local name=$1 rc
    shift
    set +e
    "$@" >help.out 2>help.err
    rc=$?
    set -e
    if [ $rc -eq 0 ] && grep -qi "usage" help.out; then
        echo "ok    $name: exit 0, $(wc -l <help.out) lines of usage"
    else
        echo "FAIL  $name: exit $rc, usage on stdout: $(grep -ci usage help.out || true)" >&2
        nfail=$((nfail + 1))
    fi
}

# ---------------------------------------------------------------- inputs
TINY=(--set model.dim=32 --set model.ffn_dim=64 --set model.num_heads=2 --set model.num_layers=2 --set device=$DEV)
mkdir D
"$OSP" data synth --out D/s_train.h5 --num 8 --num-val 4 --frames 4 --size 16 >/dev/null
"$OSP" train "${TINY[@]}" --set data.train=D/s_train.h5 --set data.val= --set train.batch_size=4 \
    --set train.steps=1 --set run_dir=R >train.log 2>&1 || { tail -3 train.log; echo "FAIL: setup training run" >&2; exit 1; }
GOOD=R/checkpoints/step_00000001/model.safetensors
[ -f $GOOD ] || { echo "FAIL: setup produced no checkpoint" >&2; exit 1; }

printf 'model:\n  dim: 32\n  dimm: 3\n' >unknown_key.yaml
printf 'model:\n  dim: abc\n' >wrong_type.yaml
printf 'model:\n  dim: [1, 2\n' >malformed.yaml

"$PY" - <<'EOF'
import json, struct
import h5py
import numpy as np
r = np.random.default_rng(7)
def randn(*s):
    return r.standard_normal(s).astype("f4")
with h5py.File("no_text.h5", "w") as f:
    f["latents"] = randn(4, 3, 4, 16, 16)
with h5py.File("rank4.h5", "w") as f:
    f["latents"] = randn(4, 3, 16, 16)
    f["text"] = randn(4, 8, 32)
with h5py.File("four_channels.h5", "w") as f:
    f["latents"] = randn(4, 4, 4, 16, 16)
    f["text"] = randn(4, 8, 32)
with h5py.File("text_dim16.h5", "w") as f:
    f["latents"] = randn(4, 3, 4, 16, 16)
    f["text"] = randn(4, 8, 16)
with h5py.File("nan.h5", "w") as f:
    x = randn(8, 3, 4, 16, 16)
    x[:, 1, 2, 3, 4] = np.nan  # one NaN pixel in every clip: every batch is poisoned
    f["latents"] = x
    f["text"] = randn(8, 8, 32)
with h5py.File("fwd_channels.h5", "w") as f:  # checkpoint has 3 input channels
    f["latents"] = randn(1, 4, 4, 16, 16)
    f["timesteps"] = np.array([500.0], "f4")
    f["text"] = randn(1, 8, 32)
good = open("R/checkpoints/step_00000001/model.safetensors", "rb").read()
open("truncated.safetensors", "wb").write(good[: len(good) // 2])
b = bytearray(good)
b[:8] = struct.pack("<Q", len(good) * 10)  # header length past the end of the file
open("header_past_end.safetensors", "wb").write(b)
n = struct.unpack("<Q", good[:8])[0]
b = bytearray(good)
b[8:8 + n] = b"{" * n
open("bad_json.safetensors", "wb").write(b)
# issue 21 fixtures
with h5py.File("fwd_bad_r.h5", "w") as f:  # R of the wrong shape: fails after OUT.h5's temp file exists
    f["latents"] = randn(1, 3, 4, 16, 16)
    f["timesteps"] = np.array([500.0], "f4")
    f["text"] = randn(1, 8, 32)
    f["R"] = randn(1, 3, 4, 16, 8)
with h5py.File("fwd_huge_dims.h5", "w") as f:  # claims 2^62 columns, stores nothing
    f.create_dataset("latents", shape=(1, 3, 4, 16, 2**62), chunks=(1, 3, 4, 16, 16), dtype="f4")
    f["timesteps"] = np.array([500.0], "f4")
    f["text"] = randn(1, 8, 32)
# a checkpoint whose head predicts 6 channels from 3 (sampling needs out = in)
hl = struct.unpack("<Q", good[:8])[0]
hdr = json.loads(good[8:8 + hl])
data = good[8 + hl:]
out_hdr, out_data = {}, b""
for k in sorted(hdr):
    if k == "__metadata__":
        out_hdr[k] = hdr[k]
        continue
    e = hdr[k]
    raw = data[e["data_offsets"][0]:e["data_offsets"][1]]
    shape = list(e["shape"])
    if k in ("head.head.weight", "head.head.bias"):
        raw = raw + raw
        shape[0] *= 2
    out_hdr[k] = {"dtype": e["dtype"], "shape": shape, "data_offsets": [len(out_data), len(out_data) + len(raw)]}
    out_data += raw
h = json.dumps(out_hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
import os
os.makedirs("R6", exist_ok=True)
open("R6/model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + out_data)
EOF

# ---------------------------------------------------------------- config
expect_error "yaml unknown key" "unknown_key.yaml:3" "model.dimm" -- "$OSP" train unknown_key.yaml
expect_error "yaml wrong type" "wrong_type.yaml:2" "model.dim" -- "$OSP" train wrong_type.yaml
expect_error "yaml syntax" "malformed.yaml:" -- "$OSP" train malformed.yaml
expect_error "missing config file" "no_such.yaml" -- "$OSP" train no_such.yaml
expect_error "--set unknown key" "model.dimm" -- "$OSP" train --set model.dimm=3
expect_error "--set wrong type" "train.steps" -- "$OSP" train --set train.steps=abc
expect_error "--set bad enum" "model.attention.mode" "sparse" -- "$OSP" train --set model.attention.mode=sparse
expect_error "--set without =" "train.steps" -- "$OSP" train --set train.steps
expect_error "cross-field validation" "model.num_layers" -- "$OSP" train --set model.attention.mode=hybrid \
    --set model.num_layers=3 --set run_dir=X
expect_error "unknown option" "--bogus" -- "$OSP" train --bogus

# ---------------------------------------------------------------- data
DT=("${TINY[@]}" --set data.val= --set train.batch_size=4 --set train.steps=2 --set run_dir=X)
expect_error "missing data file" "no_such_data.h5" -- "$OSP" train "${DT[@]}" --set data.train=no_such_data.h5
expect_error "data without text" "no_text.h5" "text" -- "$OSP" train "${DT[@]}" --set data.train=no_text.h5
expect_error "latents of rank 4" "rank4.h5" "latents" -- "$OSP" train "${DT[@]}" --set data.train=rank4.h5
expect_error "latents channels vs model" "four_channels.h5" "channels" -- "$OSP" train "${DT[@]}" \
    --set data.train=four_channels.h5
expect_error "text dim vs model" "text_dim16.h5" "text" -- "$OSP" train "${DT[@]}" --set data.train=text_dim16.h5
expect_error "missing val file" "no_such_val.h5" -- "$OSP" train "${DT[@]}" --set data.train=D/s_train.h5 \
    --set data.val=no_such_val.h5
expect_error "NaN latents, max_skipped 2" "non-finite" -- "$OSP" train "${DT[@]}" --set data.train=nan.h5 \
    --set train.max_skipped=2 --set train.steps=10 --set run_dir=N
skips=$(grep -c "update skipped" "out.$ncase" || true)
if [ "$skips" -ne 3 ]; then
    echo "FAIL  NaN latents: $skips skipped updates logged before stopping (expected max_skipped + 1 = 3)" >&2
    nfail=$((nfail + 1))
else
    echo "      (3 updates skipped, then stopped)"
fi

# ---------------------------------------------------------------- checkpoints
expect_error "truncated safetensors" "truncated.safetensors" -- "$OSP" ckpt inspect truncated.safetensors
expect_error "header length past end" "header_past_end.safetensors" -- "$OSP" ckpt inspect header_past_end.safetensors
expect_error "malformed safetensors JSON" "bad_json.safetensors" -- "$OSP" ckpt inspect bad_json.safetensors
expect_error "missing checkpoint" "no_such.safetensors" -- "$OSP" ckpt inspect no_such.safetensors
expect_error "forward: channels vs checkpoint" "fwd_channels.h5" "channels" -- "$OSP" forward --ckpt $GOOD \
    --inputs fwd_channels.h5 --out fwd_out.h5 --heads 2 --set device=$DEV
expect_error "forward: truncated checkpoint" "truncated.safetensors" -- "$OSP" forward --ckpt truncated.safetensors \
    --inputs fwd_channels.h5 --out fwd_out.h5

# ---------------------------------------------------------------- sample / dispatch
expect_error "sample: unknown prompt word" "sideways" -- "$OSP" sample --ckpt R --prompt "red circle moving sideways" \
    "${TINY[@]}"
expect_error "sample: no checkpoint in run_dir" "nowhere" -- "$OSP" sample --prompt "red circle moving left" \
    --set run_dir=nowhere
expect_error "sample: position table unlike training" "config.yaml" "model.pos_embed=rope" -- "$OSP" sample --ckpt R \
    --prompt "red circle moving left" "${TINY[@]}" --set model.pos_embed=rope+sincos
expect_error "unknown command" "nosuchcmd" -- "$OSP" nosuchcmd
expect_error "unknown data action" "bogus" -- "$OSP" data bogus

# ---------------------------------------------------------------- issue 21: sizes, files, messages
expect_error "--steps past INT_MAX" "--steps" "out of range" -- "$OSP" sample --ckpt R --prompt "red circle moving left" \
    --steps 4294967297 "${TINY[@]}"
expect_error "sample --steps near INT_MAX" "sample.steps" -- "$OSP" sample --ckpt R --prompt "red circle moving left" \
    --steps 2147483647 "${TINY[@]}"
expect_error "data.prefetch near INT_MAX" "data.prefetch" -- "$OSP" train "${DT[@]}" --set data.prefetch=2147483647
expect_error "sparse_ratio P^2 past int" "model.attention.sparse_ratio" -- "$OSP" train "${DT[@]}" \
    --set model.attention.mode=hybrid --set model.attention.sparse_ratio=65536
expect_error "val_batches printed as an integer" "train.val_batches" "got -2147483648" -- "$OSP" train "${DT[@]}" \
    --set train.val_batches=-2147483648
expect_error "out_channels vs data channels" "model.out_channels" -- "$OSP" train "${DT[@]}" \
    --set data.train=D/s_train.h5 --set model.out_channels=4
expect_error "sample: checkpoint with out_channels != in_channels" "R6/model.safetensors" "out_channels" -- \
    "$OSP" sample --ckpt R6/model.safetensors --prompt "red circle moving left" "${TINY[@]}" --out S6
expect_error "forward: inputs claiming 2^62 columns" "fwd_huge_dims.h5" -- "$OSP" forward --ckpt $GOOD \
    --inputs fwd_huge_dims.h5 --out fwd_out.h5 --heads 2 --set device=$DEV
expect_error "forward: missing options, one line" "--inputs" -- "$OSP" forward --ckpt $GOOD
expect_error "forward: error after OUT.h5 was opened" "fwd_bad_r.h5" "R must have" -- "$OSP" forward --ckpt $GOOD \
    --inputs fwd_bad_r.h5 --out fwd_r.h5 --heads 2 --set device=$DEV
if ls fwd_r.h5* >/dev/null 2>&1; then
    echo "FAIL  forward: a failed run left $(ls fwd_r.h5*)" >&2
    nfail=$((nfail + 1))
else
    echo "      (no fwd_r.h5 or fwd_r.h5.tmp.* left behind)"
fi
mkfifo fifo.yaml fifo.safetensors fifo.h5
expect_error "FIFO as config" "fifo.yaml" "not a regular file" -- timeout 20 "$OSP" train fifo.yaml
expect_error "FIFO as checkpoint" "fifo.safetensors" "not a regular file" -- timeout 20 "$OSP" ckpt inspect fifo.safetensors
expect_error "FIFO as data" "fifo.h5" "not a regular file" -- timeout 20 "$OSP" train "${DT[@]}" --set data.train=fifo.h5
expect_error "newline in a path: one escaped line" 'no\nsuch.yaml' -- "$OSP" train "$(printf 'no\nsuch.yaml')"
# a failed start keeps the previous run's config.yaml
cp R/config.yaml config.before
expect_error "failed start keeps run_dir/config.yaml" "no_such_data.h5" -- "$OSP" train "${TINY[@]}" --set run_dir=R \
    --set data.train=no_such_data.h5 --set train.steps=7
if cmp -s R/config.yaml config.before; then echo "      (R/config.yaml unchanged)"
else echo "FAIL  failed start rewrote R/config.yaml" >&2; nfail=$((nfail + 1)); fi
# no action: usage, then one error line, exit 2
for args in "" "data" "ckpt"; do
    set +e
    # shellcheck disable=SC2086
    "$OSP" $args >noact.out 2>noact.err
    rc=$?
    set -e
    if [ $rc -eq 2 ] && grep -qi usage noact.err && [ "$(grep -c '^osp: error: ' noact.err)" -eq 1 ] &&
        tail -n 1 noact.err | grep -q '^osp: error: '; then
        echo "ok    osp $args without action: exit 2, $(tail -n 1 noact.err)"
    else
        echo "FAIL  osp $args without action: exit $rc, stderr: $(tail -n 1 noact.err)" >&2
        nfail=$((nfail + 1))
    fi
done

expect_help "osp --help" "$OSP" --help
expect_help "osp train --help" "$OSP" train --help
expect_help "osp sample --help" "$OSP" sample --help
expect_help "osp data synth --help" "$OSP" data synth --help
expect_help "osp ckpt --help" "$OSP" ckpt --help
expect_help "osp forward --help" "$OSP" forward --help

if [ $nfail -ne 0 ]; then
    echo "FAIL test_cli_errors: $nfail of $ncase error cases / help checks failed" >&2
    exit 1
fi
echo "PASS test_cli_errors: $ncase error cases and 6 --help forms"
