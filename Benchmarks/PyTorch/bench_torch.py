#!/usr/bin/env python3
"""PyTorch's side of `make bench`: one measurement per call, printed as one JSON line, so the Swift
driver can alternate rounds between the two systems on this shared, noisy machine.

  bench_torch.py --case inference|frozen-train-bn|train-step|jpeg|jpeg-1-thread|train-step-memory
                 [--threads N] [--batch N] [--steps N] [--jpeg PATH] [--meta-dim N]
                 [--memory-format nchw|channels_last]

Cases (batch 8, 224x224, like our side): inference = backbone forward in eval mode under no_grad;
frozen-train-bn = the seed's --freeze-backbone cost (backbone parameters frozen, BatchNorm in training
mode); train-step = forward, backward and Adam on the whole fusion model; jpeg = JPEG files to normalized
224 tensors with Pillow + torchvision, the seed's way: a DataLoader with --threads worker processes and
batch 8 (timed from the first batch, so worker start-up is not counted); jpeg-1-thread = the same one
image at a time in this process with one torch thread; train-step-memory = peak resident memory of a process
that runs train-step steps (ru_maxrss). Needs torch, torchvision, pillow; CI never runs it.

--memory-format applies to the model cases: channels_last converts the model and the input batch to
torch.channels_last, the layout PyTorch's CPU performance guide recommends for convolutions (oneDNN then
skips reordering every activation). The driver measures both layouts and compares us with the faster one.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed_resnet50 import FusionModel, preprocessing  # noqa: E402


def images_per_second(step, images_per_step, steps):
    step()  # warm-up: oneDNN primitive creation, allocator growth
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return images_per_step * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True,
                        choices=["inference", "frozen-train-bn", "train-step", "jpeg", "jpeg-1-thread", "train-step-memory"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--jpeg", default=None)
    parser.add_argument("--meta-dim", type=int, default=84)
    parser.add_argument("--memory-format", choices=["nchw", "channels_last"], default="nchw",
                        help="layout of the model and its input batch (model cases only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.case in ("jpeg", "jpeg-1-thread"):
        from PIL import Image
        transform = preprocessing()

        def decode(path):
            with Image.open(path) as image:
                return transform(image.convert("RGB"))

        if args.case == "jpeg-1-thread":
            torch.set_num_threads(1)
            rate = images_per_second(lambda: decode(args.jpeg), 1, max(args.steps, 20))
        else:
            class Frames(torch.utils.data.Dataset):
                def __len__(self):
                    return 8 * 41

                def __getitem__(self, index):
                    return decode(args.jpeg)

            loader = iter(torch.utils.data.DataLoader(Frames(), batch_size=8, num_workers=args.threads))
            next(loader)  # workers started and warm
            start = time.perf_counter()
            count = sum(batch.shape[0] for batch in loader)
            rate = count / (time.perf_counter() - start)
        print(json.dumps({"case": args.case, "images_per_second": rate}))
        return

    model = FusionModel(args.meta_dim)
    images = torch.randn(args.batch, 3, 224, 224)
    meta = torch.randn(args.batch, args.meta_dim)
    labels = torch.randint(0, 2, (args.batch,))
    if args.memory_format == "channels_last":
        # Only 4-D tensors change layout: the convolutions' weights and the image batch; the linear layers
        # and the metadata batch stay as they are.
        model = model.to(memory_format=torch.channels_last)
        images = images.to(memory_format=torch.channels_last)

    if args.case == "inference":
        model.eval()

        def step():
            with torch.no_grad():
                model.backbone(images)
    elif args.case == "frozen-train-bn":
        model.train()
        for p in model.backbone.parameters():
            p.requires_grad = False

        def step():
            with torch.no_grad():
                model.backbone(images)
    else:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        criterion = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad()
            criterion(model(images, meta), labels).backward()
            optimizer.step()

    rate = images_per_second(step, args.batch, args.steps)
    result = {"case": args.case, "memory_format": args.memory_format, "images_per_second": rate}
    if args.case == "train-step-memory":
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
