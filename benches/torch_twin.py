#!/usr/bin/env python3
"""PyTorch twin of edgevae's seed network, for `benches/torch_vs_burn.sh`.

Same network, loss, optimiser and batch sizes as `edgevae bench` (host/src/train/bench.rs):
Conv(1->32, k3 s2 p1) ReLU, Conv(32->64, k3 s2 p1) ReLU, flatten, Dense(3136->16) for mu and for
log-variance; Dense(16->3136) ReLU, ConvTranspose(64->32, k4 s2 p1) ReLU, ConvTranspose(32->1,
k4 s2 p1); Bernoulli likelihood (BCE with logits, summed) + KL, Adam (lr 1e-3), batch 128.
Inference is encode mu + decode + sigmoid, batch 256. Prints one line of JSON per layout.

`--model photo` times the photo codec instead (host/src/model/photo.rs, `edgevae bench --photo`):
analysis Conv(C->24, k5 s2 p2), Conv(24->32), Conv(32->48), Conv(48->96) (k3 s2 p1), ReLU between;
synthesis ConvTranspose(96->96->64->48->C, k4 s2 p1), ReLU between; Balle's per-channel
factorized density (1-3-3-3-1, softplus matrices, tanh gates) on the latent plus uniform noise
times a learned per-level step, the rounded latent into the synthesis (straight-through);
lambda*255^2*MSE + bits per pixel, Adam; --batch and --infer-batch count crops of --crop pixels.

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


class PhotoCodec(nn.Module):
    LAMBDAS = [0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932]

    def __init__(self, channels=1, enc=(24, 32, 48), latent=96, dec=(96, 64, 48)):
        super().__init__()
        widths = [channels, *enc, latent]
        self.enc = nn.ModuleList(
            nn.Conv2d(i, o, 5 if k == 0 else 3, 2, 2 if k == 0 else 1)
            for k, (i, o) in enumerate(zip(widths, widths[1:])))
        widths = [latent, *dec, channels]
        self.dec = nn.ModuleList(nn.ConvTranspose2d(i, o, 4, 2, 1) for i, o in zip(widths, widths[1:]))
        filters = [1, 3, 3, 3, 1]
        scale = 10.0 ** (1.0 / (len(filters) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i, (fi, fo) in enumerate(zip(filters, filters[1:])):
            init = float(torch.log(torch.expm1(torch.tensor(1.0 / scale / fo))))
            self.matrices.append(nn.Parameter(torch.full((latent, fo, fi), init)))
            self.biases.append(nn.Parameter(torch.rand(latent, fo, 1) - 0.5))
            if i + 2 < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(latent, fo, 1)))
        self.log_steps = nn.Parameter(torch.zeros(len(self.LAMBDAS), latent))

    def analysis(self, x):
        for i, c in enumerate(self.enc):
            x = c(x)
            if i + 1 < len(self.enc):
                x = F.relu(x)
        return x

    def synthesis(self, y):
        for i, d in enumerate(self.dec):
            y = d(y)
            if i + 1 < len(self.dec):
                y = F.relu(y)
        return y

    def logits_cdf(self, v):
        h = v
        for i, m in enumerate(self.matrices):
            h = torch.matmul(F.softplus(m), h) + self.biases[i]
            if i < len(self.factors):
                h = h + torch.tanh(self.factors[i]) * torch.tanh(h)
        return h

    def loss(self, x, u, level):
        y = self.analysis(x)
        delta = self.log_steps[level].exp().view(1, -1, 1, 1)
        noisy = y + u * delta
        m = y.shape[1]
        flat = noisy.transpose(0, 1).reshape(m, 1, -1)
        half = delta.view(m, 1, 1) / 2
        lower, upper = self.logits_cdf(flat - half), self.logits_cdf(flat + half)
        sign = -torch.sign(lower + upper).detach()
        lik = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs().clamp_min(1e-9)
        n, _, hh, ww = x.shape
        bpp = -torch.log2(lik).sum() / (n * hh * ww)
        q = y / delta
        r = torch.sign(q) * torch.floor(q.abs() + 0.5) * delta
        x_hat = self.synthesis(y + (r - y).detach())
        mse = F.mse_loss(x_hat, x)
        return self.LAMBDAS[level] * 255.0 * 255.0 * mse + bpp


def bench_photo(channels_last, args):
    torch.manual_seed(0)
    dev = torch.device(args.device)
    c = 3 if args.model == "photo-rgb" else 1
    model = PhotoCodec(c).to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    s = args.crop
    ls = s // 16

    def crops(step, b):
        i = torch.arange(b * c * s * s, dtype=torch.int64, device=dev) + step * 7919
        return ((i * 2_654_435_761 % 256).float() / 255.0).view(b, c, s, s).contiguous(memory_format=fmt)

    train = []
    for r in range(args.repeats + 1):
        start = time.perf_counter()
        for step in range(args.steps):
            x = crops(step, args.batch)
            u = torch.rand(args.batch, 96, ls, ls, device=dev) - 0.5
            opt.zero_grad(set_to_none=True)
            loss = model.loss(x, u, step % len(PhotoCodec.LAMBDAS))
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
            for step in range(args.steps):
                model.synthesis(model.analysis(crops(step, args.infer_batch))).cpu()
            sync(dev)
            if r > 0:
                infer.append(args.steps * args.infer_batch / (time.perf_counter() - start))
    return statistics.median(train), statistics.median(infer)


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
    p.add_argument("--model", choices=["seed", "photo", "photo-rgb"], default="seed")
    p.add_argument("--crop", type=int, default=64)
    args = p.parse_args()
    if args.model != "seed":
        tr, inf = bench_photo(args.layout == "channels_last", args)
        print(json.dumps({
            "impl": "pytorch " + torch.__version__,
            "model": args.model,
            "crop": args.crop,
            "layout": args.layout,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "train_crops_per_s": round(tr, 1),
            "infer_crops_per_s": round(inf, 1),
        }))
        return
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
