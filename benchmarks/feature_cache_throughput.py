"""Training steps per CPU-hour of a feature-codec recipe with and without the head-feature cache (issue 22, item 1).

Same config, same batch, same seeds: one run trains on fresh random crops through the frozen head (v2), the other
samples cached head features (``feature_cache``). Each measurement runs in its own process (a clean thread count),
one after the other in this script so that both see the same load on a shared machine; the modes alternate per
thread count. A step here is what ``Trainer._train`` does per step: draw the batch, forward, backward, both
optimisers. Reported: process CPU seconds per step (user + system of all its threads: the CPU-hour) and wall
seconds per step.

    python benchmarks/feature_cache_throughput.py --config configs/icm-dicm-lite0.yaml \\
        --data ../shared/data/bsds500/val --cache DIR --steps 30 --threads 1,2

Modes (``--modes``, see ``MODES``): v2's settings (``head (v2)``: random crops through the head, float32, the tail's
batch norms unfolded), then the cache, the folded tail, channels last and bf16 autocast (on a CPU with native bf16)
added one by one, up to the v3 recipe. ``--cache`` must be a cache of ``--data`` (``icm cache features --config …
data=… --out DIR``); any number of views.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What each mode adds to the config ("{cache}" is --cache).
V2 = ["cpu_bf16=false", "channels_last=false", "fold_tail_norms=false"]
MODES = {
    "head (v2)": V2,
    "cache": [*V2, "feature_cache={cache}"],
    "cache + folded tail": [*V2, "feature_cache={cache}", "fold_tail_norms=true"],
    "cache + folded + channels last": ["feature_cache={cache}", "cpu_bf16=false", "channels_last=true"],
    "cache + folded + bf16": ["feature_cache={cache}", "cpu_bf16=true", "channels_last=false"],
    "v3: cache + folded + channels last + bf16": ["feature_cache={cache}", "cpu_bf16=true", "channels_last=true"],
    "head + folded + channels last + bf16": ["cpu_bf16=true", "channels_last=true"],
}

_CHILD = """
import json, sys, time
import torch
from icmkit.train.config import load_config
from icmkit.train.loop import Trainer
config_path, data, out, threads, steps, warmup = sys.argv[1:7]
overrides = [f"data={data}", f"out={out}", f"threads={threads}", "tensorboard=false", "device=cpu", *sys.argv[7:]]
trainer = Trainer(load_config(config_path, overrides), report=lambda record: None)
trainer.model.train()
for _ in range(int(warmup)):
    trainer.train_step(trainer.next_batch())
cpu, wall = time.process_time(), time.perf_counter()
for _ in range(int(steps)):
    trainer.train_step(trainer.next_batch())
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"cpu_s_per_step": cpu / int(steps), "wall_s_per_step": wall / int(steps)}))
"""


def measure(config: str, data: str, overrides: list[str], threads: int, steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env_threads = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, config, data, out, str(threads), str(steps), str(warmup), *overrides],
            capture_output=True,
            text=True,
            env={**os.environ, **env_threads},
            check=False,
        )
    if result.returncode:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True, help="one image folder (comma-separated: several)")
    parser.add_argument("--cache", required=True, help="a feature cache of --data for --config")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := set(modes) - set(MODES):
        parser.error(f"--modes: unknown {sorted(unknown)}")
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        for mode in modes:
            overrides = [o.replace("{cache}", args.cache) for o in MODES[mode]]
            started = time.strftime("%H:%M:%S", time.gmtime())
            row = {"mode": mode, "threads": threads, "started_utc": started, "overrides": overrides}
            row.update(measure(args.config, args.data, overrides, threads, args.steps, args.warmup))
            row["steps_per_cpu_hour"] = 3600 / row["cpu_s_per_step"]
            row["steps_per_wall_hour"] = 3600 / row["wall_s_per_step"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| threads | mode | CPU s / step | wall s / step | steps / CPU-hour | steps / wall-hour |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['threads']} | {row['mode']} | {row['cpu_s_per_step']:.2f} | {row['wall_s_per_step']:.2f} | "
            f"{row['steps_per_cpu_hour']:.0f} | {row['steps_per_wall_hour']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "steps": args.steps, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
