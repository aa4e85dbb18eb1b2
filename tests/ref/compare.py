"""compare.py -- compares an HDF5 result A (e.g. from `osp forward`) with the reference B
(expected.h5 from make_case.py): `out` and every dataset under the --prefix groups of B
(default `grads`) by relative error ||a-b|| / ||b|| in float64.

  python3 compare.py A.h5 B.h5 [--tol 1e-4] [--prefix grads] [--prefix grads_input]

Prints one row per dataset and the maximum; exits 1 if any error exceeds tol, any dataset of
B is missing from A (named), shapes differ, or A holds non-finite values.
"""
import argparse
import os
import sys

import h5py
import numpy as np


def datasets(f, prefix):
    names = []
    if prefix not in f:
        return names
    obj = f[prefix]
    if isinstance(obj, h5py.Dataset):
        return [prefix]
    obj.visititems(lambda n, o: names.append(prefix + "/" + n) if isinstance(o, h5py.Dataset) else None)
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description="relative-error comparison of two HDF5 files")
    ap.add_argument("a", help="result to check")
    ap.add_argument("b", help="expected (reference)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--prefix", action="append", default=None,
                    help="group of B to compare besides `out` (repeatable; default grads)")
    args = ap.parse_args(argv)
    prefixes = args.prefix if args.prefix else ["grads"]
    failures, worst, worst_name = [], 0.0, ""
    for path in (args.a, args.b):
        if not os.path.isfile(path):
            print("compare: %s: no such file" % path)
            return 1
    with h5py.File(args.a, "r") as fa, h5py.File(args.b, "r") as fb:
        names = datasets(fb, "out")
        for p in prefixes:
            names += datasets(fb, p)
        if not names:
            print("compare: %s has no `out` or %s datasets" % (args.b, "/".join(prefixes)))
            return 1
        print("%-56s %12s" % ("dataset", "rel err"))
        for n in names:
            if n not in fa:
                print("%-56s %12s" % (n, "MISSING"))
                failures.append(n + " missing from " + args.a)
                continue
            a = np.asarray(fa[n], dtype=np.float64)
            b = np.asarray(fb[n], dtype=np.float64)
            if a.shape != b.shape:
                print("%-56s %12s" % (n, "SHAPE"))
                failures.append("%s shape %s != expected %s" % (n, a.shape, b.shape))
                continue
            if not np.all(np.isfinite(a)):
                print("%-56s %12s" % (n, "NONFINITE"))
                failures.append(n + " has non-finite values")
                continue
            nb = np.linalg.norm(b)
            err = np.linalg.norm(a - b) / nb if nb > 0 else np.linalg.norm(a - b)
            flag = "  FAIL" if err > args.tol else ""
            print("%-56s %12.3e%s" % (n, err, flag))
            if err > args.tol:
                failures.append("%s rel err %.3e > tol %.1e" % (n, err, args.tol))
            if err >= worst:
                worst, worst_name = err, n
    print("compare: %d datasets, max rel err %.3e (%s), tol %.1e" % (len(names), worst, worst_name, args.tol))
    for m in failures:
        print("compare: FAIL " + m)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
