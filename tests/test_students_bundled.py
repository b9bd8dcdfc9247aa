"""The bundled model's one-step students: each loads through the manifest, is judged right at a
stated rate on a small fixed prompt set, and is served by the engine with its own sampler.

bundled-lcm (training/distill_lcm.py) samples with `lcm` in 1-4 steps, bundled-turbo
(training/distill_dmd.py since GPU call 8; training/distill_add.py before) with `turbo` in one step; neither runs a CFG pass (w = 1). Thresholds
sit under what the 16 fixed prompts gave on CPU with the shipped weights (THRESHOLDS), by one or
two prompts, so a regression in the weights, the LCM boundary, the samplers or the decoding
shows. CPU, fp32.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HAVE = all((ROOT / "weights" / folder / "unet" / "config.json").exists() for folder in ("bundled_lcm", "bundled_turbo"))
pytestmark = pytest.mark.skipif(not HAVE, reason="weights/bundled_lcm or weights/bundled_turbo not present")

# (model id, sampler, steps) -> minimum (caption, colour) accuracy on the 16 prompts; measured on
# CPU with the shipped weights (GPU call-6 LCM student, call-30 one-step soup, call-6 decoder) in the comments
THRESHOLDS = {
    ("bundled-lcm", "lcm", 4): (0.5, 0.875),  # measured caption 0.625 (10 of 16), colour 1.0
    ("bundled-lcm", "lcm", 1): (0.3125, 0.75),  # measured 0.4375 (7 of 16), colour 0.875
    ("bundled-turbo", "turbo", 1): (0.75, 0.875),  # call-30 soup: measured 0.8125 (13 of 16), colour 0.9375 (call 25's: 0.9375, 1.0)
}


def _load(model_id: str):  # type: ignore[no-untyped-def]
    from pipelines.loading import load_from_manifest

    return load_from_manifest(model_id, ROOT / "weights_manifest.yaml", ROOT / "weights", device="cpu", dtype=torch.float32)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def students() -> dict[str, object]:
    return {model_id: _load(model_id) for model_id in ("bundled-lcm", "bundled-turbo")}


@pytest.fixture(scope="module")
def judge():  # type: ignore[no-untyped-def]
    from server.commands.eval import load_judge

    return load_judge(ROOT / "weights", torch.device("cpu"))


def test_students_load_with_their_samplers(students: dict[str, object]) -> None:
    lcm, turbo = students["bundled-lcm"], students["bundled-turbo"]
    assert lcm.family.default_sampler == "lcm" and lcm.denoiser.lcm is not None  # type: ignore[attr-defined]
    assert turbo.family.default_sampler == "turbo" and turbo.family.default_steps == 1  # type: ignore[attr-defined]
    assert turbo.denoiser.lcm is None and turbo.family.default_guidance == 1.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("model_id", "sampler", "steps"), list(THRESHOLDS))
def test_student_judge_accuracy(students: dict[str, object], judge, model_id: str, sampler: str, steps: int) -> None:  # type: ignore[no-untyped-def]
    """16 fixed seen prompts, one image each, no CFG pass: whole-caption and colour accuracy."""
    from server.commands.eval import generate
    from training.data import sample_scenes
    from training.judge import caption_accuracy

    scenes = sample_scenes(99, 16, "train")
    images = generate(students[model_id], [s.caption.text for s in scenes], sampler, steps, 1.0, seed=0)
    accuracy, _ = caption_accuracy(judge, images, [s.caption for s in scenes])
    caption, colour = THRESHOLDS[(model_id, sampler, steps)]
    assert accuracy["caption"] >= caption, accuracy
    assert accuracy["colour"] >= colour, accuracy


@pytest.mark.anyio
@pytest.mark.parametrize(("model_id", "sampler", "steps"), [("bundled-turbo", "turbo", 1), ("bundled-lcm", "lcm", 2)])
async def test_engine_serves_the_student(students: dict[str, object], model_id: str, sampler: str, steps: int) -> None:
    """POST /generate with the student's sampler: 200, a 64 px PNG equal to the direct serving path's
    image for the same seed; and the model's defaults (its sampler, no CFG) when the body names none."""
    import httpx

    from server.app import create_app
    from server.commands.eval import generate
    from server.engine import Engine
    from server.settings import Settings

    prompt = "a large red circle left of a small blue square"
    settings = Settings(max_batch=4, max_queue=8, request_timeout_s=60.0, drain_timeout_s=10.0)  # type: ignore[call-arg]
    model = students[model_id]
    app = create_app(settings, Engine([model], settings))  # type: ignore[list-item]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://darkroom.test", timeout=60) as client:
            body = {"prompt": prompt, "model": model_id, "sampler": sampler, "steps": steps, "guidance": 1.0, "seed": 5}
            response = await client.post("/generate", json=body)
            defaults = await client.post("/generate", json={"prompt": prompt, "model": model_id, "seed": 5})
    assert response.status_code == 200, response.text
    served = np.asarray(Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))).convert("RGB")).astype(int)
    assert served.shape == (64, 64, 3)
    direct = generate(model, [prompt], sampler, steps, 1.0, seed=5)[0]
    direct_pixels = (direct.permute(1, 2, 0) * 255).round().numpy().astype(int)
    assert np.abs(served - direct_pixels).max() <= 2
    assert defaults.status_code == 200, defaults.text
    metadata = defaults.json()["metadata"]
    assert metadata["sampler"] == model.family.default_sampler and metadata["steps"] == model.family.default_steps  # type: ignore[attr-defined]


def test_students_eval_table_shows_each_gpu_latency_stage_every_row_has() -> None:
    """training.students_eval's README table: the CUDA graphs and as-served columns appear only when every row
    was measured that way (CPU runs have neither)."""
    from training.students_eval import markdown

    split = {"acc_caption": 0.9, "acc_colour": 1.0, "acc_shape": 0.9, "acc_size": 0.9, "acc_position": 0.9, "fid_judge": 0.2}
    row = {"name": "teacher", "seen": split, "heldout": split, "accuracy_vs_teacher": 1.0, "latency_batch1_s": 0.5,
           "latency_batched_s": 0.25, "speedup_batch1": 1.0}
    cpu = markdown({"card": "cpu", "latency_batch": 16, "rows": [row]})
    assert "graphs" not in cpu and "served" not in cpu
    gpu_row = {**row, "latency_batch1_graphs_s": 0.08, "speedup_batch1_graphs": 1.0,
               "latency_batch1_served_s": 0.07, "speedup_batch1_served": 1.0}
    gpu = markdown({"card": "NVIDIA H200", "latency_batch": 256, "rows": [gpu_row, {**gpu_row, "name": "one-step"}]}).splitlines()
    assert gpu[0].endswith("batch 1, UNet CUDA graphs (speed-up) | batch 1 as served (+ decoder lever) (speed-up) |")
    assert gpu[1].count("|") == gpu[0].count("|") and gpu[2].endswith("| 80.0 ms (1.0x) | 70.0 ms (1.0x) |")
    partial = markdown({"card": "NVIDIA H200", "latency_batch": 256, "rows": [gpu_row, row]})
    assert "graphs" not in partial and "served" not in partial


def test_paired_compare_counts_differences_per_caption() -> None:
    from training.paired_compare import paired

    candidate, baseline = torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0, 0.0])
    result = paired(candidate, baseline)
    assert result["candidate"] == 0.75 and result["baseline"] == 0.25 and result["diff"] == 0.5
    assert result["candidate_only"] == 2 and result["baseline_only"] == 0
    assert abs(result["paired_se"] - torch.tensor([0.0, 1.0, 0.0, 1.0]).std().item() / 2) < 1e-9


def test_paired_compare_splits_by_object_count() -> None:
    from training.data import sample_scenes
    from training.paired_compare import by_objects

    captions = [s.caption for s in sample_scenes(3, 60, "train")]
    counts = torch.tensor([len(c.objects) for c in captions])
    candidate, baseline = (counts == 3).float(), torch.zeros(60)  # the candidate is right on exactly the three-object captions
    rows = by_objects(candidate, baseline, captions)
    assert sorted(rows) == ["1", "2", "3"] and sum(r["captions"] for r in rows.values()) == 60
    assert rows["3"]["diff"] == 1.0 and rows["3"]["candidate_only"] == int((counts == 3).sum())
    assert rows["1"]["diff"] == rows["2"]["diff"] == 0.0


def test_paired_compare_of_a_unet_with_itself_finds_no_difference(students: dict[str, object], judge) -> None:  # type: ignore[no-untyped-def]
    """The same captions and seeds for both sides: the shipped one-step student against its own UNet folder agrees
    caption by caption."""
    from training.analysis import load_model
    from training.data import sample_scenes
    from training.paired_compare import agreement, paired

    captions = [s.caption for s in sample_scenes(5, 6, "train")]
    own = agreement(students["bundled-turbo"], judge, captions, "turbo", 1, 1.0)
    swapped = load_model("bundled-turbo", "cpu", ROOT / "weights" / "bundled_turbo" / "unet")
    result = paired(agreement(swapped, judge, captions, "turbo", 1, 1.0), own)
    assert result["captions"] == 6 and result["diff"] == 0.0 and result["candidate_only"] == result["baseline_only"] == 0


def test_soup_is_the_weighted_mean_of_the_unets(tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel

    from training.models import build_unet
    from training.soup import soup

    torch.manual_seed(0)
    folders = []
    for i in range(2):
        unet = build_unet()
        for p in unet.parameters():
            p.data = torch.randn_like(p)
        unet.save_pretrained(tmp_path / f"u{i}")
        folders.append(tmp_path / f"u{i}")
    a, b = (UNet2DConditionModel.from_pretrained(f).state_dict() for f in folders)
    mixed = soup(folders, [3.0, 1.0]).state_dict()
    assert all(torch.allclose(mixed[k], 0.75 * a[k] + 0.25 * b[k], atol=1e-6) for k in a)
    same = soup([folders[0], folders[0]]).state_dict()
    assert all(torch.allclose(same[k], a[k]) for k in a)
    with pytest.raises(ValueError, match="weight"):
        soup(folders, [1.0])


def test_interleaved_latency_alternates_the_rows_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """students_eval times the teacher and the students in alternation (two warm-up rounds, then `reps` timed ones),
    each call with its own row's settings and the round's seed, and returns one median per row."""
    from training import students_eval

    calls: list[tuple[str, int, int, int]] = []

    def fake_generate(model: object, prompts: list[str], sampler: str, steps: int, guidance: float, seed: int) -> None:
        calls.append((sampler, steps, len(prompts), seed))

    monkeypatch.setattr(students_eval, "generate", fake_generate)
    cpu = type("Model", (), {"device": torch.device("cpu")})()
    medians = students_eval.interleaved_latency([(cpu, "ddim", 25, 4.0), (cpu, "turbo", 1, 1.0)], batch=3, reps=2)
    assert len(medians) == 2 and all(m >= 0 for m in medians)
    assert calls == [(sampler, steps, 3, seed) for seed in range(4) for sampler, steps in (("ddim", 25), ("turbo", 1))]


def test_students_eval_decoder_tiny_draws_every_row_through_its_models_tiny_decoder() -> None:
    """`students_eval --decoder tiny` (fast mode): generate then decodes the same latents with the model's tiny decoder,
    and a model without one is refused by name."""
    from dataclasses import replace

    from server.commands.eval import decode, denoise, encode_prompts, generate, initial_noise
    from training.students_eval import use_tiny_decoders

    model = _load("bundled-turbo")
    if model.tiny_vae is None:  # type: ignore[attr-defined]
        pytest.skip("weights/bundled_tiny_vae not present")
    prompts, sampler, steps = ["a red circle", "a small blue square left of a green triangle"], "turbo", 1
    full = generate(model, prompts, sampler, steps, 1.0, seed=5)
    x, sigmas, generator = initial_noise(model, len(prompts), sampler, steps, 5)
    x = denoise(model, x, sigmas, generator, sampler, encode_prompts(model, prompts, 1.0))
    expected = decode(replace(model, vae=model.tiny_vae), x, sigmas)  # type: ignore[type-var, attr-defined]
    use_tiny_decoders({"bundled-turbo": model})
    tiny = generate(model, prompts, sampler, steps, 1.0, seed=5)
    assert torch.equal(tiny, expected) and not torch.equal(tiny, full)
    with pytest.raises(SystemExit, match="--decoder tiny: model 'plain' has no tiny decoder"):
        use_tiny_decoders({"plain": replace(model, tiny_vae=None)})  # type: ignore[type-var]
