#!/usr/bin/env python3
"""PyTorch twin of edgevae's seed network, for `benches/torch_vs_burn.sh`.

Same network, loss, optimiser and batch sizes as `edgevae bench` (host/src/train/bench.rs):
Conv(1->32, k3 s2 p1) ReLU, Conv(32->64, k3 s2 p1) ReLU, flatten, Dense(3136->16) for mu and for
log-variance; Dense(16->3136) ReLU, ConvTranspose(64->32, k4 s2 p1) ReLU, ConvTranspose(32->1,
k4 s2 p1); Bernoulli likelihood (BCE with logits, summed) + KL, Adam (lr 1e-3), batch 128.
Inference is encode mu + decode + sigmoid, batch 256. Prints one line of JSON per layout.

Kept outside the project's dependencies: run it only where `torch` imports.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Vae(nn.Module):
    def __init__(self, latent=16):
        super().__init__()
        self.enc1 = nn.Conv2d(1, 32, 3, 2, 1)
        self.enc2 = nn.Conv2d(32, 64, 3, 2, 1)
        self.fc_mu = nn.Linear(64 * 7 * 7, latent)
        self.fc_logvar = nn.Linear(64 * 7 * 7, latent)
        self.dec_fc = nn.Linear(latent, 64 * 7 * 7)
        self.dec1 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.dec2 = nn.ConvTranspose2d(32, 1, 4, 2, 1)

    def encode(self, x):
        h = F.relu(self.enc2(F.relu(self.enc1(x)))).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        h = F.relu(self.dec_fc(z)).view(-1, 64, 7, 7)
        return self.dec2(F.relu(self.dec1(h)))

    def loss(self, x, eps):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decode(z)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * torch.sum(mu * mu + logvar.exp() - 1.0 - logvar)
        return (bce + kl) / x.shape[0]


def sync(dev):
    """Waits for queued GPU work (edgevae bench reads a parameter back for the same reason)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench(channels_last, pixels, args):
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = Vae(args.latent).to(dev)
    pixels = pixels.to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = pixels.shape[0]

    def batch(s, b):
        idx = torch.arange(s * b, (s + 1) * b, device=dev) % n
        return pixels[idx].contiguous(memory_format=fmt)

    train = []
    for r in range(args.repeats + 1):
        start = time.perf_counter()
        for s in range(args.steps):
            x = batch(s, args.batch)
            eps = torch.randn(args.batch, args.latent, device=dev)
            opt.zero_grad(set_to_none=True)
            loss = model.loss(x, eps)
            loss.backward()
            opt.step()
        sync(dev)
        if r > 0:
            train.append(args.steps * args.batch / (time.perf_counter() - start))
    model.eval()
    infer = []
    with torch.inference_mode():
        for r in range(args.repeats + 1):
            start = time.perf_counter()
            for s in range(args.steps):
                x = batch(s, args.infer_batch)
                # Back to the host, as edgevae bench reads every batch back (a no-op on the CPU).
                torch.sigmoid(model.decode(model.encode(x)[0])).cpu()
            sync(dev)
            if r > 0:
                infer.append(args.steps * args.infer_batch / (time.perf_counter() - start))
    return statistics.median(train), statistics.median(infer)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--infer-batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--layout", choices=["default", "channels_last"], default="default")
    p.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU twin of --backend cuda/wgpu")
    args = p.parse_args()
    # Pixels do not change the throughput: the same synthetic pattern edgevae bench falls back to.
    n = 10_000
    px = (torch.arange(n * 784, dtype=torch.int64) * 2_654_435_761 % 256).float() / 255.0
    pixels = px.view(n, 1, 28, 28)
    tr, inf = bench(args.layout == "channels_last", pixels, args)
    print(json.dumps({
        "impl": "pytorch " + torch.__version__,
        "layout": args.layout,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "train_images_per_s": round(tr),
        "infer_images_per_s": round(inf),
    }))


if __name__ == "__main__":
    main()
