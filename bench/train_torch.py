"""PyTorch CPU reference of the sei-edge training step (bench/train.ts compares against it).

Same network and step as trainer/: int8-QAT first conv on raw/255 with zero padding 1, BN; LIF (v = beta*v + I,
spike v >= theta, soft reset, triangle surrogate) over T steps stacked on the batch axis; five binary convs
(sign * mean|w| per output channel, clipped STE), BN over all T steps at once, a shortcut around each (identity,
or 2x2 average pool + channel repeat); float head on the per-step spike rate; CE on the mean logits plus 0.5 x
per-step CE; Adam. Prints one JSON line: images/s on the wall clock and per CPU-second.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, theta):
        ctx.save_for_backward(v)
        ctx.theta = theta
        return (v >= theta).float()

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * torch.clamp(1 - (v - ctx.theta).abs(), min=0), None


class SignSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1).float()


class RoundSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def lif(current, T, beta=0.5, theta=1.0):
    steps = current.chunk(T, 0)
    v = None
    out = []
    for i in steps:
        v = i if v is None else beta * v + i
        s = Spike.apply(v, theta)
        out.append(s)
        v = v - theta * s
    return torch.cat(out, 0)


class Net(nn.Module):
    def __init__(self, width, T):
        super().__init__()
        self.T = T
        w = width
        spec = [(1, w, 1), (w, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1)]
        self.spec = spec
        self.w = nn.ParameterList([nn.Parameter(torch.randn(co, ci, 3, 3) * (2 / (9 * ci)) ** 0.5) for ci, co, _ in spec])
        self.bn = nn.ModuleList([nn.BatchNorm2d(co, momentum=0.1, eps=1e-5) for _, co, _ in spec])
        self.head = nn.Linear(4 * w, 10)

    def forward(self, raw):
        T = self.T
        w0 = self.w[0]
        step = w0.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12) / 127
        wq = torch.clamp(RoundSte.apply(w0 / step), -127, 127) * step
        current = self.bn[0](F.conv2d(raw / 255, wq, padding=1))
        current = torch.cat([current] * T, 0)
        act = lif(current, T)
        for i in range(1, len(self.spec)):
            ci, co, s = self.spec[i]
            w = self.w[i]
            wb = SignSte.apply(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)
            nxt = self.bn[i](F.conv2d(act, wb, stride=s, padding=1))
            if s == 1:
                nxt = nxt + current
            else:
                p = F.avg_pool2d(current, 2)
                nxt = nxt + p.repeat(1, co // ci, 1, 1)
            current = nxt
            act = lif(current, T)
        rates = act.mean(dim=(2, 3))
        return self.head(rates).view(T, -1, 10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--width', type=int, default=32)
    ap.add_argument('--T', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    net = Net(a.width, a.T)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = (torch.arange(a.batch * 784, dtype=torch.int64) * 2654435761 % 256).float().view(a.batch, 1, 28, 28)
    y = torch.arange(a.batch) % 10

    def step():
        logits = net(x)
        loss = F.cross_entropy(logits.mean(0), y) + 0.5 * torch.stack([F.cross_entropy(l, y) for l in logits]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.steps):
        step()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = a.steps * a.batch
    print(json.dumps({'torch': torch.__version__, 'threads': a.threads, 'imagesPerSecond': n / wall, 'imagesPerCpuSecond': n / cpu, 'secondsPerStep': wall / a.steps}))


if __name__ == '__main__':
    main()
