"""PyTorch CPU reference of the sei-edge trainer (trainer/), run by Debian's /usr/bin/python3 with python3-torch.

The same network, step and recipe as trainer/, so that a difference between the two is an implementation error,
not a budget: int8-QAT first conv on raw/255 (zero padding 1), BN, LIF; five binary convs (sign x mean|w| per
output channel, clipped STE), BN over all T steps at once (steps stacked on the batch axis, time-major), a shortcut
around every binary conv ('multi'), every block of two ('blocks') or the stride-2 convs only ('downsample') as
trainer/model.ts plan() places them; float head on each step's
spike rate; CE on the mean logits + per-step CE, label smoothing, KD from the ANN twin (trained first, or a TS run's
with --teacher-from) on the mean and optionally each step's logits, the firing-rate term; Adam with tfjs's epsilon in
two groups (latent binary weights, the rest), the warm-up + cosine schedule set per batch, latent weights clipped
to [-1, 1] and LIF theta/beta kept in range after each step, micro-batch accumulation; BN recalibrated before
validation and test. Initialisation, the validation split, the shuffles, the augmentation and the recalibration
frames come from the trainer's own seeded generator (mulberry32 streams keyed by (seed, purpose, index)), so with
the same --seed both implementations start from the same weights and see the same frames in the same order.

Modes:
  (default)        time a training step on fixed frames, one JSON line (bench/train.ts calls this):
                   --steps N --batch B --width W --T T --threads K
  --train          train on Fashion-MNIST with `sei train`'s flag names and defaults (--teacher-epochs N stands for
                   --teacher --teacher-epochs N): one JSON line per epoch (TS EpochRecord keys + role), a summary line
  --check FILE     the cases of a JSON file (test/parity.test.ts): logits, loss, gradients, optimizer steps,
                   schedule and data pipeline, for comparison with the TS trainer
--load-weights FILE starts from a TS checkpoint (trainer/checkpoint.ts: FILE.json + FILE.bin, float32).
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# trainer/layers/batchnorm.ts, trainer/optimizer.ts, trainer/recalibrate.ts; tfjs's Adam takes the backend's
# float32 epsilon (1e-7), PyTorch's default is 1e-8.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.1  # PyTorch's convention: running = 0.9 running + 0.1 batch, as BN_MOMENTUM = 0.9 there
ADAM_EPSILON = 1e-7
THETA_MIN = 0.05
BETA_MIN = 0.05
RECALIBRATE_BATCHES = 100
DATA_DIR = '/usr/share/datasets/fashion-mnist'


class UsageError(Exception):
    """Bad input: printed as one line, never a traceback."""


# ---- the trainer's seeded randomness (runtime/data/random.ts, trainer/data/random.ts) ----

class Stream:
    """mulberry32: floats in [0, 1), drawn in blocks (each draw depends only on its position in the stream)."""

    def __init__(self, seed):
        self.a = seed & 0xFFFFFFFF
        self.drawn = 0

    def take(self, n):
        k = np.arange(self.drawn + 1, self.drawn + n + 1, dtype=np.uint64)
        a = ((self.a + k * 0x6D2B79F5) & 0xFFFFFFFF).astype(np.uint32)
        self.drawn += n
        t = (a ^ (a >> np.uint32(15))) * (a | np.uint32(1))
        t = t ^ (t + (t ^ (t >> np.uint32(7))) * (t | np.uint32(61)))
        return (t ^ (t >> np.uint32(14))).astype(np.float64) / 4294967296.0


def stream(seed, purpose, index=0):
    h = (seed ^ 0x9E3779B9) & 0xFFFFFFFF
    for ch in f'{purpose}#{index}':
        h = ((h ^ ord(ch)) * 0x01000193) & 0xFFFFFFFF
    return Stream(h)


def permutation(n, r):
    """Fisher-Yates over 0..n-1, as runtime/data/random.ts shuffle."""
    items = list(range(n))
    if n < 2:
        return np.array(items, dtype=np.int64)
    u = r.take(n - 1)
    js = np.floor(u * np.arange(n, 1, -1, dtype=np.float64)).astype(np.int64).tolist()
    for k, i in enumerate(range(n - 1, 0, -1)):
        j = js[k]
        items[i], items[j] = items[j], items[i]
    return np.array(items, dtype=np.int64)


def gaussian(r, n):
    """Box-Muller as runtime/data/random.ts: sqrt(-2 ln(1 - u1)) cos(2 pi u2), the two draws in that order."""
    u = r.take(2 * n).reshape(n, 2)
    return np.sqrt(-2 * np.log(1 - u[:, 0])) * np.cos(2 * math.pi * u[:, 1])


# ---- data (trainer/data/index.ts) ----

def read_idx(path):
    try:
        with gzip.open(path, 'rb') as f:
            raw = f.read()
    except OSError as err:
        raise UsageError(f'--data: cannot read {path}: {err}') from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UsageError(f'{path}: expected an unsigned-byte IDX file (magic 00 00 08 nn), got {raw[:4].hex()}')
    dims = raw[3]
    shape = struct.unpack(f'>{dims}I', raw[4:4 + 4 * dims])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise UsageError(f'{path}: IDX shape {list(shape)} needs {int(np.prod(shape))} bytes, file has {data.size}')
    return data.reshape(shape)


class Split:
    def __init__(self, images, labels):
        self.images = images  # uint8 [n, 1, 28, 28]
        self.labels = labels  # int64 [n]
        self.count = len(labels)


def load_split(folder, which):
    images = read_idx(os.path.join(folder, f'{which}-images-idx3-ubyte.gz'))
    labels = read_idx(os.path.join(folder, f'{which}-labels-idx1-ubyte.gz'))
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_dataset(folder, val_size, train_limit=None):
    """The fixed validation split: the first val_size frames of a permutation seeded by 0, whatever the run seed."""
    images, labels = load_split(folder, 'train')
    order = torch.from_numpy(permutation(len(labels), stream(0, 'validation-split')))
    end = min(len(labels), val_size + train_limit) if train_limit else len(labels)
    train, val = order[val_size:end], order[:val_size]
    test_images, test_labels = load_split(folder, 't10k')
    return Split(images[train], labels[train]), Split(images[val], labels[val]), Split(test_images, test_labels)


SHIFT = 2  # DEFAULT_AUGMENT: flip with p 0.5, translation up to 2 px each way with zero fill


def make_batch(split, idx, r=None):
    """Raw pixel values (float32 0..255) of frames idx; with r, DEFAULT_AUGMENT from 3 draws per frame in order
    (flip, dy, dx): out[y, x] = src[y + dy, x + dx], that column mirrored (w - 1 - (x + dx)) when flipped, and 0
    where y + dy or x + dx falls outside the frame."""
    idx = torch.as_tensor(idx, dtype=torch.int64)
    x = split.images[idx].float()
    y = split.labels[idx]
    if r is None:
        return x, y
    u = torch.from_numpy(r.take(3 * len(idx)).reshape(-1, 3))
    flip = u[:, 0] < 0.5
    dy = torch.floor(u[:, 1] * (2 * SHIFT + 1)).long() - SHIFT
    dx = torch.floor(u[:, 2] * (2 * SHIFT + 1)).long() - SHIFT
    n, _, h, w = x.shape
    # Flipping the source and then translating it is the same map as the trainer's translate-then-mirror index.
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT))
    rows = (torch.arange(h).view(1, h) + dy.view(-1, 1) + SHIFT).view(n, 1, h, 1)
    cols = (torch.arange(w).view(1, w) + dx.view(-1, 1) + SHIFT).view(n, 1, 1, w)
    return padded[torch.arange(n).view(n, 1, 1, 1), torch.zeros(1, 1, 1, 1, dtype=torch.long), rows, cols], y


def epoch_order(count, batch, seed, epoch):
    order = permutation(count, stream(seed, 'shuffle', epoch))
    return [order[i:i + batch] for i in range(0, count - batch + 1, batch)]


def recalibration_batches(count, batches, batch, seed):
    order = permutation(count, stream(seed, 'recalibrate'))
    size = min(batch, count)
    return [order[b * size:(b + 1) * size] for b in range(batches) if (b + 1) * size <= count]


# ---- the network (trainer/model.ts, trainer/layers/*.ts) ----

def plan(cfg):
    """[(name, cin, cout, stride, shortcut, source)] as model.ts plan(): `source` is the layer whose current the
    shortcut adds (-1 for none); 'multi' every conv from the one before, 'blocks' (ResNet) every second conv from two
    before and the last conv from the one before, 'downsample' (older runs: 'plain') the stride-2 convs only."""
    w = cfg.width
    specs = [(w, 1), (w, 1), (2 * w, 2), (2 * w, 1), (4 * w, 2), (4 * w, 1)]
    layout = 'downsample' if cfg.shortcuts == 'plain' else cfg.shortcuts
    last = len(specs) - 1

    def source(i):
        if i == 0:
            return -1
        if layout == 'multi':
            return i - 1
        if layout == 'downsample':
            return i - 1 if specs[i][1] == 2 else -1
        return i - 2 if i % 2 == 0 else (i - 1 if i == last else -1)

    h, wd, cin = 28, 28, 1
    out, sizes = [], []
    for i, (cout, stride) in enumerate(specs):
        oh, ow = (h - 1) // stride + 1, (wd - 1) // stride + 1
        src, shortcut = source(i), 'none'
        if src >= 0:
            (sh, sw), scout = sizes[src], out[src][2]
            if (sh, sw) == (oh, ow) and scout == cout:
                shortcut = 'identity'
            elif (sh, sw) == (2 * oh, 2 * ow) and cout % scout == 0:
                shortcut = 'avgpool_repeat'
        out.append(('conv0' if i == 0 else f'bconv{i}', cin, cout, stride, shortcut, src if shortcut != 'none' else -1))
        sizes.append((oh, ow))
        h, wd, cin = oh, ow, cout
    return out


def current_terms(layers):
    """Per layer, how many BN outputs its LIF input current sums through its chain of shortcuts (model.ts
    currentTerms): --theta-init depth starts each θ at θ·sqrt(terms)."""
    out = []
    for _, _, _, _, shortcut, src in layers:
        out.append(out[src] + 1 if shortcut != 'none' else 1)
    return out


class Spike(torch.autograd.Function):
    """s = v >= theta; backward: the triangle surrogate max(0, 1 - |v - theta| / w) / w, w = 1 or theta."""

    @staticmethod
    def forward(ctx, v, theta, width_is_theta):
        ctx.save_for_backward(v, theta)
        ctx.width_is_theta = width_is_theta
        return (v >= theta).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        v, theta = ctx.saved_tensors
        w = theta if ctx.width_is_theta else 1.0
        gv = g * torch.clamp(1 - (v - theta).abs() / w, min=0) / w
        gtheta = (-gv).sum(dim=(0, 2, 3), keepdim=True) if ctx.needs_input_grad[1] else None
        return gv, gtheta, None


class SignSte(torch.autograd.Function):
    """sign with sign(0) = +1; gradient passed where |w| <= 1 (clipped STE)."""

    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1).to(g.dtype)


class RoundSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def lif(current, T, theta, beta, surrogate):
    """v = beta v + I (v = I at the first step), spike v >= theta_c, soft reset v - theta_c s kept in the graph."""
    th = theta.view(1, -1, 1, 1)
    out = []
    v = None
    for t, i in enumerate(current.chunk(T, 0)):
        v = i if t == 0 else beta * v + i
        s = Spike.apply(v, th, surrogate == 'theta')
        out.append(s)
        if t < T - 1:
            v = v - th * s
    return torch.cat(out, 0)


def net_config(a, role='student'):
    """The network flags as trainer/model.ts NetConfig; the teacher (and --neuron relu) is the ANN twin."""
    relu = role == 'teacher' or a.neuron == 'relu'
    return argparse.Namespace(width=a.width, T=1 if relu else a.T, beta=a.beta, theta=1.0, neuron='relu' if relu else 'lif',
                              weights='float' if relu else a.weights, shortcuts=a.shortcuts, lif=a.lif, surrogate=a.surrogate, classes=10,
                              theta_init=getattr(a, 'theta_init', 'uniform'))


class Net(torch.nn.Module):
    """Parameters are kept in PyTorch's layout (conv OIHW) and named as trainer/model.ts namedVariables."""

    def __init__(self, cfg, seed):
        super().__init__()
        self.cfg = cfg
        self.plan = plan(cfg)
        self.spiking = cfg.neuron == 'lif'
        self.T = cfg.T if self.spiking else 1
        learn = cfg.lif == 'learn' and self.spiking
        normal = Stream(seed)
        P = torch.nn.Parameter
        self.w, self.gamma, self.bn_beta, self.theta, self.lif_beta = (torch.nn.ParameterList() for _ in range(5))
        terms = current_terms(self.plan)
        for i, (_, cin, cout, _, _, _) in enumerate(self.plan):
            theta = cfg.theta * math.sqrt(terms[i]) if cfg.theta_init == 'depth' else cfg.theta
            std = math.sqrt(2 / (9 * cin))
            hwio = (std * gaussian(normal, 9 * cin * cout)).astype(np.float32).reshape(3, 3, cin, cout)
            self.w.append(P(torch.from_numpy(hwio).permute(3, 2, 0, 1).contiguous()))
            self.gamma.append(P(torch.ones(cout)))
            self.bn_beta.append(P(torch.zeros(cout)))
            self.register_buffer(f'mean{i}', torch.zeros(cout))
            self.register_buffer(f'var{i}', torch.ones(cout))
            self.theta.append(P(torch.full((cout,), theta), requires_grad=learn))
            self.lif_beta.append(P(torch.tensor([cfg.beta], dtype=torch.float32), requires_grad=learn))
        last = self.plan[-1][2]
        head = (math.sqrt(1 / last) * gaussian(normal, last * cfg.classes)).astype(np.float32)
        self.head_w = P(torch.from_numpy(head.reshape(last, cfg.classes)))
        self.head_b = P(torch.zeros(cfg.classes))

    def running(self, i):
        return getattr(self, f'mean{i}'), getattr(self, f'var{i}')

    def binary_layers(self):
        return list(range(1, len(self.plan))) if self.cfg.weights == 'binary' and self.spiking else []

    def named(self):
        """(TS name, tensor, TS shape permutation or None) for every variable, in namedVariables order."""
        out = []
        for i in range(len(self.plan)):
            mean, var = self.running(i)
            out += [(f'l{i}.w', self.w[i], (2, 3, 1, 0)), (f'l{i}.gamma', self.gamma[i], None), (f'l{i}.beta', self.bn_beta[i], None),
                    (f'l{i}.mean', mean, None), (f'l{i}.variance', var, None), (f'l{i}.theta', self.theta[i], None),
                    (f'l{i}.lifBeta', self.lif_beta[i], None)]
        return out + [('head.w', self.head_w, None), ('head.b', self.head_b, None)]

    def trainables(self):
        return [(n, t, p) for n, t, p in self.named() if isinstance(t, torch.nn.Parameter) and t.requires_grad]

    def weight(self, i):
        w = self.w[i]
        if self.cfg.weights == 'float':
            return w
        if i == 0:
            step = torch.clamp(w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127, min=1e-12)
            return torch.clamp(RoundSte.apply(w / step), -127, 127) * step
        return SignSte.apply(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)

    def norm(self, x, i, training, update, collect, stats):
        g, b = self.gamma[i], self.bn_beta[i]
        if training:
            if collect is not None:
                var, mean = torch.var_mean(x.detach().double(), dim=(0, 2, 3), unbiased=False)
                collect.append((mean, var, x.numel() // x.shape[1]))
            mean, var = self.running(i) if update else (None, None)
            return F.batch_norm(x, mean, var, g, b, True, BN_MOMENTUM, BN_EPSILON)
        mean, var = stats[i] if stats is not None else self.running(i)
        inv = g * torch.rsqrt(var + BN_EPSILON)
        return (x - mean.view(1, -1, 1, 1)) * inv.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)

    def forward(self, raw, training, update=True, collect=None, stats=None):
        """Raw frames [N, 1, H, W] in 0..255 -> per-step logits [T, N, classes] and each layer's mean output.
        training: batch statistics (the running averages move unless update is False; collect gets each layer's
        (mean, biased variance, count)); otherwise `stats` (per layer (mean, var)) or the running averages."""
        T = self.T
        n = raw.shape[0]

        def fire(current, i):
            return lif(current, T, self.theta[i], self.lif_beta[i], self.cfg.surrogate) if self.spiking else F.relu(current)

        current = self.norm(F.conv2d(raw / 255, self.weight(0), padding=1), 0, training, update, collect, stats)
        if T > 1:
            current = torch.cat([current] * T, 0)
        act = fire(current, 0)
        currents = [current]
        rates = [act.mean()]
        for i in range(1, len(self.plan)):
            _, cin, cout, stride, shortcut, src = self.plan[i]
            nxt = self.norm(F.conv2d(act, self.weight(i), stride=stride, padding=1), i, training, update, collect, stats)
            if shortcut == 'identity':
                nxt = nxt + currents[src]
            elif shortcut == 'avgpool_repeat':
                nxt = nxt + F.avg_pool2d(currents[src], 2).repeat(1, cout // currents[src].shape[1], 1, 1)
            current = nxt
            currents.append(current)
            act = fire(current, i)
            rates.append(act.mean())
        logits = act.mean(dim=(2, 3)) @ self.head_w + self.head_b
        return logits.view(T, n, -1), rates

    def load_ts(self, path):
        """Parameters from a TS checkpoint (trainer/checkpoint.ts): `<name>.json` with the tensor directory and
        `<name>.bin` of float32 values; LIF theta/beta are optional there (older runs), everything else required."""
        stem = path[:-5] if path.endswith('.json') else path
        try:
            with open(stem + '.json') as f:
                meta = json.load(f)
            data = np.fromfile(stem + '.bin', dtype='<f4')
        except (OSError, ValueError) as err:
            raise UsageError(f'--load-weights: cannot read the checkpoint {stem}.json/.bin: {err}') from None
        entries = {e['name']: e for e in meta.get('tensors', [])}
        with torch.no_grad():
            for name, t, perm in self.named():
                e = entries.get(f'param/{name}')
                if e is None:
                    if name.endswith(('.theta', '.lifBeta')):
                        continue
                    raise UsageError(f'--load-weights: {stem}.json has no tensor param/{name} (a different network?)')
                ts_shape = list(t.permute(*perm).shape) if perm else list(t.shape)
                if list(e['shape']) != ts_shape:
                    raise UsageError(f'--load-weights: param/{name} has shape {e["shape"]}, expected {ts_shape}')
                size = int(np.prod(e['shape']))
                values = torch.from_numpy(data[e['offset']:e['offset'] + size].copy()).view(*e['shape'])
                t.copy_(values.permute(*[int(k) for k in np.argsort(perm)]) if perm else values)

    def ts_values(self, tensor_of):
        """{TS name: flat list in the TS layout} of tensor_of(tensor) over every variable (None skips one)."""
        out = {}
        for name, t, perm in self.named():
            v = tensor_of(t)
            if v is not None:
                out[name] = (v.permute(*perm) if perm else v).contiguous().view(-1).tolist()
        return out


# ---- the loss (trainer/recipe/loss.ts) ----

def sei_loss(step_logits, y, a, soft=None):
    """CE on the mean logits (+ per_step x mean per-step CE); with teacher logits, (1 - kd) x hard +
    kd x tau^2 x (KL(softmax(teacher / tau) || softmax(student / tau)) on the mean logits + kd_per_step x the mean
    of the same KL on each step's logits)."""
    logits = step_logits.mean(0)

    def ce(l):
        return F.cross_entropy(l, y, label_smoothing=a.label_smoothing)

    hard = ce(logits)
    if a.per_step > 0 and step_logits.shape[0] > 1:
        hard = hard + a.per_step * torch.stack([ce(l) for l in step_logits]).mean()
    if soft is None or a.kd_weight <= 0:
        return hard, logits
    tau = a.kd_temperature
    pt = F.softmax(soft / tau, dim=1)
    log_pt = torch.log(pt + 1e-12)

    def kl(student):
        return (pt * (log_pt - F.log_softmax(student / tau, dim=1))).sum(1).mean()

    distil = kl(logits)
    if a.kd_per_step > 0 and step_logits.shape[0] > 1:
        distil = distil + a.kd_per_step * torch.stack([kl(l) for l in step_logits]).mean()
    return hard * (1 - a.kd_weight) + distil * (a.kd_weight * tau * tau), logits


def step_loss(net, x, y, a, soft=None, update=True, collect=None):
    """A training-mode pass and its loss: sei_loss plus, for a spiking network, the firing-rate term
    spike_penalty x mean over layers of max(0, rate - spike_target)^2 (trainer/parallel/shard.ts)."""
    step_logits, rates = net(x, True, update=update, collect=collect)
    loss, logits = sei_loss(step_logits, y, a, soft)
    if net.spiking and a.spike_penalty > 0:
        loss = loss + a.spike_penalty * torch.stack([F.relu(r - a.spike_target) ** 2 for r in rates]).mean()
    return loss, logits, step_logits


# ---- the optimizer, the constraints and the schedule (trainer/optimizer.ts, trainer/train.ts) ----

class Optimizer:
    """Two Adams as ParamOptimizer: the latent binary weights at latent_lr, the rest at lr, both scaled by the
    schedule; after every step the latent weights are clipped to [-1, 1], theta >= THETA_MIN, beta in [BETA_MIN, 1]."""

    def __init__(self, net, lr, latent_lr=None):
        self.net = net
        latent = {id(net.w[i]) for i in net.binary_layers()}
        params = [t for _, t, _ in net.trainables()]
        groups = [{'params': [p for p in params if id(p) not in latent], 'scale': 1.0}]
        if latent:
            scale = (latent_lr if latent_lr is not None else lr) / lr if lr else 1.0
            groups.append({'params': [p for p in params if id(p) in latent], 'scale': scale})
        self.adam = torch.optim.Adam(groups, lr=lr, eps=ADAM_EPSILON)

    def set_lr(self, lr):
        for g in self.adam.param_groups:
            g['lr'] = lr * g['scale']

    def step(self):
        self.adam.step()
        with torch.no_grad():
            for i in self.net.binary_layers():
                self.net.w[i].clamp_(-1, 1)
            for th, b in zip(self.net.theta, self.net.lif_beta):
                if th.requires_grad:
                    th.clamp_(min=THETA_MIN)
                if b.requires_grad:
                    b.clamp_(BETA_MIN, 1)


def learning_rate(epochs, lr, lr_final, warmup, e):
    """One phase of train.ts learningRate: linear warm-up from 5 %, then cosine to lr x lr_final."""
    if e < warmup:
        return lr * max(0.05, e / warmup)
    q = min(1.0, (e - warmup) / max(1e-9, epochs - warmup))
    lo = lr * lr_final
    return lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * q))


def train_step(net, opt, x, y, a, soft=None):
    """Forward, loss, backward over micro-batches (BN statistics per micro-batch, gradients averaged by frames),
    one optimizer step. Returns (mean loss, correct predictions)."""
    n = len(y)
    parts = -(-n // min(n, a.micro_batch or n))
    sizes = [n // parts + (1 if k < n % parts else 0) for k in range(parts)]
    opt.adam.zero_grad(set_to_none=True)
    loss_sum, correct, start = 0.0, 0, 0
    for size in sizes:
        sl = slice(start, start + size)
        start += size
        loss, logits, _ = step_loss(net, x[sl], y[sl], a, soft[sl] if soft is not None else None)
        (loss * (size / n)).backward()
        loss_sum += loss.item() * size / n
        correct += int((logits.argmax(1) == y[sl]).sum())
    opt.step()
    return loss_sum, correct


# ---- evaluation (trainer/recalibrate.ts, train.ts predict/validate) ----

@torch.no_grad()
def recalibrate(net, split, batches, batch, seed):
    """Population BN statistics of training-mode passes over a seeded sample of training batches (no augmentation):
    per layer the count-weighted mean of the batch means and mean of (batch variance + squared mean offset)."""
    idxs = recalibration_batches(split.count, batches, batch, seed)
    if not idxs:
        return None
    per_layer = [[] for _ in net.plan]
    for idx in idxs:
        collect = []
        net(make_batch(split, idx)[0], True, update=False, collect=collect)
        for i, s in enumerate(collect):
            per_layer[i].append(s)
    out = []
    for stats in per_layer:
        total = sum(c for _, _, c in stats)
        mean = sum((c / total) * m for m, _, c in stats)
        var = sum((c / total) * (v + (m - mean) ** 2) for m, v, c in stats)
        out.append((mean.float(), var.float()))
    return out


@torch.no_grad()
def predict(net, split, stats=None, batch=500):
    """Accuracy on a split (eval mode) and each layer's mean output over it."""
    correct = 0
    rate_sums = [0.0] * len(net.plan)
    for i in range(0, split.count, batch):
        x, y = make_batch(split, range(i, min(split.count, i + batch)))
        step_logits, rates = net(x, False, stats=stats)
        correct += int((step_logits.mean(0).argmax(1) == y).sum())
        for k, r in enumerate(rates):
            rate_sums[k] += float(r) * len(y)
    return correct / max(1, split.count), [r / max(1, split.count) for r in rate_sums]


def sign_snapshot(net):
    return [(net.w[i].detach() >= 0).clone() for i in net.binary_layers()]


# ---- training (train.ts fit, run.ts) ----

def emit(record):
    print(json.dumps(record), flush=True)


def fit(role, a, data, teacher=None):
    """Trains the student (or the ANN teacher) as train.ts fit does; returns the network."""
    train, val, _ = data
    cfg = net_config(a, role)
    epochs = a.teacher_epochs if role == 'teacher' else a.epochs
    loss_opts = argparse.Namespace(**{**vars(a), 'per_step': 0.0, 'kd_weight': 0.0}) if role == 'teacher' else a
    net = Net(cfg, a.seed)
    if role == 'student' and a.load_weights:
        net.load_ts(a.load_weights)
    opt = Optimizer(net, a.lr, a.latent_lr)
    spiking = cfg.neuron == 'lif'
    for epoch in range(epochs):
        batches = epoch_order(train.count, a.batch, a.seed, epoch)
        aug = stream(a.seed, 'augment', epoch) if a.augment else None
        signs = sign_snapshot(net)
        start = time.perf_counter()
        last_log = start
        seen, loss_sum, correct = 0, 0.0, 0
        for b, idx in enumerate(batches):
            x, y = make_batch(train, idx, aug)
            opt.set_lr(learning_rate(epochs, a.lr, a.lr_final, a.warmup, epoch + b / len(batches)))
            soft = None
            if teacher is not None:
                with torch.no_grad():
                    soft = teacher(x, False)[0][0]
            loss, ok = train_step(net, opt, x, y, loss_opts, soft)
            seen += len(y)
            loss_sum += loss
            correct += ok
            now = time.perf_counter()
            if now - last_log > 60:
                last_log = now
                sys.stderr.write(f'{role} epoch {epoch + 1}/{epochs} batch {b + 1}/{len(batches)} loss {loss_sum / (b + 1):.3f} '
                                 f'acc {100 * correct / seen:.1f}% {seen / (now - start):.1f} img/s\n')
        secs = time.perf_counter() - start
        record = {'role': role, 'epoch': epoch + 1, 'loss': loss_sum / max(1, len(batches)), 'trainAccuracy': correct / max(1, seen),
                  'valAccuracy': None, 'lr': learning_rate(epochs, a.lr, a.lr_final, a.warmup, epoch + 1 - 1e-9),
                  'seconds': secs, 'imagesPerSecond': seen / secs}
        if signs:
            record['signFlips'] = [float((s != now).float().mean()) for s, now in zip(signs, sign_snapshot(net))]
        if val.count:
            acc, rates = predict(net, val, recalibrate(net, train, a.recalibrate, a.batch, a.seed))
            record['valAccuracy'] = acc
            if spiking:
                record['spikeRates'] = rates
        emit(record)
    return net


def load_teacher(run):
    """The ANN teacher of a TS run folder (run.ts teacherCheckpoint: RUN/teacher or RUN, best else last); its
    network is the ANN twin of the net config stored with it."""
    for folder in (os.path.join(run, 'teacher'), run):
        for name in ('best', 'last'):
            stem = os.path.join(folder, name)
            if os.path.exists(stem + '.json') and os.path.exists(stem + '.bin'):
                with open(stem + '.json') as f:
                    meta = json.load(f)
                if meta.get('role') != 'teacher':
                    raise UsageError(f'--teacher-from: {stem}.json holds a {meta.get("role")}, expected an ANN teacher')
                stored = meta['config']['net']
                cfg = argparse.Namespace(width=stored['width'], T=1, beta=stored['beta'], theta=stored['theta'], neuron='relu', weights='float',
                                         shortcuts=stored['shortcuts'], lif='fixed', surrogate='fixed', classes=stored['classes'])
                net = Net(cfg, meta['config']['seed'])
                net.load_ts(stem + '.json')
                return net
    raise UsageError(f'--teacher-from: expected a run folder with a teacher checkpoint (teacher/last.json or last.json), found none in {run}')


def run_training(a):
    t0 = time.perf_counter()
    teacher = load_teacher(a.teacher_from) if a.teacher_from else None
    data = load_dataset(a.data, a.val_size, a.train_limit)
    sys.stderr.write(f'data: {data[0].count} train / {data[1].count} validation / {data[2].count} test frames; torch {torch.__version__}, {a.threads} threads\n')
    summary = {}
    if a.teacher_epochs:
        teacher = fit('teacher', a, data)
        teacher.eval()
        # As `sei train` scores its teacher (and distils from it): eval mode on the running averages.
        summary['teacherTestAccuracy'] = predict(teacher, data[2])[0]
    net = fit('student', a, data, teacher)
    stats = recalibrate(net, data[0], RECALIBRATE_BATCHES, a.batch, a.seed)
    test_acc, rates = predict(net, data[2], stats)
    summary.update({'testAccuracy': test_acc, 'n': data[2].count, 'T': net.T, 'width': a.width, 'epochs': a.epochs,
                    'testSpikeRates': rates, 'wallSeconds': time.perf_counter() - t0, 'torch': torch.__version__, 'threads': a.threads})
    emit(summary)


# ---- check mode (test/parity.test.ts) ----

def check_case(case, parser, x, y):
    a = finish(parser.parse_args(case['args']), 'check')
    out = {}
    net = Net(net_config(a), a.seed)
    if a.load_weights:
        net.load_ts(a.load_weights)
    if case.get('params'):
        out['params'] = net.ts_values(lambda t: t.detach())
    soft = torch.tensor(case['soft'], dtype=torch.float32).view(len(y), -1) if case.get('soft') else None
    with torch.no_grad():
        out['evalLogits'] = net(x, False)[0].view(-1).tolist()
    collect = []
    loss, logits, step_logits = step_loss(net, x, y, a, soft, update=False, collect=collect)
    loss.backward()
    out['trainLogits'] = step_logits.detach().view(-1).tolist()
    out['loss'] = loss.item()
    out['correct'] = int((logits.argmax(1) == y).sum())
    out['bn'] = [{'mean': m.tolist(), 'variance': v.tolist(), 'count': c} for m, v, c in collect]
    out['grads'] = net.ts_values(lambda t: t.grad if isinstance(t, torch.nn.Parameter) and t.requires_grad else None)
    if case.get('steps'):
        for p in net.parameters():
            p.grad = None
        opt = Optimizer(net, a.lr, a.latent_lr)
        opt.set_lr(a.lr)
        for _ in range(case['steps']):
            train_step(net, opt, x, y, a, soft)
        out['after'] = net.ts_values(lambda t: t.detach())
    if case.get('schedule'):
        out['schedule'] = [learning_rate(a.epochs, a.lr, a.lr_final, a.warmup, e) for e in case['schedule']]
    return out


def check_data(spec, parser):
    a = finish(parser.parse_args(spec['args']), 'check')
    train, val, test = load_dataset(a.data, a.val_size, a.train_limit)
    first = epoch_order(train.count, a.batch, a.seed, spec.get('epoch', 0))[0]
    x, y = make_batch(train, first, stream(a.seed, 'augment', spec.get('epoch', 0)))
    out = {'counts': [train.count, val.count, test.count], 'valLabels': val.labels.tolist(),
           'valPixelSums': val.images.view(val.count, -1).sum(1).tolist(), 'trainLabels': train.labels[:spec.get('frames', 100)].tolist(),
           'firstBatch': first.tolist(), 'augmented': x.view(-1).tolist(), 'augmentedLabels': y.tolist(),
           'recalibration': [b.tolist() for b in recalibration_batches(train.count, a.recalibrate, a.batch, a.seed)]}
    if a.load_weights:
        net = Net(net_config(a), a.seed)
        net.load_ts(a.load_weights)
        stats = recalibrate(net, train, a.recalibrate, a.batch, a.seed)
        out['recalibrated'] = [{'mean': m.tolist(), 'variance': v.tolist()} for m, v in stats]
        out['valAccuracy'], out['valSpikeRates'] = predict(net, val, stats)
    return out


def run_check(path, parser):
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError) as err:
        raise UsageError(f'--check: cannot read {path}: {err}') from None
    torch.set_num_threads(1)
    out = {'torch': torch.__version__}
    if 'x' in spec:
        y = torch.tensor(spec['y'], dtype=torch.int64)
        x = torch.tensor(spec['x'], dtype=torch.float32).view(len(y), 1, 28, 28)
        out['cases'] = [check_case(c, parser, x, y) for c in spec.get('cases', [])]
    if 'data' in spec:
        out['data'] = check_data(spec['data'], parser)
    emit(out)


# ---- bench mode (bench/train.ts) ----

def run_bench(a):
    net = Net(net_config(a), 1)
    opt = Optimizer(net, a.lr)
    x = (torch.arange(a.batch * 784, dtype=torch.int64) * 2654435761 % 256).float().view(a.batch, 1, 28, 28)
    y = torch.arange(a.batch) % 10
    train_step(net, opt, x, y, a)  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.steps):
        train_step(net, opt, x, y, a)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = a.steps * a.batch
    emit({'torch': torch.__version__, 'threads': a.threads, 'imagesPerSecond': n / wall, 'imagesPerCpuSecond': n / cpu, 'secondsPerStep': wall / a.steps})


# ---- flags: `sei train`'s names and defaults (scripts/commands/train.ts) ----

def parser_of():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)

    def number(flag, lo, hi=math.inf, integer=False):
        def parse(v):
            try:
                n = float(v)
            except ValueError:
                n = math.nan
            if not (lo <= n <= hi) or (integer and n != int(n)):
                raise argparse.ArgumentTypeError(f'{flag}: expected {"an integer" if integer else "a number"} in [{lo}, {hi}], got {v!r}')
            return int(n) if integer else n
        return parse

    mode = ap.add_mutually_exclusive_group()
    mode.add_argument('--train', action='store_true', help='train on Fashion-MNIST (per-epoch JSON lines, then a summary line)')
    mode.add_argument('--check', metavar='FILE', help='run the comparison cases of a JSON file (test/parity.test.ts)')
    ap.add_argument('--steps', type=number('--steps', 1, integer=True), default=6, help='bench mode: timed steps')
    ap.add_argument('--threads', type=number('--threads', 1, 256, integer=True), default=2, help='torch intra-op threads')
    ap.add_argument('--data', default=DATA_DIR, help='Fashion-MNIST folder ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz)')
    ap.add_argument('--epochs', type=number('--epochs', 1, 1000, integer=True), default=30)
    ap.add_argument('--batch', type=number('--batch', 1, 4096, integer=True), default=None, help='frames per step (default 64; bench mode 128)')
    ap.add_argument('--micro-batch', type=number('--micro-batch', 1, 4096, integer=True), default=None)
    ap.add_argument('--lr', type=number('--lr', 0), default=None, help='peak learning rate (default 2e-3; bench mode 1e-3)')
    ap.add_argument('--latent-lr', type=number('--latent-lr', 0), default=None)
    ap.add_argument('--lr-final', type=number('--lr-final', 0, 1), default=0.01)
    ap.add_argument('--warmup', type=number('--warmup', 0), default=0.3)
    ap.add_argument('--width', type=number('--width', 1, 512, integer=True), default=32)
    ap.add_argument('--T', type=number('--T', 1, 16, integer=True), default=2)
    ap.add_argument('--beta', type=number('--beta', 0, 1), default=0.5)
    ap.add_argument('--lif', choices=['fixed', 'learn'], default='fixed')
    ap.add_argument('--surrogate', choices=['fixed', 'theta'], default='fixed')
    ap.add_argument('--theta-init', choices=['uniform', 'depth'], default='uniform',
                    help='depth: each θ starts at sqrt of the currents its shortcuts sum')
    ap.add_argument('--shortcuts', choices=['multi', 'blocks', 'downsample', 'plain'], default='multi')
    ap.add_argument('--weights', choices=['binary', 'float'], default='binary')
    ap.add_argument('--neuron', choices=['lif', 'relu'], default='lif', help='relu: the ANN twin (float weights, T = 1)')
    ap.add_argument('--per-step', type=number('--per-step', 0), default=None, help='per-step CE weight (default 0; bench mode 0.5)')
    ap.add_argument('--label-smoothing', type=number('--label-smoothing', 0, 0.5), default=0.0)
    ap.add_argument('--teacher-epochs', type=number('--teacher-epochs', 0, 1000, integer=True), default=0,
                    help='train the ANN twin for N epochs first and distil from it (sei train --teacher --teacher-epochs N)')
    ap.add_argument('--kd-weight', type=number('--kd-weight', 0, 1), default=0.7)
    ap.add_argument('--kd-temperature', type=number('--kd-temperature', 0.1), default=1.0)
    ap.add_argument('--kd-per-step', type=number('--kd-per-step', 0), default=0.0, help="distillation on each step's logits, beside the mean's")
    ap.add_argument('--teacher-from', metavar='RUN', help='distil from the ANN teacher of a TS run folder (sei train --teacher-only)')
    ap.add_argument('--spike-penalty', type=number('--spike-penalty', 0), default=0.0, help='weight of the firing-rate term')
    ap.add_argument('--spike-target', type=number('--spike-target', 0, 1), default=0.0, help='rate each layer may reach before it applies')
    ap.add_argument('--no-augment', dest='augment', action='store_false')
    ap.add_argument('--seed', type=number('--seed', 0, 2 ** 31, integer=True), default=1)
    ap.add_argument('--train-limit', type=number('--train-limit', 1, 60000, integer=True), default=None)
    ap.add_argument('--val-size', type=number('--val-size', 0, 30000, integer=True), default=5000)
    ap.add_argument('--recalibrate', type=number('--recalibrate', 0, 1e6, integer=True), default=RECALIBRATE_BATCHES)
    ap.add_argument('--load-weights', metavar='FILE', help='start from a TS checkpoint (RUN/last.json and its .bin)')
    return ap


def finish(a, mode=None):
    """Mode-dependent defaults, and the cross-flag checks `sei train` makes. A check case keeps its kd flags (its
    teacher logits come with the case)."""
    mode = mode or ('check' if a.check else 'train' if a.train else 'bench')
    bench = mode == 'bench'
    a.batch = a.batch or (128 if bench else 64)
    a.lr = a.lr if a.lr is not None else (1e-3 if bench else 2e-3)
    a.per_step = a.per_step if a.per_step is not None else (0.5 if bench else 0.0)
    if a.micro_batch and (a.micro_batch > a.batch or a.batch % a.micro_batch):
        raise UsageError(f'--micro-batch: expected a divisor of --batch {a.batch}, got {a.micro_batch}')
    if a.teacher_epochs and a.teacher_from:
        raise UsageError('--teacher-epochs and --teacher-from: expected at most one, got both')
    if not a.teacher_epochs and not a.teacher_from and mode != 'check':
        a.kd_weight = 0.0
    return a


def main():
    parser = parser_of()
    try:
        a = finish(parser.parse_args())
        torch.set_num_threads(a.threads)
        if a.check:
            run_check(a.check, parser)
        elif a.train:
            run_training(a)
        else:
            run_bench(a)
    except UsageError as err:
        sys.stderr.write(f'train_torch.py: {err}\n')
        sys.exit(2)


if __name__ == '__main__':
    main()
