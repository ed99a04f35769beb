"""PyTorch side of bench/layers.py: the same convolutions, timed the same way. Run by
bench/layers.py with a Python that has torch; torch is never a project dependency.

Prints one JSON line: {"torch": version, "threads": n, "layers": {name: {"forward_ms",
"backward_ms"}}}.
"""
import argparse
import json

import torch
from serve import timed    # bench/serve.py: the script's folder is on sys.path
from torch import nn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--specs", required=True,
                   help='JSON [[name, "conv"|"deconv", [H, W, C], filters], ...]')
    args = p.parse_args()
    torch.manual_seed(0)
    out = {}
    for name, kind, (h, w, c), filters in json.loads(args.specs):
        # 5x5, stride 2, 'same' padding as Keras: the output is 2H x 2W (deconv), H/2 x W/2.
        layer = (nn.ConvTranspose2d(c, filters, 5, 2, padding=2, output_padding=1)
                 if kind == "deconv" else nn.Conv2d(c, filters, 5, 2, padding=2))
        x = torch.rand(args.batch_size, c, h, w) * 2 - 1
        x.requires_grad_(True)
        with torch.no_grad():
            dy = torch.rand_like(layer(x)) * 2 - 1

        def forward():
            with torch.no_grad():
                layer(x)

        def backward():
            layer.zero_grad()
            x.grad = None
            (layer(x) * dy).sum().backward()

        out[name] = {"forward_ms": timed(forward, args.repeats),
                     "backward_ms": timed(backward, args.repeats)}
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "layers": out}))


if __name__ == "__main__":
    main()
