"""CPU confirmation (call 3): darkroom eval's DDIM 25 rows for old and new bundled weights, same captions.

Old weights: weights/bundled and weights/judge as of commit 6c41bac copied to /tmp/oldw, with that
commit's weights_manifest.yaml as old_manifest.yaml.  Usage: python cpu_eval.py CAPTIONS W1,W2
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, "/work/main")
from pipelines.loading import load_from_manifest
from server.commands.eval import Config, evaluate, load_judge

torch.set_num_threads(2)
captions = int(sys.argv[1]); scales = [float(w) for w in sys.argv[2].split(",")]
judge = load_judge(Path("/work/main/weights"), torch.device("cpu"))
out = Path("/tmp/cpu_eval"); out.mkdir(exist_ok=True)
records = []
for w in scales:
    for label, manifest, root in (("old", "/work/main/training/results/call3/old_manifest.yaml", "/tmp/oldw"), ("new", "/work/main/weights_manifest.yaml", "/work/main/weights")):
        model = load_from_manifest("bundled", manifest, root, device="cpu", dtype=torch.float32)
        records += evaluate(model, judge, [Config("ddim", 25, w, ("seen", "heldout"))], captions, 16, out, 1e9, label=f"{label}_")
        (out / "records.json").write_text(json.dumps({"device": "cpu", "captions": captions, "records": records}, indent=1))
