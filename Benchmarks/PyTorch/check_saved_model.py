#!/usr/bin/env python3
"""Loads a model saved by `resnet50 train` into the user's own model class (strict=True), scores frames with the
user's preprocessing, and compares P(interesting) with the probabilities `resnet50 predict` wrote for them.

    python check_saved_model.py --model M.safetensors --images-dir D --csv-path C --predictions P.csv [--limit N]

Needs torch, torchvision, pillow, pandas, safetensors (CI never runs it). Prints the largest difference.
"""
import argparse
import csv
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed_resnet50 import FramesDataset, FusionModel  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--images-dir", required=True)
    parser.add_argument("--csv-path", required=True)
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--max-boxes", type=int, default=10)
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args()

    model = FusionModel(4 + 8 * args.max_boxes)
    model.load_state_dict(load_file(args.model), strict=True)
    model.eval()
    ours = {row["image_name"]: float(row["probability"]) for row in csv.DictReader(open(args.predictions))}
    dataset = FramesDataset(args.images_dir, args.csv_path, args.max_boxes)
    worst = 0.0
    with torch.no_grad():
        for i in range(min(args.limit, len(dataset))):
            image, meta, _ = dataset[i]
            name = os.path.basename(dataset.rows[i][0])
            p = torch.softmax(model(image[None], meta[None]), dim=1)[0, 1].item()
            worst = max(worst, abs(p - ours[name]))
    print(f"{min(args.limit, len(dataset))} frames, strict load into the script's class: "
          f"largest |P_torch - P_ours| = {worst:.2e} (ours written with 6 decimals)")


if __name__ == "__main__":
    main()
