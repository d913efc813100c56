"""Run by test_train_ddp.py under torchrun: train a config, then every rank saves its own parameters
(only rank 0 writes the run's files, so this is how the test sees what the other ranks hold)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from icmkit.train.config import load_config
from icmkit.train.loop import Trainer


def main(config_path: str, dump_folder: str, *overrides: str) -> None:
    trainer = Trainer(load_config(config_path, list(overrides)))
    trainer.run()
    parameters = {name: p.detach().cpu().contiguous() for name, p in trainer.model.named_parameters()}
    save_file(parameters, str(Path(dump_folder) / f"rank{os.environ['RANK']}.safetensors"))


if __name__ == "__main__":
    main(*sys.argv[1:])
