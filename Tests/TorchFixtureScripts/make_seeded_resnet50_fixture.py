#!/usr/bin/env python3
"""Writes Tests/TensorsTests/Fixtures/seeded_resnet50.rnfx: torchvision's full ResNet-50 on weights that the Swift
tests draw again themselves, so the full-size parity test runs in CI with nothing large committed
(needs torch + torchvision + numpy; CI never runs it).

    python Tests/TorchFixtureScripts/make_seeded_resnet50_fixture.py
    python Tests/TorchFixtureScripts/make_seeded_resnet50_fixture.py --check-swift-pth DIR/seeded_resnet50.pth
        # torch.load(weights_only=True) of the .pth our TorchCheckpoint writer wrote (the Swift test keeps it in
        # DIR when SEEDED_RESNET50_EXPORT_DIR=DIR is set): same keys, order, dtypes and bit-identical values.

The draw (mirrored by Tests/TensorsTests/SeededResNet50Weights.swift; change both together):
  * One SplitMix64 stream (Vigna's splitmix64.c constants) seeded with WEIGHT_SEED walks the 320 state-dict
    entries of torchvision's resnet50 in state_dict order (Fixtures/torchvision_resnet_keys.txt), taking one
    64-bit draw per element, row-major. The i-th draw (i = 1, 2, ...) is mix(seed + i * 0x9E3779B97F4A7C15),
    which is what lets numpy draw them all at once.
  * A draw z becomes u = float32(z >> 40) * 2^-24 in [0, 1) (exact), then value = (u - 0.5) * width [+ center]
    in float32: u - 0.5 is exact, so each value costs one or two correctly rounded float32 operations, the
    same in numpy and Swift.
  * conv and fc weights: width 2 * sqrt(3 / fan_in) (uniform, variance 1 / fan_in); fc.bias: width 2 / sqrt(2048);
    BatchNorm weight: center 1, width 0.5, except each bottleneck's last (bn3): center 0.5, width 0.5, which
    keeps the residual stream from growing block after block in eval mode; BatchNorm bias and running_mean:
    width 0.2; running_var: center 1, width 1 ([0.5, 1.5)); num_batches_tracked: int64 z >> 54.
    With these the eval-mode features are O(1) (mean ~0.6, max ~6, ~3% exact zeros after the ReLU).
    width and center are rounded from double to float32 (sqrt and division are correctly rounded in both).
  * Input: 2 x 3 x 224 x 224 from seed INPUT_SEED, center 0.25, width 4 ([-1.75, 2.25), ImageNet-normalised
    range). Cotangent of the training-mode backward: 2 x 2048 from seed COTANGENT_SEED, width 2.

Entries (float32): draw/first_values and draw/last_values (each state-dict entry's first and last drawn value,
in key order, to pin the draw itself), draw/input_ends; eval/logits (with fc); then per mode (eval, train):
<mode>/features (fc = Identity) and <mode>/grad/<key>, gradients of sum(features * cotangent) for GRADIENT_KEYS
(their leading values only: conv1.weight's output channels 0..<8, the others' first 512 entries); train/buffer_after/bn1.running_mean|var after the train forward.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torchvision

from make_model_fixtures import write_rnfx

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "TensorsTests", "Fixtures")

WEIGHT_SEED = 50
INPUT_SEED = 224
COTANGENT_SEED = 2048
GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(seed, start, count):
    """Draws start+1 ... start+count of the SplitMix64 stream seeded with `seed` (uint64 wraparound)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(start + 1, start + count + 1, dtype=np.uint64) * GAMMA
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def centered(z, width, center=0.0):
    """(u - 0.5) * width + center in float32, u = (z >> 40) * 2^-24; no addition when center is 0."""
    u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    v = (u - np.float32(0.5)) * np.float32(width)
    return v + np.float32(center) if center != 0 else v


def resnet50_keys():
    """torchvision resnet50's state_dict keys and shapes, in order."""
    keys = []
    with open(os.path.join(FIXTURES, "torchvision_resnet_keys.txt")) as f:
        for line in f:
            parts = line.split()
            if parts[0] == "50":
                shape = [int(d) for d in parts[2].split(",")] if len(parts) > 2 else []
                keys.append((parts[1], shape))
    return keys


def drawn_state_dict():
    state, offset = {}, 0
    for key, shape in resnet50_keys():
        count = int(np.prod(shape)) if shape else 1
        z = splitmix64(WEIGHT_SEED, offset, count)
        offset += count
        if key.endswith("num_batches_tracked"):
            state[key] = torch.from_numpy((z >> np.uint64(54)).astype(np.int64).reshape(shape))
            continue
        if key.endswith(".weight") and len(shape) in (2, 4):
            v = centered(z, 2 * math.sqrt(3.0 / int(np.prod(shape[1:]))))
        elif key == "fc.bias":
            v = centered(z, 2 / math.sqrt(2048))
        elif key.endswith("running_var"):
            v = centered(z, 1.0, 1.0)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            v = centered(z, 0.2)
        elif key.endswith(".weight"):  # BatchNorm
            v = centered(z, 0.5, 0.5 if ".bn3." in key else 1.0)
        else:
            raise ValueError(f"no draw rule for {key}")
        state[key] = torch.from_numpy(v.reshape(shape))
    return state


def first_and_last(state):
    first = [float(t.reshape(-1)[0]) for t in state.values()]
    last = [float(t.reshape(-1)[-1]) for t in state.values()]
    return torch.tensor(first), torch.tensor(last)


def relative_error(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


GRADIENT_KEYS = ["conv1.weight", "bn1.weight", "bn1.bias", "layer3.0.downsample.1.weight", "layer4.2.bn3.weight"]


def features_and_gradients(state, x, cotangent, mode, dtype):
    """Backbone features (fc = Identity) and the gradients of sum(features * cotangent) in `mode`, plus the model."""
    model = torchvision.models.resnet50()
    model.load_state_dict(state)  # strict: the drawn keys and shapes are torchvision's
    model.fc = torch.nn.Identity()
    model.to(dtype).train(mode == "train")
    features = model(x.to(dtype))
    (features * cotangent.to(dtype)).sum().backward()
    parameters = dict(model.named_parameters())
    return features.detach(), {key: parameters[key].grad for key in GRADIENT_KEYS}, model


def write_fixture():
    state = drawn_state_dict()
    x = torch.from_numpy(centered(splitmix64(INPUT_SEED, 0, 2 * 3 * 224 * 224), 4.0, 0.25).reshape(2, 3, 224, 224))
    cotangent = torch.from_numpy(centered(splitmix64(COTANGENT_SEED, 0, 2 * 2048), 2.0).reshape(2, 2048))
    first, last = first_and_last(state)
    entries = {
        "draw/first_values": first,
        "draw/last_values": last,
        "draw/input_ends": torch.stack([x.reshape(-1)[0], x.reshape(-1)[-1]]),
    }
    classifier = torchvision.models.resnet50()
    classifier.load_state_dict(state)
    with torch.no_grad():
        entries["eval/logits"] = classifier.eval()(x)

    for mode in ("eval", "train"):
        features, gradients, model = features_and_gradients(state, x, cotangent, mode, torch.float32)
        # torch's own float32 against float64 on the same weights: how well conditioned each compared value is,
        # which is what the Swift tolerances rest on.
        exact_features, exact_gradients, _ = features_and_gradients(state, x, cotangent, mode, torch.float64)
        print(f"{mode}: features mean {features.mean():.4f}, max {features.abs().max():.4f}, "
              f"zeros {(features == 0).float().mean():.4f}")
        print(f"  torch float32 vs float64 rel err: features {relative_error(features, exact_features):.2e}; "
              + ", ".join(f"grad {k} {relative_error(gradients[k], exact_gradients[k]):.2e}" for k in GRADIENT_KEYS))
        entries[f"{mode}/features"] = features
        for key, gradient in gradients.items():
            # The leading values only, to keep the fixture small: conv1's first 8 output channels (the far end of
            # the backward: every block's gradient flows into it), the first 512 channels of the others.
            entries[f"{mode}/grad/{key}"] = gradient[:8] if key == "conv1.weight" else gradient[:512]
        if mode == "train":
            entries["train/buffer_after/bn1.running_mean"] = model.bn1.running_mean
            entries["train/buffer_after/bn1.running_var"] = model.bn1.running_var
    write_rnfx(os.path.join(FIXTURES, "seeded_resnet50.rnfx"), entries)


def check_swift_pth(path):
    """The .pth written by our TorchCheckpoint writer loads in torch and holds exactly the drawn state dict."""
    loaded = torch.load(path, weights_only=True)
    state = drawn_state_dict()
    assert list(loaded.keys()) == list(state.keys()), "key order differs"
    for key, expected in state.items():
        got = loaded[key]
        assert got.dtype == expected.dtype, f"{key}: dtype {got.dtype}, expected {expected.dtype}"
        assert got.shape == expected.shape, f"{key}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        assert torch.equal(got.view(-1).view(torch.int32 if got.dtype == torch.float32 else got.dtype),
                           expected.view(-1).view(torch.int32 if got.dtype == torch.float32 else got.dtype)), \
            f"{key}: values differ"
    model = torchvision.models.resnet50()
    model.load_state_dict(loaded)
    print(f"{path}: torch.load(weights_only=True) gives the drawn {len(state)} tensors bit for bit; "
          "resnet50().load_state_dict(strict=True) accepts it")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-swift-pth", metavar="PATH", help="check a .pth written by the Swift test instead")
    args = parser.parse_args()
    if args.check_swift_pth:
        check_swift_pth(args.check_swift_pth)
    else:
        write_fixture()


if __name__ == "__main__":
    sys.exit(main())
