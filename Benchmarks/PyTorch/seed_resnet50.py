#!/usr/bin/env python3
"""The user's PyTorch script, rebuilt rule by rule from docs/ARCHITECTURE.md §2–4 (the seed itself is not ours to
ship). It is the baseline for the side-by-side benchmarks and the reader that proves our demo data and
saved models work on the PyTorch side. Needs torch, torchvision, pillow, pandas; CI never runs it.

Flags are the seed's (--images-dir, --csv-path, --epochs, --batch-size, --num-workers, --max-boxes,
--freeze-backbone, --lr) plus what a benchmark needs: --weights (torchvision resnet50 .pth; default: random
initialisation, the only choice on a machine without the ImageNet file), --seed, --threads, --output,
--check-only (read and encode every row, print a summary, train nothing), and --load-safetensors PATH
(build the seed's model and load our safetensors file into it with strict=True).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import pandas as pd
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms

REQUIRED = ["image_name", "interesting/not interesting", "num_person", "num_vehicles", "avg_person_conf",
            "total_boxes", "bounding_boxes"]
EXTENSIONS = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"]
VEHICLES = {"car", "truck", "bus", "motorcycle", "vehicle"}


def parse_label(value):
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "interesting", "true", "yes"):
            return 1
        if v in ("0", "not interesting", "false", "no"):
            return 0
        number = float(v)  # ValueError: not a number
        return 1 if number == 1 else 0
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("empty label")
    return 1 if int(value) == 1 else 0


def find_image(images_dir, name):
    name = str(name).strip()
    tried = []
    if os.path.splitext(name)[1]:
        path = os.path.join(images_dir, name)
        if os.path.isfile(path):
            return path
        tried.append(path)
    else:
        for ext in EXTENSIONS:
            path = os.path.join(images_dir, name + ext)
            if os.path.isfile(path):
                return path
            tried.append(path)
        for entry in sorted(os.listdir(images_dir)):
            if entry.startswith(name + "."):
                return os.path.join(images_dir, entry)
    raise FileNotFoundError(f"image for {name!r} not found; tried {tried}")


def parse_boxes(cell):
    if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "":
        return []
    text = str(cell)
    for candidate in (text, text.replace('""', '"')):
        try:
            boxes = json.loads(candidate)
            return boxes if isinstance(boxes, list) else []
        except json.JSONDecodeError:
            continue
    return []


def score_of(box):
    try:
        return float(box.get("score", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def encode_boxes(boxes, max_boxes):
    boxes = [b for b in boxes if isinstance(b, dict)]
    boxes = sorted(boxes, key=score_of, reverse=True)[:max_boxes]  # sorted() is stable
    out = []
    for box in boxes:
        bbox = box.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4:
            x1, y1, x2, y2 = [float(v) if v is not None else 0.0 for v in bbox]
        else:
            x1 = y1 = x2 = y2 = 0.0
        label = str(box.get("label", "")).strip().lower()
        onehot = [1.0, 0.0, 0.0] if label == "person" else [0.0, 1.0, 0.0] if label in VEHICLES else [0.0, 0.0, 1.0]
        out += [x1 / 1280, y1 / 960, x2 / 1280, y2 / 960, score_of(box)] + onehot
    out += [0.0] * (8 * max_boxes - len(out))
    return out


def preprocessing():
    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


class FramesDataset(Dataset):
    def __init__(self, images_dir, csv_path, max_boxes):
        frame = pd.read_csv(csv_path)
        frame.columns = [c.strip() for c in frame.columns]
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise ValueError(f"missing columns {missing}; found {list(frame.columns)}")
        self.rows = []
        for _, row in frame.iterrows():
            meta = [float(row["num_person"]), float(row["num_vehicles"]), float(row["avg_person_conf"]),
                    float(row["total_boxes"])] + encode_boxes(parse_boxes(row["bounding_boxes"]), max_boxes)
            self.rows.append((find_image(images_dir, row["image_name"]), meta,
                              parse_label(row["interesting/not interesting"])))
        self.transform = preprocessing()

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        path, meta, label = self.rows[i]
        image = self.transform(Image.open(path).convert("RGB"))
        return image, torch.tensor(meta, dtype=torch.float32), torch.tensor(label, dtype=torch.long)


class FusionModel(nn.Module):
    def __init__(self, meta_dim, weights_path=None):
        super().__init__()
        self.backbone = models.resnet50(weights=None)
        if weights_path:
            self.backbone.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.backbone.fc = nn.Identity()
        self.meta_net = nn.Sequential(nn.Linear(meta_dim, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 64),
                                      nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2048 + 64, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 2))

    def forward(self, image, meta):
        return self.head(torch.cat([self.backbone(image), self.meta_net(meta)], dim=1))


def metrics(loss_sum, n, labels, predictions):
    tp = sum(1 for y, p in zip(labels, predictions) if y == 1 and p == 1)
    fp = sum(1 for y, p in zip(labels, predictions) if y == 0 and p == 1)
    fn = sum(1 for y, p in zip(labels, predictions) if y == 1 and p == 0)
    accuracy = sum(1 for y, p in zip(labels, predictions) if y == p) / max(n, 1)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return loss_sum / max(n, 1), accuracy, precision, recall, f1


def run_epoch(model, loader, criterion, optimizer=None):
    loss_sum, n, labels, predictions = 0.0, 0, [], []
    for images, meta, y in loader:
        with torch.set_grad_enabled(optimizer is not None):
            logits = model(images, meta)
            loss = criterion(logits, y)
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        loss_sum += loss.item() * y.size(0)
        n += y.size(0)
        labels += y.tolist()
        predictions += logits.argmax(dim=1).tolist()
    return metrics(loss_sum, n, labels, predictions)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images-dir", required=True)
    parser.add_argument("--csv-path", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--max-boxes", type=int, default=10)
    parser.add_argument("--freeze-backbone", action="store_true")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default="models/resnet50_fused_image_meta.pth")
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--load-safetensors", default=None)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.seed is not None:
        random.seed(args.seed)
        torch.manual_seed(args.seed)
    dataset = FramesDataset(args.images_dir, args.csv_path, args.max_boxes)
    meta_dim = 4 + 8 * args.max_boxes
    if args.check_only:
        positives = sum(label for _, _, label in dataset.rows)
        image, meta, _ = dataset[0]
        print(f"rows {len(dataset)} positives {positives} meta_dim {meta.numel()} image {tuple(image.shape)}")
        return
    if args.load_safetensors:
        from safetensors.torch import load_file
        model = FusionModel(meta_dim)
        model.load_state_dict(load_file(args.load_safetensors), strict=True)
        print(f"loaded {args.load_safetensors} strictly into the seed's model")
        return

    print("Using device: cpu")
    val_size = max(1, int(0.2 * len(dataset)))
    train_set, val_set = torch.utils.data.random_split(dataset, [len(dataset) - val_size, val_size])
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers)
    val_loader = DataLoader(val_set, batch_size=args.batch_size, shuffle=False, num_workers=args.num_workers)
    model = FusionModel(meta_dim, args.weights)
    if args.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad = False
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        model.train()
        t = run_epoch(model, train_loader, criterion, optimizer)
        model.eval()
        v = run_epoch(model, val_loader, criterion)
        print(f"Epoch {epoch:02d}/{args.epochs:02d} | Training: train-loss {t[0]:.4f}, train-accuracy {t[1]:.3f} "
              f"train-precision {t[2]:.3f}, train-recall {t[3]:.3f}, train-F1 {t[4]:.3f} | Validation: "
              f"val-loss {v[0]:.4f}, val-accuracy {v[1]:.3f} val-precision {v[2]:.3f} val-recall {v[3]:.3f} "
              f"val-F1 {v[4]:.3f}", flush=True)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta_dim": meta_dim, "max_boxes": args.max_boxes}, args.output)
    print(f"Saved: {args.output}")


if __name__ == "__main__":
    sys.exit(main())
