#!/usr/bin/env python3
"""The seed's image path, timed: Pillow open + convert("RGB") + torchvision Resize(256), CenterCrop(224),
ToTensor, Normalize, from JPEG bytes in memory, one image at a time on one thread.

    python Benchmarks/ImageBenchmarks/pillow_torchvision.py FILE.jpg [--seconds S]
Compare with `swift run -c release bench-images FILE.jpg` on the same file.
"""
import io
import sys
import time

import torch
import torchvision.transforms as T
from PIL import Image

torch.set_num_threads(1)  # per-core cost, as the Swift side
args = sys.argv[1:]
seconds = 3.0
if "--seconds" in args:
    i = args.index("--seconds")
    seconds = float(args[i + 1])
    del args[i:i + 2]
data = open(args[0], "rb").read()
tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def timeit(name, fn):
    for _ in range(5):
        fn()
    n, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    dt, cpu = (time.perf_counter() - t0) / n, (time.thread_time() - c0) / n
    print(f"{name:<34} wall {dt * 1000:7.3f} ms {1 / dt:7.1f} images/s | cpu {cpu * 1000:7.3f} ms {1 / cpu:7.1f} images/s")


img = Image.open(io.BytesIO(data)).convert("RGB")
print(f"file {args[0]}: {img.size[0]}x{img.size[1]}, {len(data)} bytes")
timeit("decode (Pillow)", lambda: Image.open(io.BytesIO(data)).convert("RGB"))
timeit("Resize(256)+CenterCrop(224)", lambda: T.CenterCrop(224)(T.Resize(256)(img)))
crop = T.CenterCrop(224)(T.Resize(256)(img))
timeit("ToTensor+Normalize", lambda: tf.transforms[3](tf.transforms[2](crop)))
timeit("total: JPEG bytes -> tensor", lambda: tf(Image.open(io.BytesIO(data)).convert("RGB")))
