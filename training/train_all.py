"""Train the whole bundled stack within a wall-clock budget, resumable.

    python -m training.train_all --out DIR --minutes M [--resume DIR] [--stages a,b] [--parallel]

Stages run as separate processes, each bounded by its own wall clock and checkpointed in
DIR/<stage>/. Two lanes: (A) autoencoder then text encoder + UNet, which gets whatever time is
left; (B) judge, then - once the autoencoder exists - the noisy-latent classifier. With
--parallel the lanes share the GPU concurrently (these small models leave it mostly idle
between kernel launches); otherwise they run one after the other in the same budget.
--resume DIR copies DIR's stage checkpoints into --out first; stages whose weights exist and
are not named in --stages are kept as they are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ALL_STAGES = ("judge", "autoencoder", "text_unet", "classifier", "distill_lcm")
# fractions of the budget for the fixed-length stages; text_unet takes the rest of lane A
FRACTION = {"judge": 0.16, "autoencoder": 0.2, "classifier": 0.2, "distill_lcm": 0.25}
START_OVERHEAD_S = 20.0  # imports, data pools, CUDA context: not counted by a stage's own clock


def launch(stage: str, out: Path, seconds: float, device: str, log: Path) -> subprocess.Popen[bytes]:
    """Start one stage as a child process writing to its log."""
    command = [sys.executable, "-u", "-m", f"training.{stage}", "--out", str(out), "--seconds", f"{seconds:.0f}", "--device", device]
    print(f"[train_all] {stage}: {seconds:.0f} s", flush=True)
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait(process: subprocess.Popen[bytes] | None, stage: str) -> None:
    if process is None:
        return
    if process.wait() != 0:
        raise RuntimeError(f"stage {stage} failed with exit code {process.returncode}; see its log")


def run(out: Path, minutes: float, stages: list[str], device: str, parallel: bool) -> dict[str, object]:
    """Run the requested stages in the budget; returns every stage's metrics."""
    budget = minutes * 60.0
    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)

    def left() -> float:
        return budget - (time.monotonic() - start)

    def seconds_for(stage: str) -> float:
        return max(10.0, FRACTION[stage] * budget - START_OVERHEAD_S)

    lane_b_first = None
    if "judge" in stages:
        if parallel:
            lane_b_first = launch("judge", out, seconds_for("judge"), device, logs / "judge.log")
        else:
            wait(launch("judge", out, seconds_for("judge"), device, logs / "judge.log"), "judge")
    if "autoencoder" in stages:
        wait(launch("autoencoder", out, seconds_for("autoencoder"), device, logs / "autoencoder.log"), "autoencoder")
    lane_b_second = None
    classifier_s = seconds_for("classifier") if "classifier" in stages else 0.0
    if "classifier" in stages and parallel:
        wait(lane_b_first, "judge")
        lane_b_first = None
        lane_b_second = launch("classifier", out, classifier_s, device, logs / "classifier.log")
    if "text_unet" in stages:
        reserve = 0.0 if parallel else classifier_s + START_OVERHEAD_S
        if "distill_lcm" in stages:
            reserve += seconds_for("distill_lcm") + START_OVERHEAD_S
        seconds = left() - reserve - START_OVERHEAD_S - 10.0
        wait(launch("text_unet", out, seconds, device, logs / "text_unet.log"), "text_unet")
    wait(lane_b_first, "judge")
    if "classifier" in stages and not parallel:
        wait(launch("classifier", out, classifier_s, device, logs / "classifier.log"), "classifier")
    if "distill_lcm" in stages:
        wait(launch("distill_lcm", out, seconds_for("distill_lcm"), device, logs / "distill_lcm.log"), "distill_lcm")
    wait(lane_b_second, "classifier")
    metrics: dict[str, object] = {"wall_s": time.monotonic() - start}
    for stage in ALL_STAGES:
        state = out / ("lcm" if stage == "distill_lcm" else stage) / "state.json"
        if state.exists():
            raw = json.loads(state.read_text())
            metrics[stage] = {"step": raw["step"], "elapsed_s": raw["elapsed_s"], **raw.get("metrics", {})}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--resume", type=Path, default=None, help="a run directory to continue from")
    parser.add_argument("--stages", default=",".join(ALL_STAGES))
    parser.add_argument("--device", default=None)
    parser.add_argument("--parallel", action="store_true", help="run the judge/classifier lane concurrently")
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.resume is not None and args.resume.resolve() != args.out.resolve():
        shutil.copytree(args.resume, args.out, dirs_exist_ok=True)
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(ALL_STAGES)
    if unknown:
        parser.error(f"--stages: unknown stage(s) {sorted(unknown)}; choose from {', '.join(ALL_STAGES)}")
    print(json.dumps(run(args.out, args.minutes, stages, args.device, args.parallel), indent=1), flush=True)


if __name__ == "__main__":
    main()
