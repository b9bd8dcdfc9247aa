"""Peak host memory while loading a real-size checkpoint through pipelines.loading.

Writes a random-weight SD1.5 original-layout single file (real architecture from
pipelines/configs/sd15.json, fp16) under a scratch weights root, then loads it in a fresh
process through the manifest path and reports that process's peak RSS next to the checkpoint
size and the largest component's size. Usage:

    python bench/weights_load_memory.py [--root /tmp/darkroom-bench-weights] [--dtype float16]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch


def write_checkpoint(root: Path) -> Path:
    """A random SD1.5 checkpoint in the original layout, fp16 (about 2 GB)."""
    from safetensors.torch import save_file

    from pipelines.loading.components import BUILDERS, architecture_config
    from pipelines.loading.single_file import (
        component_specs,
        key_maps,
        read_architecture,
        to_original_layout,
    )

    path = root / "sd15" / "sd15-random.safetensors"
    if path.exists():
        return path
    architecture = read_architecture("sd15")
    specs = component_specs(architecture)
    state: dict[str, torch.Tensor] = {}
    for name, (class_name, config) in specs.items():
        module = BUILDERS[class_name](architecture_config(config)).half()
        table = key_maps("sd1", {name: module}, specs)[name]
        state.update(to_original_layout(module.state_dict(), table))
        del module
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def _peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it does not survive exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(root: Path, dtype: str) -> dict[str, float]:
    """Load in this process; peak RSS and component sizes in MiB."""
    import pipelines.models  # noqa: F401 - count library imports in the baseline
    from pipelines.loading.loader import load_components
    from pipelines.manifest import ModelEntry

    baseline_mib = _peak_rss_mib()
    entry = ModelEntry.model_validate({
        "id": "sd15-random", "family": "sd1", "format": "single_file", "path": "sd15",
        "files": [{"path": "sd15-random.safetensors", "sha256": None}],
    })
    loaded = load_components(entry, root, torch.device("cpu"), getattr(torch, dtype))
    peak_mib = _peak_rss_mib()
    sizes = {
        name: sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20
        for name, module in loaded.components.items()
    }
    return {
        "rss_before_load_mib": round(baseline_mib, 1),
        "rss_peak_mib": round(peak_mib, 1),
        "loaded_model_mib": round(sum(sizes.values()), 1),
        "largest_component_mib": round(max(sizes.values()), 1),
        "checkpoint_file_mib": round((root / "sd15" / "sd15-random.safetensors").stat().st_size / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/darkroom-bench-weights")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32", "bfloat16"])
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(args.root)
    if args.measure_only:
        print(json.dumps(measure(root, args.dtype)))
        return 0
    write_checkpoint(root)
    # a fresh process, so the writer's memory does not count
    out = subprocess.run(
        [sys.executable, __file__, "--root", str(root), "--dtype", args.dtype, "--measure-only"],
        check=True, capture_output=True, text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["overhead_over_model_mib"] = round(result["rss_peak_mib"] - result["rss_before_load_mib"]
                                              - result["loaded_model_mib"], 1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
