#!/usr/bin/env python3
"""Writes the PyTorch parity fixtures of Tests/TensorsTests/Fixtures (needs torch + torchvision; CI never runs it).

    python Tests/TorchFixtureScripts/make_model_fixtures.py            # the committed fixtures

The full torchvision ResNet-50 case is make_seeded_resnet50_fixture.py (weights drawn from a seed, so only
torch's outputs are committed).

Format (.rnfx), little-endian: b"RNFX", u32 version (1), u32 entry count; then per entry: u32 name length,
UTF-8 name, u32 rank, rank × u32 dims, float32 values (row-major). Integers (labels, counters, op
settings) are stored as float32.
"""
import argparse
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet, resnet50

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "TensorsTests", "Fixtures")


def write_rnfx(path, entries):
    path = os.path.normpath(path)
    with open(path, "wb") as f:
        f.write(b"RNFX")
        f.write(struct.pack("<II", 1, len(entries)))
        for name, value in entries.items():
            t = torch.as_tensor(value).detach().to(torch.float32).contiguous()
            raw = name.encode("utf-8")
            f.write(struct.pack("<I", len(raw)))
            f.write(raw)
            f.write(struct.pack("<I", t.dim()))
            f.write(struct.pack("<%dI" % t.dim(), *t.shape))
            f.write(t.numpy().astype("<f4").tobytes())
    print(f"{path}: {len(entries)} entries, {os.path.getsize(path)} bytes")


class NarrowResNet(ResNet):
    """torchvision's ResNet (same blocks, keys and forward) with chosen stem and stage widths.
    Mirrors ResNetConfig.narrow / .narrowBasic in Sources/Models/ResNet.swift."""

    def __init__(self, block, layers, stem, widths, num_classes):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = stem, 1, 1, 64
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes) if num_classes else nn.Identity()


def randomize_batchnorm(model, gen):
    """Non-trivial BN parameters and running statistics, so that eval mode is not close to the identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def state_entries(prefix, module):
    return {f"{prefix}{k}": v.clone() for k, v in module.state_dict().items()}


def model_case(model, forward, inputs, labels, class_weights=None, train_setup=None):
    """state before, then for train and eval: logits, loss, every parameter gradient, buffers after."""
    entries = state_entries("state/", model)
    entries.update(inputs)
    entries["labels"] = labels.float()
    if class_weights is not None:
        entries["class_weights"] = class_weights
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    for mode in ("train", "eval"):
        model.load_state_dict(initial)
        model.zero_grad(set_to_none=True)
        model.train(mode == "train")
        if mode == "train" and train_setup is not None:
            train_setup(model)
        logits = forward(model)
        loss = F.cross_entropy(logits, labels, weight=class_weights)
        loss.backward()
        entries[f"{mode}/logits"] = logits
        entries[f"{mode}/loss"] = loss.reshape(())
        for k, p in model.named_parameters():
            entries[f"{mode}/grad/{k}"] = p.grad.clone()
        for k, b in model.named_buffers():
            entries[f"{mode}/buffer_after/{k}"] = b.clone()
    return entries


def narrow_cases(gen):
    cases = {}
    for name, block, stem, widths in (("narrow_bottleneck", Bottleneck, 8, [4, 8, 8, 16]),
                                      ("narrow_basic", BasicBlock, 8, [8, 8, 16, 16])):
        torch.manual_seed(1 if block is Bottleneck else 2)
        model = NarrowResNet(block, [2, 1, 1, 1], stem, widths, 10)
        randomize_batchnorm(model, gen)
        x = torch.randn(4, 3, 40, 36, generator=gen)
        labels = torch.randint(0, 10, (4,), generator=gen)
        weights = (torch.rand(10, generator=gen) + 0.5) if block is BasicBlock else None
        if block is Bottleneck:  # the same weights as torch.save writes them, for the .pth reader
            torch.save(model.state_dict(), os.path.join(OUT, f"{name}.pth"))
        cases[name] = model_case(model, lambda m: m(x), {"input": x}, labels, class_weights=weights)
    return cases


class Fusion(nn.Module):
    """The seed script's model (docs/ARCHITECTURE.md §3) with a narrow backbone."""

    def __init__(self, backbone, feature_dim, meta_dim):
        super().__init__()
        self.backbone = backbone
        self.meta_net = nn.Sequential(nn.Linear(meta_dim, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(feature_dim + 64, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 2))

    def forward(self, image, meta):
        return self.head(torch.cat([self.backbone(image), self.meta_net(meta)], dim=1))


def fusion_case(gen):
    torch.manual_seed(3)
    backbone = NarrowResNet(Bottleneck, [2, 1, 1, 1], 8, [4, 8, 8, 16], None)
    model = Fusion(backbone, 64, 20)
    randomize_batchnorm(model, gen)
    x = torch.randn(4, 3, 40, 36, generator=gen)
    meta = torch.rand(4, 20, generator=gen)
    labels = torch.tensor([0, 1, 1, 0])

    def no_dropout(m):  # train mode for BatchNorm; dropout masks cannot match across generators
        for mod in m.modules():
            if isinstance(mod, nn.Dropout):
                mod.eval()

    return model_case(model, lambda m: m(x, meta), {"input": x, "meta": meta}, labels, train_setup=no_dropout)


def op_cases(gen):
    e = {}
    # conv2d: (name, N, C, H, W, K, R, S, stride, padding, bias)
    convs = [("conv_stem", 2, 3, 11, 10, 4, 7, 7, (2, 2), (3, 3), False),
             ("conv_3x3", 2, 5, 7, 6, 6, 3, 3, (1, 1), (1, 1), True),
             ("conv_1x1_s2", 3, 6, 7, 7, 5, 1, 1, (2, 2), (0, 0), True),
             ("conv_rect", 2, 3, 8, 9, 4, 3, 2, (2, 1), (1, 0), True)]
    for name, n, c, h, w, k, r, s, stride, pad, has_bias in convs:
        x = torch.randn(n, c, h, w, generator=gen, requires_grad=True)
        wt = torch.randn(k, c, r, s, generator=gen, requires_grad=True)
        b = torch.randn(k, generator=gen, requires_grad=True) if has_bias else None
        y = F.conv2d(x, wt, b, stride=stride, padding=pad)
        dy = torch.randn(y.shape, generator=gen)
        y.backward(dy)
        e.update({f"{name}/x": x, f"{name}/w": wt, f"{name}/settings": torch.tensor([*stride, *pad]),
                  f"{name}/y": y, f"{name}/dy": dy, f"{name}/dx": x.grad, f"{name}/dw": wt.grad})
        if has_bias:
            e.update({f"{name}/b": b, f"{name}/db": b.grad})
    # batchnorm2d, training and inference
    for name, training in (("bn_train", True), ("bn_eval", False)):
        x = (torch.randn(3, 5, 4, 3, generator=gen) * 2 + 1).requires_grad_(True)
        g = (torch.rand(5, generator=gen) + 0.5).requires_grad_(True)
        b = torch.randn(5, generator=gen).requires_grad_(True)
        rm = torch.randn(5, generator=gen) * 0.5
        rv = torch.rand(5, generator=gen) + 0.5
        e.update({f"{name}/x": x, f"{name}/gamma": g, f"{name}/beta": b,
                  f"{name}/running_mean": rm.clone(), f"{name}/running_var": rv.clone()})
        y = F.batch_norm(x, rm, rv, g, b, training=training, momentum=0.1, eps=1e-5)
        dy = torch.randn(y.shape, generator=gen)
        y.backward(dy)
        e.update({f"{name}/y": y, f"{name}/dy": dy, f"{name}/dx": x.grad, f"{name}/dgamma": g.grad, f"{name}/dbeta": b.grad,
                  f"{name}/running_mean_after": rm, f"{name}/running_var_after": rv})
    # max pooling: (name, kernel, stride, padding)
    for name, k, s, p in (("maxpool_3s2p1", 3, 2, 1), ("maxpool_2s2", 2, 2, 0)):
        x = torch.randn(2, 3, 9, 8, generator=gen, requires_grad=True)
        y = F.max_pool2d(x, k, s, p)
        dy = torch.randn(y.shape, generator=gen)
        y.backward(dy)
        e.update({f"{name}/x": x, f"{name}/settings": torch.tensor([k, s, p]), f"{name}/y": y, f"{name}/dy": dy,
                  f"{name}/dx": x.grad})
    # global average pooling, linear, cross-entropy with class weights
    x = torch.randn(3, 4, 5, 6, generator=gen, requires_grad=True)
    y = F.adaptive_avg_pool2d(x, 1).flatten(1)
    dy = torch.randn(y.shape, generator=gen)
    y.backward(dy)
    e.update({"gap/x": x, "gap/y": y, "gap/dy": dy, "gap/dx": x.grad})
    x = torch.randn(5, 7, generator=gen, requires_grad=True)
    wt = torch.randn(3, 7, generator=gen, requires_grad=True)
    b = torch.randn(3, generator=gen, requires_grad=True)
    y = F.linear(x, wt, b)
    dy = torch.randn(y.shape, generator=gen)
    y.backward(dy)
    e.update({"linear/x": x, "linear/w": wt, "linear/b": b, "linear/y": y, "linear/dy": dy,
              "linear/dx": x.grad, "linear/dw": wt.grad, "linear/db": b.grad})
    z = (torch.randn(6, 3, generator=gen) * 3).requires_grad_(True)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    cw = torch.tensor([0.5, 2.0, 1.25])
    loss = F.cross_entropy(z, labels, weight=cw)
    loss.backward()
    e.update({"xent/logits": z, "xent/labels": labels, "xent/class_weights": cw, "xent/loss": loss.reshape(()),
              "xent/dlogits": z.grad})
    return e


def optimizer_cases(gen):
    """Parameter trajectories over 5 steps with fixed gradients, for each optimizer setting."""
    e = {}
    p0 = torch.randn(5, 4, generator=gen)
    p1 = torch.randn(7, generator=gen)
    grads = [(torch.randn(5, 4, generator=gen), torch.randn(7, generator=gen)) for _ in range(5)]
    e["p0"], e["p1"] = p0, p1
    for t, (g0, g1) in enumerate(grads):
        e[f"grad/{t}/p0"], e[f"grad/{t}/p1"] = g0, g1
    settings = {
        "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
        "adam_l2": lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
        "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        "sgd_dampened": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1),
    }
    for name, make in settings.items():
        ps = [nn.Parameter(p0.clone()), nn.Parameter(p1.clone())]
        opt = make(ps)
        for t, (g0, g1) in enumerate(grads):
            ps[0].grad, ps[1].grad = g0.clone(), g1.clone()
            opt.step()
            e[f"{name}/{t}/p0"], e[f"{name}/{t}/p1"] = ps[0].detach().clone(), ps[1].detach().clone()
    return e


def torchvision_keys(path):
    """state_dict keys and shapes of torchvision's ResNets, one 'depth key dim,dim,...' line each."""
    from torchvision.models import resnet18, resnet34, resnet101, resnet152
    lines = []
    for depth, make in ((18, resnet18), (34, resnet34), (50, resnet50), (101, resnet101), (152, resnet152)):
        for key, value in make().state_dict().items():
            lines.append(f"{depth} {key} {','.join(str(d) for d in value.shape)}")
    path = os.path.normpath(path)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{path}: {len(lines)} keys")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20261126)
    os.makedirs(OUT, exist_ok=True)
    for name, entries in narrow_cases(gen).items():
        write_rnfx(os.path.join(OUT, f"{name}.rnfx"), entries)
    write_rnfx(os.path.join(OUT, "fusion_narrow.rnfx"), fusion_case(gen))
    write_rnfx(os.path.join(OUT, "ops.rnfx"), op_cases(gen))
    write_rnfx(os.path.join(OUT, "optimizers.rnfx"), optimizer_cases(gen))
    torchvision_keys(os.path.join(OUT, "torchvision_resnet_keys.txt"))


if __name__ == "__main__":
    main()
