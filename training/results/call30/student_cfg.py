"""Session 30's CPU check (a record, not a module): does classifier-free guidance on the one-step student itself raise
its accuracy? The shipped `bundled-turbo` through the serving path (server.commands.eval: the turbo sampler, CFG with
the empty prompt, w > 1 adds the unconditional row) on 256 seen + 256 held-out captions per w; output student_cfg.txt.

    python training/results/call30/student_cfg.py 1,1.5,2,3 256   # ~2 minutes on this repo's 2 CPU cores
"""

import sys
import tempfile
import time
from pathlib import Path

import torch

from pipelines.loading import load_from_manifest
from server.commands.eval import Config, evaluate, load_judge

torch.set_num_threads(2)
root = Path(__file__).resolve().parents[3]
judge = load_judge(root / "weights", torch.device("cpu"))
model = load_from_manifest("bundled-turbo", root / "weights_manifest.yaml", root / "weights", device=torch.device("cpu"),
                           dtype=torch.float32)
scales, count = [float(w) for w in sys.argv[1].split(",")], int(sys.argv[2])
out = Path(tempfile.mkdtemp())
for w in scales:
    start = time.time()
    records = evaluate(model, judge, [Config("turbo", 1, w, ("seen", "heldout"))], count, 64, out, float("inf"), label=f"w{w}_")
    print("w", w, "caption accuracy seen / held-out", [round(r["acc_caption"], 3) for r in records],
          "FID (judge)", [round(r["fid_judge"], 3) for r in records], f"{time.time() - start:.0f} s", flush=True)
