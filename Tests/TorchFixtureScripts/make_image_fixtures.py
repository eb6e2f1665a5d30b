#!/usr/bin/env python3
"""Writes the committed fixtures of Tests/DataPipelineTests/Fixtures/ (torch side of the data pipeline).

Run with a Python that has torch, torchvision and Pillow (CI never runs this; tests read the files):

    python Tests/TorchFixtureScripts/make_image_fixtures.py            # (re)write the fixtures
    python Tests/TorchFixtureScripts/make_image_fixtures.py --check-demo DIR
                                                                        # read a make-demo-data folder
                                                                        # with the seed's rules

Fixture formats (all little-endian, no headers):
  images/<name>.jpg            small JPEGs of several sizes, aspect ratios and JPEG flavours.
  images/<name>.crop3.u8       Pillow + torchvision `Resize(256)` + `CenterCrop(224)` result as uint8 RGB
                               (what `ToTensor` sees), sampled every 3rd row and column starting at 0:
                               75 x 75 x 3 bytes, HWC. Storing the uint8 crop keeps the fixtures small.
  image_expectations.json      per image: decoded size, resized size, crop offsets, the per-channel mean of
                               the full normalized torch tensor (float64), and a few full-tensor samples.
  normalize_lut.f32            torch `ToTensor()` + `Normalize(mean, std)` applied to every byte value:
                               3 x 256 float32 (channel-major), so the arithmetic is checked exactly.
  box_encoding.json            bounding_boxes cells and the metadata box encodings the seed's rules give.
"""
import io
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "DataPipelineTests", "Fixtures"))
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
VEHICLES = {"car", "truck", "bus", "motorcycle", "vehicle"}
EXTENSIONS = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"]


# ---------------------------------------------------------------- the seed's rules (docs/ARCHITECTURE.md §2)

def parse_boxes(cell):
    """Returns (boxes, ok). Empty/NaN -> no boxes; JSON; then JSON with "" -> "; else no boxes (ok False)."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return [], True
    s = str(cell)
    if s.strip() == "":
        return [], True
    for text in (s, s.replace('""', '"')):
        try:
            boxes = json.loads(text)
        except Exception:
            continue
        # the seed would crash on anything but a list of objects; we read it as "no boxes" and warn
        if not isinstance(boxes, list) or not all(isinstance(b, dict) for b in boxes):
            return [], False
        return boxes, True
    return [], False


def score_of(box):
    s = box.get("score", 0) if isinstance(box, dict) else 0
    if isinstance(s, bool):
        return float(s)
    if isinstance(s, (int, float)):
        return float(s)
    return 0.0


def encode_boxes(boxes, k):
    boxes = sorted(boxes, key=score_of, reverse=True)[:k]  # sorted() is stable, reverse keeps ties' order
    out = []
    for b in boxes:
        bbox = b.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4:
            coords = [float(v) if isinstance(v, (int, float)) else 0.0 for v in bbox]
        else:
            coords = [0.0, 0.0, 0.0, 0.0]
        x1, y1, x2, y2 = coords
        label = str(b.get("label", "")).strip().lower()
        onehot = [1.0, 0.0, 0.0] if label == "person" else ([0.0, 1.0, 0.0] if label in VEHICLES else [0.0, 0.0, 1.0])
        out += [x1 / 1280.0, y1 / 960.0, x2 / 1280.0, y2 / 960.0, score_of(b)] + onehot
    return out + [0.0] * (8 * k - len(out))


def parse_label(v):
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("1", "interesting", "true", "yes"):
            return 1
        if s in ("0", "not interesting", "false", "no"):
            return 0
        return 1 if float(s) == 1 else 0
    return 1 if int(v) == 1 else 0


def find_image(images_dir, name):
    name = str(name).strip()
    if os.path.splitext(name)[1]:
        return os.path.join(images_dir, name)
    for ext in EXTENSIONS:
        p = os.path.join(images_dir, name + ext)
        if os.path.exists(p):
            return p
    for f in sorted(os.listdir(images_dir)):
        if f.startswith(name + "."):
            return os.path.join(images_dir, f)
    raise FileNotFoundError(name)


def check_demo(folder, k=10):
    """Reads a make-demo-data folder exactly as the seed would and prints a summary."""
    import pandas as pd
    import torch
    from PIL import Image
    df = pd.read_csv(os.path.join(folder, "labels.csv"))
    df.columns = [c.strip() for c in df.columns]
    required = ["image_name", "interesting/not interesting", "num_person", "num_vehicles",
                "avg_person_conf", "total_boxes", "bounding_boxes"]
    missing = [c for c in required if c not in df.columns]
    assert not missing, missing
    labels, metas, bad = [], [], 0
    for _, row in df.iterrows():
        labels.append(parse_label(row["interesting/not interesting"]))
        boxes, ok = parse_boxes(row["bounding_boxes"])
        bad += 0 if ok else 1
        metas.append([float(row["num_person"]), float(row["num_vehicles"]), float(row["avg_person_conf"]),
                      float(row["total_boxes"])] + encode_boxes(boxes, k))
        img = Image.open(find_image(os.path.join(folder, "images"), row["image_name"])).convert("RGB")
        assert img.size == (1280, 960), img.size
    meta = torch.tensor(metas, dtype=torch.float32)
    pos = sum(labels) / len(labels)
    print(f"rows {len(df)}  positives {sum(labels)} ({pos:.1%})  meta {tuple(meta.shape)}  "
          f"unparseable box cells {bad}  mean boxes/row {df['total_boxes'].mean():.2f}")


# ---------------------------------------------------------------- fixtures

def scene(w, h, seed):
    """A small synthetic scene: gradients, rectangles, ellipses and noise (JPEG-realistic content)."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([120 + 80 * np.sin(xx / (w / 3.0) + c) * np.cos(yy / (h / 2.0)) for c in range(3)], -1)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(2, max(3, w // 3))), y0 + int(rng.integers(2, max(3, h // 3)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.rectangle if rng.random() < 0.5 else d.ellipse)([x0, y0, x1, y1], fill=color)
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, 3, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def write_images():
    import numpy as np
    import torch
    import torchvision.transforms as T
    from PIL import Image
    os.makedirs(os.path.join(FIXTURES, "images"), exist_ok=True)
    specs = [  # name, width, height, mode, save options
        ("frame_1280x960", 1280, 960, "RGB", dict(quality=75)),
        ("odd_333x257", 333, 257, "RGB", dict(quality=90)),
        ("portrait_257x401", 257, 401, "RGB", dict(quality=90, subsampling=0)),   # 4:4:4
        ("wide_1001x299", 1001, 299, "RGB", dict(quality=85, progressive=True)),  # progressive
        ("sub422_402x311", 402, 311, "RGB", dict(quality=85, subsampling=1)),      # 4:2:2
        ("exact_256x300", 256, 300, "RGB", dict(quality=90)),                     # only a vertical pass
        ("upscale_150x201", 150, 201, "RGB", dict(quality=90)),                   # enlarged
        ("gray_321x243", 321, 243, "L", dict(quality=90)),
        ("cmyk_200x230", 200, 230, "CMYK", dict(quality=80)),
    ]
    resize = T.Resize(256)
    crop = T.CenterCrop(224)
    totensor = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    expectations = []
    for i, (name, w, h, mode, opts) in enumerate(specs):
        img = scene(w, h, seed=100 + i).convert(mode)
        path = os.path.join(FIXTURES, "images", name + ".jpg")
        img.save(path, "JPEG", **opts)
        rgb = Image.open(path).convert("RGB")
        resized = resize(rgb)
        cropped = crop(resized)
        arr = np.asarray(cropped, dtype=np.uint8)
        arr[::3, ::3].tofile(os.path.join(FIXTURES, "images", name + ".crop3.u8"))
        t = totensor(cropped)  # the seed's transform, applied after Pillow
        full = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])(rgb)
        assert torch.equal(t, full)
        samples = []
        rng = np.random.default_rng(i)
        for _ in range(8):
            c, y, x = int(rng.integers(0, 3)), int(rng.integers(0, 224)), int(rng.integers(0, 224))
            samples.append([c, y, x, float(t[c, y, x])])
        expectations.append(dict(
            name=name, width=rgb.size[0], height=rgb.size[1],
            resized=[resized.size[0], resized.size[1]],
            crop_left=int(round((resized.size[0] - 224) / 2.0)), crop_top=int(round((resized.size[1] - 224) / 2.0)),
            channel_mean=[float(t[c].double().mean()) for c in range(3)],
            samples=samples))
    with open(os.path.join(FIXTURES, "image_expectations.json"), "w") as f:
        json.dump(expectations, f, indent=1)
    lut = totensor(Image.fromarray(np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (1, 1, 3))))
    lut[:, 0, :].numpy().astype("<f4").tofile(os.path.join(FIXTURES, "normalize_lut.f32"))


BOX_CELLS = [
    "",
    "[]",
    '[{"bbox": [100, 200, 300, 400], "score": 0.9, "label": "person"}]',
    # doubled quotes as a spreadsheet export leaves them inside the cell
    '[{""bbox"": [10, 20, 30, 40], ""score"": 0.5, ""label"": ""Car""}]',
    # ties keep JSON order; missing score counts 0; string score counts 0
    '[{"bbox": [1, 2, 3, 4], "score": 0.7, "label": "truck"},'
    ' {"bbox": [5, 6, 7, 8], "score": 0.7, "label": " Person "},'
    ' {"bbox": [9, 10, 11, 12], "label": "bus"},'
    ' {"bbox": [13, 14, 15, 16], "score": "0.99", "label": "dog"},'
    ' {"bbox": [17, 18, 19, 20], "score": 0.95, "label": "motorcycle"}]',
    # bad bbox shapes and null coordinates
    '[{"bbox": [1, 2, 3], "score": 0.8, "label": "vehicle"},'
    ' {"bbox": [null, 960, 1280, null], "score": 0.6, "label": "cone"},'
    ' {"bbox": "oops", "score": 0.4},'
    ' {"score": 0.3, "label": "person"}]',
    # more boxes than K = 3
    '[' + ", ".join('{"bbox": [%d, %d, %d, %d], "score": %s, "label": "%s"}'
                    % (i * 10, i * 7, i * 10 + 50, i * 7 + 80, s, lab)
                    for i, (s, lab) in enumerate([(0.61, "person"), (0.99, "car"), (0.75, "person"),
                                                  (0.99, "bus"), (0.88, "crane")])) + ']',
    "not json at all",
    '{"bbox": [1, 2, 3, 4], "score": 0.5}',  # an object, not a list
    '[{"bbox": [1, 2, 3, 4], "score": 0.5}, 7]',  # a list holding a non-object
    '[{"bbox": [1, 2, 3, 4], "score": 0.5, "label": "person"}',  # unterminated
]


def write_boxes():
    cases = []
    for cell in BOX_CELLS:
        boxes, ok = parse_boxes(cell)
        for k in (3, 10):
            cases.append(dict(cell=cell, k=k, parseable=ok, expected=encode_boxes(boxes, k)))
    with open(os.path.join(FIXTURES, "box_encoding.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-demo":
        check_demo(sys.argv[2])
    else:
        write_images()
        write_boxes()
        print("wrote", FIXTURES)
