"""Grow a one-step student: more transformer layers in its UNet, starting as the same function.

Calls 21-28 found the bundled one-step student at a fixed point of its DMD objective, while its
own samples, moved along that objective's gradient, read 0.06-0.11 better (session 27's sample
flow): what the runs could not reach may be what this UNet cannot draw in one evaluation. A
grown student tests that. `grow_unet` returns a UNet of the same diffusers class whose
`transformer_layers_per_block` is larger: each Transformer2DModel of a down block i (and, as
diffusers builds them, the mid block for the last i and the mirrored up block) holds
`layers[i]` BasicTransformerBlocks instead of the original's. The original's weights are
copied; each new block's three residual branches (self-attention, cross-attention,
feed-forward) end in zeroed output projections, so the new blocks add exactly zero and the grown
UNet computes what the original computes, bit for bit in fp32. Their inputs' weights keep
diffusers' initialisation, so the zeroed projections get gradients from the first update.

Layers at the lowest resolution are the cheap ones (the bundled UNet's last level is 4x4 latent
cells: 16 tokens), and that is where the layout of several objects is decided.

    python -m training.grow SRC_UNET_DIR OUT_DIR --transformer-layers 1 1 3 [--seed 0]

The new layers' other weights are diffusers' initialisation drawn from torch's generator after `--seed`, so a GPU
call can grow its student where it runs (a grown fp16 UNet does not fit one upload beside the slim tree).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

TRANSFORMER_BLOCK = re.compile(r"(.+\.transformer_blocks\.\d+)\.")  # a weight's BasicTransformerBlock (module name)


def _layers(config: dict[str, object], blocks: int) -> list[int]:
    value = config["transformer_layers_per_block"]
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * blocks  # type: ignore[arg-type]


def zero_residual_branches(block: torch.nn.Module) -> None:
    """Zero the output projections of a BasicTransformerBlock's residual branches: it adds nothing."""
    projections = [block.attn1.to_out[0], block.ff.net[-1]]  # type: ignore[union-attr, index]
    if getattr(block, "attn2", None) is not None:
        projections.append(block.attn2.to_out[0])  # type: ignore[union-attr, index]
    for linear in projections:
        torch.nn.init.zeros_(linear.weight)
        if linear.bias is not None:
            torch.nn.init.zeros_(linear.bias)


def grow_unet(unet: UNet2DConditionModel, layers: list[int]) -> UNet2DConditionModel:
    """A UNet with `layers[i]` transformer layers per attention of down block i (the mid block takes the last,
    the up blocks the mirror image), the original's weights in place and every new layer adding zero."""
    config = dict(unet.config)
    blocks = len(config["down_block_types"])
    old = _layers(config, blocks)
    if len(layers) != blocks:
        raise ValueError(f"need one layer count per down block ({blocks}), got {layers}")
    if config.get("reverse_transformer_layers_per_block") is not None:
        raise ValueError("UNets with reverse_transformer_layers_per_block are not supported")
    if any(new < was for new, was in zip(layers, old)):
        raise ValueError(f"a grown UNet keeps every layer it has: {old} -> {layers}")
    config["transformer_layers_per_block"] = list(layers)
    grown = UNet2DConditionModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    grown = grown.to(dtype=unet.dtype, device=unet.device)
    missing, unexpected = grown.load_state_dict(unet.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"weights the grown UNet has no place for: {unexpected[:4]}")
    in_block = [TRANSFORMER_BLOCK.match(key) for key in missing]
    if not all(in_block):
        raise ValueError("weights missing outside the new transformer layers")
    modules = dict(grown.named_modules())
    for name in sorted({match.group(1) for match in in_block if match}):
        zero_residual_branches(modules[name])
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="a diffusers UNet folder (e.g. weights/bundled_turbo/unet)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--transformer-layers", type=int, nargs="+", required=True, help="per down block")
    parser.add_argument("--seed", type=int, default=0, help="torch's seed before the new layers are initialised")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    unet = UNet2DConditionModel.from_pretrained(args.src).float()
    grown = grow_unet(unet, args.transformer_layers)
    grown.save_pretrained(args.out)
    before, after = (sum(p.numel() for p in m.parameters()) for m in (unet, grown))
    print(f"{args.out}: {before:,} -> {after:,} parameters ({args.transformer_layers})")


if __name__ == "__main__":
    main()
