#!/usr/bin/env python3
"""Cross-check osp's UniPC (train/flow.c) against diffusers' UniPCMultistepScheduler configured
as Wan's FlowUniPC (flow sigmas, bh2, order 2, predict x0, lower_order_final, final sigma 0),
stepping both with the exact velocity of a Gaussian data distribution on osp's sigma schedule.
Needs torch and diffusers (not part of CI). Compiles train/flow.c into a temporary shared
library with `cc`. Usage: python3 tests/ref/check_unipc.py  (exit 1 if they differ > 1e-5)."""
import ctypes, os, subprocess, sys, tempfile
import numpy as np
import torch
from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
tmp = tempfile.mkdtemp()
so = os.path.join(tmp, "libflow.so")
subprocess.check_call(["cc", "-O2", "-fPIC", "-shared", "-fopenmp", "-D_GNU_SOURCE", "-I" + SRC, "-I" + SRC + "/model",
                       SRC + "/train/flow.c", SRC + "/model/common.c", "-o", so, "-lm"])
lib = ctypes.CDLL(so)


class Unipc(ctypes.Structure):
    _fields_ = [("N", ctypes.c_int), ("n", ctypes.c_int64), ("sig", ctypes.c_void_p), ("m1", ctypes.c_void_p),
                ("m2", ctypes.c_void_p), ("xlast", ctypes.c_void_p), ("plast", ctypes.c_int)]


MU = np.array([1.5, -0.7, 0.3, 2.0])
SD = np.array([0.5, 0.2, 1.3, 0.05])


def vel(x, s):
    a = 1 - s
    var = a * a * SD * SD + s * s
    r = x - a * MU
    return s / var * r - (MU + a * SD * SD / var * r)


ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)
worst = 0.0
for N, shift in [(10, 1.0), (20, 3.0), (50, 5.0)]:
    sig = np.zeros(N + 1, dtype=np.float32)
    ts = np.zeros(N, dtype=np.float32)
    lib.flow_schedule(N, ctypes.c_float(shift), ptr(sig), ptr(ts))
    x0 = np.array([0.3, -1.0, 0.5, 1.7], dtype=np.float32)
    u = Unipc()
    lib.flow_unipc_init(ctypes.byref(u), N, ptr(sig), ctypes.c_int64(4))
    x = x0.copy()
    for k in range(N):
        v = vel(x.astype(np.float64), float(sig[k])).astype(np.float32)
        lib.flow_unipc_step(ctypes.byref(u), k, ptr(x), ptr(v))
    sch = UniPCMultistepScheduler(num_train_timesteps=1000, solver_order=2, prediction_type="flow_prediction",
                                  use_flow_sigmas=True, flow_shift=1.0, predict_x0=True, solver_type="bh2",
                                  lower_order_final=True, final_sigmas_type="zero")
    sch.set_timesteps(N)
    sch.sigmas = torch.tensor(sig)  # osp's (Wan's) schedule, final sigma 0
    sch.timesteps = torch.tensor(ts.astype(np.int64))
    xt = torch.tensor(x0).view(1, 1, 4)
    for k in range(N):
        v = torch.tensor(vel(xt.double().numpy().reshape(4), float(sig[k])).astype(np.float32)).view(1, 1, 4)
        xt = sch.step(v, sch.timesteps[k], xt, return_dict=False)[0]
    d = float(np.abs(x - xt.numpy().reshape(4)).max())
    worst = max(worst, d)
    print(f"N {N:3d} shift {shift}: max |osp - diffusers| = {d:.2e}")
print("check_unipc:", "ok" if worst < 1e-5 else "MISMATCH")
sys.exit(0 if worst < 1e-5 else 1)
