"""The tutorial's DCGAN step in PyTorch: the reference that bench/train_step.py compares
against, run in the same session. Not part of the package; torch is never a dependency of
the project (run it with a Python that has torch, e.g. `pip install torch==2.13.0` in a
scratch venv).

Prints one JSON line: {"images_per_sec", "step_ms", ...}; with --serve, times one step per
line it reads instead (bench/serve.py), so that the benchmark can alternate it with its own.
"""
import argparse
import json
import statistics

import torch
from serve import serve, stopwatch    # bench/serve.py: the script's folder is on sys.path
from torch import nn


def generator(z_dim=100, fc=512, g=64, c=3):
    def up(i, o, last=False):
        layers = [nn.ConvTranspose2d(i, o, 5, 2, padding=2, output_padding=1)]
        return layers + ([] if last else [nn.BatchNorm2d(o, momentum=0.1, eps=1e-5), nn.ReLU()])

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(z_dim, 4 * 4 * fc)
            self.bn = nn.BatchNorm2d(fc, momentum=0.1, eps=1e-5)
            self.net = nn.Sequential(*up(fc, g * 4), *up(g * 4, g * 2), *up(g * 2, g),
                                     *up(g, c, last=True), nn.Tanh())

        def forward(self, z):
            x = self.fc(z).view(-1, fc, 4, 4)
            return self.net(torch.relu(self.bn(x)))
    return G()


def discriminator(d=64, c=3):
    def down(i, o, bn=True):
        return [nn.Conv2d(i, o, 5, 2, padding=2)] + \
            ([nn.BatchNorm2d(o, momentum=0.1, eps=1e-5)] if bn else []) + [nn.LeakyReLU(0.2)]
    return nn.Sequential(*down(c, d, bn=False), *down(d, 2 * d), *down(2 * d, 4 * d),
                         *down(4 * d, 8 * d), nn.Flatten(), nn.Linear(4 * 4 * 8 * d, 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--serve", action="store_true",
                   help="time one step per line read from stdin (bench/serve.py)")
    args = p.parse_args()
    torch.manual_seed(0)
    G, D = generator(), discriminator()
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999), eps=1e-8)
    bce = nn.BCEWithLogitsLoss()
    n = args.batch_size
    X = torch.rand(n, 3, 64, 64) * 2 - 1
    ones, zeros = torch.ones(n, 1), torch.zeros(n, 1)

    def step():
        z = torch.rand(n, 100) * 2 - 1
        # 1. update D on a real and a fake batch (two calls: separate batch statistics)
        opt_d.zero_grad()
        d_loss = bce(D(X), ones) + bce(D(G(z).detach()), zeros)
        d_loss.backward()
        opt_d.step()
        # 2. update G twice with the same z
        for _ in range(2):
            opt_g.zero_grad()
            g_loss = bce(D(G(z)), ones)
            g_loss.backward()
            opt_g.step()

    for _ in range(args.warmup):
        step()
    if args.serve:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}))
        serve(step)
        return
    ms = statistics.median(stopwatch(step) for _ in range(args.steps)) * 1000
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "step_ms": ms,
                      "images_per_sec": n / (ms / 1000)}))


if __name__ == "__main__":
    main()
