#!/usr/bin/env python3
"""`make bench-quality`: does our `resnet50 train --freeze-backbone` learn as well as the user's PyTorch script?

Both sides train on the same 1000 demo frames from the same random-weights ResNet-50 file, over several seeds,
and this prints their validation F1 epoch by epoch, then per seed and as a mean: the best epoch and its val-F1,
the last epoch's val-F1, our tuned threshold and its F1, and the longest run of consecutive epochs at val-F1
0.000 (a model that predicts "not interesting" for every frame: the collapse this benchmark exists to catch).

The two sides draw their split, shuffling and initialisation from different random streams, so the same seed
value does not mean the same split: compare means over seeds, not one seed against the other.

  bench_quality.py [--seeds 0 1 2] [--epochs 30] [--torch-epochs N] [--sides ours torch]
                   [--torch-python PATH] [--resnet50 PATH] [--rerun-torch] [--reuse-ours] [--ours-args "..."]

Caching (in --cache-dir, default .cache/bench-quality, gitignored): the demo data, the weights file, and each
finished run's stdout as <side>-seed<S>-<epochs>.log with a .json beside it (wall time, the command, and the
fingerprints of the data and weights it ran on). PyTorch's runs are slow (about 50 s per epoch on 1000 frames
on a 2-core machine), so a finished PyTorch log is reused unless --rerun-torch; ours is rerun every time
(our code is what changes) unless --reuse-ours. A run that is interrupted leaves only a .partial log, never a
.log, so re-running resumes at the first unfinished run. While a driver runs a side it holds <side>.running (its
pid); another driver started meanwhile (say `make bench-quality` while a long PyTorch side runs in the
background) tables that side's finished logs instead of running it twice.

This script itself needs only the standard library; the PyTorch side and the one-time weights file need a
python with torch, torchvision, pillow and pandas (--torch-python, $TORCH_PYTHON, else this python).
QUALITY_TORCH_EPOCHS=N sets --torch-epochs's default, to run a shorter PyTorch side when time is short.
"""
import argparse
import hashlib
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_SCRIPT = os.path.join(REPO, "Benchmarks", "PyTorch", "seed_resnet50.py")
SIDE_NAMES = {"ours": "ours", "torch": "PyTorch"}

# Both sides print the seed's epoch line; only epoch, val-loss and val-F1 matter here.
EPOCH_LINE = re.compile(r"^Epoch (\d+)/(\d+) \|.*\| Validation: val-loss ([0-9.naninf]+),.* val-F1 ([0-9.]+)\s*$")
# Our stderr note; the summary JSON is read first, this is the fallback.
BEST_NOTE = re.compile(r"^Best epoch (\d+) by ")
THRESHOLD_NOTE = re.compile(r"^Threshold ([0-9.]+) gives val-F1 ([0-9.]+) \(argmax [0-9.]+\) for the best model")


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30, help="our epochs per seed")
    parser.add_argument("--torch-epochs", type=int, default=int(os.environ.get("QUALITY_TORCH_EPOCHS") or 30),
                        help="PyTorch's epochs per seed (default $QUALITY_TORCH_EPOCHS, else 30)")
    parser.add_argument("--sides", nargs="+", choices=["ours", "torch"], default=["ours", "torch"],
                        help="which sides to run; a side not run is still tabled from its cached logs")
    parser.add_argument("--count", type=int, default=1000, help="demo frames")
    parser.add_argument("--data-seed", type=int, default=2, help="make-demo-data --seed")
    parser.add_argument("--weights-seed", type=int, default=0, help="torch.manual_seed of the random ResNet-50")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-boxes", type=int, default=10)
    parser.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON") or sys.executable)
    parser.add_argument("--torch-threads", type=int, default=None, help="seed_resnet50.py --threads (default: its own)")
    parser.add_argument("--resnet50", default=os.path.join(REPO, ".build", "release", "resnet50"),
                        help="our CLI (default .build/release/resnet50)")
    parser.add_argument("--ours-args", default=os.environ.get("QUALITY_OURS_ARGS", ""),
                        help="extra flags for our train, e.g. \"--bn-mode train\" (default $QUALITY_OURS_ARGS)")
    parser.add_argument("--cache-dir", default=os.path.join(REPO, ".cache", "bench-quality"))
    parser.add_argument("--rerun-torch", action="store_true", help="rerun PyTorch even when its log is cached")
    parser.add_argument("--reuse-ours", action="store_true", help="table our cached logs instead of rerunning ours")
    return parser.parse_args()


def note(message):
    print(f"[bench-quality] {message}", file=sys.stderr, flush=True)


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def prepare_data(args):
    """The demo frames, generated once per (count, seed) by our CLI; a half-written folder is regenerated."""
    folder = os.path.join(args.cache_dir, f"data-{args.count}-seed{args.data_seed}")
    done = os.path.join(folder, ".complete")
    if not os.path.exists(done):
        if not os.path.exists(args.resnet50):
            sys.exit(f"bench-quality: {args.resnet50} not built (swift build -c release --product resnet50)")
        note(f"generating {args.count} demo frames in {folder}")
        subprocess.run(["rm", "-rf", folder], check=True)
        subprocess.run([args.resnet50, "make-demo-data", "--out", folder, "--count", str(args.count),
                        "--seed", str(args.data_seed)], check=True, stdout=sys.stderr)
        open(done, "w").close()
    return os.path.join(folder, "images"), os.path.join(folder, "labels.csv")


def prepare_weights(args):
    """One random-weights torchvision ResNet-50, written by torch itself, shared by both sides (no ImageNet file
    exists on this machine, and both sides must start from the same backbone)."""
    path = os.path.join(args.cache_dir, f"resnet50-random-seed{args.weights_seed}.pth")
    if not os.path.exists(path):
        note(f"writing random ResNet-50 weights to {path} with {args.torch_python}")
        script = ("import sys, torch, torchvision; torch.manual_seed(int(sys.argv[2])); "
                  "torch.save(torchvision.models.resnet50().state_dict(), sys.argv[1] + '.partial')")
        subprocess.run([args.torch_python, "-c", script, path, str(args.weights_seed)], check=True)
        os.replace(path + ".partial", path)
    return path


def running_driver(lock_path):
    """The pid of another live bench_quality.py that holds this side's lock file, else None."""
    try:
        with open(lock_path) as handle:
            pid = int(handle.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            alive = b"bench_quality.py" in handle.read()
    except (OSError, ValueError):
        return None
    return pid if alive and pid != os.getpid() else None


def torch_available(python):
    check = "import torch, torchvision, PIL, pandas"
    return subprocess.run([python, "-c", check], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def parse_epochs(log_text):
    """[(epoch, val_loss, val_f1)] from a transcript, in order."""
    rows = []
    for line in log_text.splitlines():
        match = EPOCH_LINE.match(line.strip())
        if match:
            rows.append((int(match.group(1)), float(match.group(3)), float(match.group(4))))
    return rows


class Run:
    """One (side, seed) training run: its cached log paths and, once loaded, its parsed results."""

    def __init__(self, args, side, seed):
        self.side, self.seed = side, seed
        self.epochs = args.epochs if side == "ours" else args.torch_epochs
        stem = os.path.join(args.cache_dir, f"{side}-seed{seed}-{self.epochs}")
        self.log, self.info, self.stderr = stem + ".log", stem + ".json", stem + ".stderr.log"
        self.output_dir = os.path.join(args.cache_dir, "models", f"{side}-seed{seed}")
        self.rows, self.threshold, self.our_best_epoch, self.wall_seconds = [], None, None, None

    def cached(self, fingerprint):
        """True when a finished log of this run exists and was made from the same data and weights."""
        if not (os.path.exists(self.log) and os.path.exists(self.info)):
            return False
        with open(self.info) as handle:
            info = json.load(handle)
        if info.get("fingerprint") != fingerprint:
            note(f"{self.log} was made from other data or weights: not used")
            return False
        return True

    def execute(self, command, fingerprint, environment=None):
        """Runs the command with stdout to a .partial log; the .log and its .json appear only on success."""
        os.makedirs(self.output_dir, exist_ok=True)
        note(f"{SIDE_NAMES[self.side]} seed {self.seed}, {self.epochs} epochs: {shlex.join(command)}")
        note(f"  stdout -> {self.log}.partial, stderr -> {self.stderr}")
        start = time.monotonic()
        with open(self.log + ".partial", "w") as out, open(self.stderr, "w") as err:
            status = subprocess.run(command, stdout=out, stderr=err, env=environment).returncode
        seconds = time.monotonic() - start
        with open(self.log + ".partial") as handle:
            finished = len(parse_epochs(handle.read()))
        if status != 0 or finished != self.epochs:
            sys.exit(f"bench-quality: {SIDE_NAMES[self.side]} seed {self.seed} failed (exit {status}, "
                     f"{finished}/{self.epochs} epochs); see {self.log}.partial and {self.stderr}")
        with open(self.info, "w") as handle:
            json.dump({"command": command, "wall_seconds": seconds, "fingerprint": fingerprint,
                       "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, handle, indent=1)
        os.replace(self.log + ".partial", self.log)
        note(f"  done in {seconds / 60:.1f} min")

    def load(self):
        """Reads the finished log (and, for ours, the tuned threshold); False when there is none."""
        if not (os.path.exists(self.log) and os.path.exists(self.info)):
            return False
        with open(self.log) as handle:
            self.rows = parse_epochs(handle.read())
        with open(self.info) as handle:
            self.wall_seconds = json.load(handle).get("wall_seconds")
        if self.side == "ours":
            self.threshold, self.our_best_epoch = read_our_choice(self)
        return bool(self.rows)

    @property
    def f1s(self):
        return [f1 for _, _, f1 in self.rows]

    @property
    def best(self):
        """(epoch, val-F1) of the best epoch: highest val-F1, ties to the lower printed val-loss, then the earlier
        epoch. For ours, the epoch our trainer kept as X.best.safetensors when it has that F1: the printed loss
        is rounded, and the tuned threshold belongs to that model."""
        top = max(f1 for _, _, f1 in self.rows)
        if self.our_best_epoch is not None and 1 <= self.our_best_epoch <= len(self.rows) \
                and self.rows[self.our_best_epoch - 1][2] == top:
            return self.our_best_epoch, top
        epoch, _, f1 = min(self.rows, key=lambda row: (-row[2], row[1], row[0]))
        return epoch, f1

    @property
    def collapse(self):
        """Longest run of consecutive epochs at val-F1 0.000: no validation frame predicted interesting."""
        longest = current = 0
        for f1 in self.f1s:
            current = current + 1 if f1 == 0.0 else 0
            longest = max(longest, current)
        return longest


def read_our_choice(run):
    """((threshold, val-F1 at it), best epoch) of our best model: X.summary.json, else the stderr notes."""
    summary = os.path.join(run.output_dir, "model.summary.json")
    if os.path.exists(summary):
        with open(summary) as handle:
            data = json.load(handle)
        choice = data.get("threshold", {})
        if "threshold" in choice and "val_f1" in choice:
            return (float(choice["threshold"]), float(choice["val_f1"])), data.get("best_epoch")
    threshold, epoch = None, None
    if os.path.exists(run.stderr):
        with open(run.stderr) as handle:
            for line in handle:
                match = THRESHOLD_NOTE.match(line.strip())
                if match:
                    threshold = float(match.group(1)), float(match.group(2))
                match = BEST_NOTE.match(line.strip())
                if match:
                    epoch = int(match.group(1))
    return threshold, epoch


def our_command(args, run, images, csv, weights):
    command = [args.resnet50, "train", "--images-dir", images, "--csv-path", csv, "--freeze-backbone",
               "--epochs", str(run.epochs), "--batch-size", str(args.batch_size), "--max-boxes", str(args.max_boxes),
               "--weights", weights, "--seed", str(run.seed),
               # A feature cache private to this invocation: computed once, shared by the seeds, and never stale
               # across invocations while the backbone code is being changed.
               "--feature-cache", os.path.join(args.cache_dir, "ours-features"),
               "--output", os.path.join(run.output_dir, "model.safetensors")]
    return command + shlex.split(args.ours_args)


def torch_command(args, run, images, csv, weights):
    command = [args.torch_python, SEED_SCRIPT, "--images-dir", images, "--csv-path", csv, "--freeze-backbone",
               "--epochs", str(run.epochs), "--batch-size", str(args.batch_size), "--max-boxes", str(args.max_boxes),
               "--weights", weights, "--seed", str(run.seed), "--output", os.path.join(run.output_dir, "model.pth")]
    if args.torch_threads:
        command += ["--threads", str(args.torch_threads)]
    return command


def cell(value, width=7, digits=3):
    return f"{value:>{width}.{digits}f}" if value is not None else " " * (width - 1) + "-"


def print_tables(args, runs):
    seeds = args.seeds
    side_list = ["ours", "torch"]
    loaded = {key: run for key, run in runs.items() if run.rows}
    print()
    print(f"Learning quality: {args.count} demo frames (make-demo-data --seed {args.data_seed}), random-weights "
          f"ResNet-50, --freeze-backbone, batch {args.batch_size}, max-boxes {args.max_boxes}"
          + (f", ours with {args.ours_args}" if args.ours_args else ""))
    print("The sides' splits and initialisations come from different random streams: compare means, not seeds.")
    print()

    # Per-epoch val-F1 (argmax, as printed by each side), seeds across.
    header = "epoch | " + " | ".join(f"seed {s}: {'ours':>7} {'PyTorch':>7}" for s in seeds)
    print("Validation F1 (argmax) per epoch")
    print(header)
    print("-" * len(header))
    most = max((len(run.rows) for run in loaded.values()), default=0)
    for epoch in range(1, most + 1):
        cells = []
        for s in seeds:
            values = []
            for side in side_list:
                run = loaded.get((side, s))
                values.append(run.f1s[epoch - 1] if run and epoch <= len(run.rows) else None)
            cells.append(f"        {cell(values[0])} {cell(values[1])}")
        print(f"{epoch:>5} | " + " | ".join(cells))
    print()

    # Per seed and mean.
    header = (f"{'seed':>4}  {'side':<7} {'epochs':>6} {'best ep':>7} {'best F1':>7} {'last F1':>7} "
              f"{'tuned thr':>9} {'tuned F1':>8} {'F1=0 streak':>11} {'wall min':>8}")
    print("Per seed")
    print(header)
    print("-" * len(header))
    means = {}
    for side in side_list:
        side_runs = [loaded[(side, s)] for s in seeds if (side, s) in loaded]
        for run in side_runs:
            threshold = run.threshold or (None, None)
            print(f"{run.seed:>4}  {SIDE_NAMES[side]:<7} {len(run.rows):>6} {run.best[0]:>7} {cell(run.best[1])} "
                  f"{cell(run.f1s[-1])} {cell(threshold[0], 9)} {cell(threshold[1], 8)} {run.collapse:>11} "
                  f"{cell(run.wall_seconds / 60 if run.wall_seconds else None, 8, 1)}")
        if side_runs:
            thresholds = [run.threshold for run in side_runs if run.threshold]
            means[side] = {
                "best_epoch": statistics.mean(run.best[0] for run in side_runs),
                "best_f1": statistics.mean(run.best[1] for run in side_runs),
                "last_f1": statistics.mean(run.f1s[-1] for run in side_runs),
                "threshold": statistics.mean(t[0] for t in thresholds) if thresholds else None,
                "tuned_f1": statistics.mean(t[1] for t in thresholds) if thresholds else None,
                "collapse": max(run.collapse for run in side_runs),
                "minutes": sum(run.wall_seconds or 0 for run in side_runs) / 60,
                "seeds": len(side_runs),
            }
            m = means[side]
            print(f"{'mean':>4}  {SIDE_NAMES[side]:<7} {'':>6} {m['best_epoch']:>7.1f} {cell(m['best_f1'])} "
                  f"{cell(m['last_f1'])} {cell(m['threshold'], 9)} {cell(m['tuned_f1'], 8)} {m['collapse']:>11} "
                  f"{cell(m['minutes'], 8, 1)}")
    print("(best: highest val-F1 (ours: the epoch our trainer kept, when it has that F1); tuned: our threshold that maximises the best model's "
          "val-F1; F1=0 streak: longest run of epochs at val-F1 0.000 (mean row: the longest over seeds); "
          "wall min: mean row is the total)")
    print()

    missing = [f"{SIDE_NAMES[side]} seed {s}" for side in side_list for s in seeds if (side, s) not in loaded]
    if missing:
        print("No finished log for: " + ", ".join(missing))
    if "ours" in means and "torch" in means:
        print(f"ours mean best-epoch val-F1 {means['ours']['best_f1']:.3f} vs PyTorch {means['torch']['best_f1']:.3f}"
              f" (over {means['ours']['seeds']} and {means['torch']['seeds']} seeds)")
        # PyTorch may have run fewer epochs (QUALITY_TORCH_EPOCHS): then also compare ours within as many.
        torch_epochs = min(len(loaded[("torch", s)].rows) for s in seeds if ("torch", s) in loaded)
        ours_runs = [loaded[("ours", s)] for s in seeds if ("ours", s) in loaded]
        if any(len(run.rows) > torch_epochs for run in ours_runs):
            within = statistics.mean(max(run.f1s[:torch_epochs]) for run in ours_runs)
            print(f"ours mean best val-F1 within the first {torch_epochs} epochs (PyTorch's run length) {within:.3f}")
    elif "ours" in means:
        print(f"ours mean best-epoch val-F1 {means['ours']['best_f1']:.3f} vs PyTorch (no finished PyTorch runs)")
    if "ours" in means:
        print(f"ours longest all-negative streak {means['ours']['collapse']} epochs"
              + (f" (PyTorch {means['torch']['collapse']})" if "torch" in means else ""))


def main():
    args = parse_arguments()
    args.cache_dir = os.path.abspath(args.cache_dir)
    os.makedirs(args.cache_dir, exist_ok=True)
    runs = {(side, s): Run(args, side, s) for side in ("ours", "torch") for s in args.seeds}

    # The data and weights are fingerprinted so that a cached log made from other data or weights is never tabled.
    images, csv = prepare_data(args)
    weights = prepare_weights(args)
    fingerprint = {"labels_csv": file_digest(csv), "weights": file_digest(weights)}
    to_run = []
    for side in args.sides:
        for s in args.seeds:
            run = runs[(side, s)]
            reuse = args.reuse_ours if side == "ours" else not args.rerun_torch
            if not (reuse and run.cached(fingerprint)):
                to_run.append(run)
    # One driver per side at a time (a second `make bench-quality` while a long PyTorch side runs in the
    # background would otherwise write the same logs): the other's runs are tabled when they have finished.
    locks = []
    for side in ("ours", "torch"):
        lock = os.path.join(args.cache_dir, f"{side}.running")
        if not any(run.side == side for run in to_run):
            continue
        holder = running_driver(lock)
        if holder:
            note(f"{SIDE_NAMES[side]}'s side is already running (pid {holder}, {lock}): tabling its finished logs only")
            to_run = [run for run in to_run if run.side != side]
        else:
            with open(lock, "w") as handle:
                handle.write(f"{os.getpid()}\n")
            locks.append(lock)
    try:
        if any(run.side == "torch" for run in to_run) and not torch_available(args.torch_python):
            note(f"{args.torch_python} lacks torch, torchvision, pillow or pandas: PyTorch's side is tabled from "
                 "cached logs only (set TORCH_PYTHON or --torch-python)")
            to_run = [run for run in to_run if run.side != "torch"]
        if any(run.side == "ours" for run in to_run):
            subprocess.run(["rm", "-rf", os.path.join(args.cache_dir, "ours-features")], check=True)
        for run in to_run:
            make = our_command if run.side == "ours" else torch_command
            run.execute(make(args, run, images, csv, weights), fingerprint)
    finally:
        for lock in locks:
            os.remove(lock)
    for run in runs.values():
        if run.cached(fingerprint) and run.load():
            note(f"{SIDE_NAMES[run.side]} seed {run.seed}: {run.log}")
    print_tables(args, runs)


if __name__ == "__main__":
    main()
