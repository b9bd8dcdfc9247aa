"""Weight averaging of UNets fine-tuned from one start (a "model soup"): the mean of their weights, saved as
one UNet folder in the shipped format (fp16, shards <= 15 MB).

Runs continued from the same student in different ways (call 21: a plain continuation, and one that drew
three-object captions twice as often) stay close in weight space, where the mean of their weights can be
better than either; training.paired_compare says whether it is.

    python -m training.soup OUT UNET_DIR UNET_DIR... [--weights W W...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffusers import UNet2DConditionModel

from training.export import MAX_SHARD


def soup(folders: list[Path], weights: list[float] | None = None) -> UNet2DConditionModel:
    """The weighted mean (fp32) of the UNets in folders, which must share one architecture; equal weights by default."""
    weights = weights or [1.0] * len(folders)
    if len(weights) != len(folders) or sum(weights) <= 0:
        raise ValueError("one positive weight per UNet folder")
    configs = [json.loads((f / "config.json").read_text()) for f in folders]
    if any({k: v for k, v in c.items() if not k.startswith("_")} != {k: v for k, v in configs[0].items() if not k.startswith("_")}
           for c in configs):
        raise ValueError("the UNets' configs differ: only one architecture can be averaged")
    unet = UNet2DConditionModel.from_pretrained(folders[0]).float()  # the first UNet holds the mean
    total = {k: weights[0] * v for k, v in unet.state_dict().items()}
    for folder, weight in zip(folders[1:], weights[1:]):
        for k, v in UNet2DConditionModel.from_pretrained(folder).float().state_dict().items():
            total[k] += weight * v
    unet.load_state_dict({k: v / sum(weights) for k, v in total.items()})
    return unet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("unets", type=Path, nargs="+")
    parser.add_argument("--weights", type=float, nargs="+", default=None)
    args = parser.parse_args()
    soup(args.unets, args.weights).half().save_pretrained(args.out, max_shard_size=MAX_SHARD, safe_serialization=True)
    config = json.loads((args.out / "config.json").read_text())
    config.pop("_name_or_path", None)  # the first source folder's path: not part of the shipped files
    (args.out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    print(f"soup of {len(args.unets)} -> {args.out}")


if __name__ == "__main__":
    main()
