"""training/distill_dmd.py's pieces that carry the method: the distribution-matching gradient and
the classifier on the fake score UNet's mid-block features."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from training.distill_dmd import (
    MidFeatureClassifier,
    MultiScaleClassifier,
    distribution_matching,
    unet_with_mid,
)
from training.models import build_unet

ROOT = Path(__file__).resolve().parents[1]
# the wall clock given to the short CPU runs below: more than a busy machine needs, each run bounded by its
# max_iterations (fake-score updates) instead, so a loaded CI host cannot cut a run short of what the test checks
RUN_S = 600.0


def test_matching_gradient_is_the_normalised_score_difference() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 16, 16, generator=gen, requires_grad=True)
    real, fake = torch.randn(3, 4, 16, 16, generator=gen), torch.randn(3, 4, 16, 16, generator=gen)
    loss, grad = distribution_matching(x, real, fake)
    loss.backward()
    norm = (x.detach() - real).abs().mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(grad, (fake - real) / norm)
    assert torch.allclose(x.grad, grad / x.numel(), atol=1e-9)
    # gradient descent moves x along (teacher's x0 - fake score's x0)
    assert (-x.grad * (real - fake)).sum() > 0


def test_matching_gradient_vanishes_when_the_scores_agree() -> None:
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    real = torch.randn(2, 4, 16, 16)
    loss, grad = distribution_matching(x, real, real.clone())
    loss.backward()
    assert grad.abs().max() == 0 and x.grad.abs().max() == 0


def test_classifier_reads_the_fake_unets_mid_block() -> None:
    torch.manual_seed(0)
    unet = build_unet().eval()
    for p in unet.parameters():  # the output conv starts at zero: perturb so eps is not trivially equal
        p.data += 0.02 * torch.randn_like(p)
    hooked: list[torch.Tensor] = []
    unet.mid_block.register_forward_hook(lambda module, inputs, output: hooked.append(output))
    x, t, text = torch.randn(3, 4, 16, 16), torch.tensor([10, 500, 990]), torch.randn(3, 77, 128)
    with torch.no_grad():
        reference = unet(x, t, encoder_hidden_states=text).sample
        eps, feature = unet_with_mid(unet, x, t, text)
        none, mid_only = unet_with_mid(unet, x, t, text, mid_only=True)
    assert eps is not None and torch.equal(eps, reference)  # the diffusers forward, step for step
    assert torch.equal(feature, hooked[0]) and torch.equal(mid_only, hooked[0]) and none is None
    assert feature.shape == (3, 160, 4, 4)
    assert MidFeatureClassifier()(feature).shape == (3,)
    # the multi-scale classifier's input: the first two down blocks' outputs beside the mid block's
    down: list[torch.Tensor] = []
    for block in unet.down_blocks[:2]:
        block.register_forward_hook(lambda module, inputs, output: down.append(output[1][0]))  # its resnet output
    with torch.no_grad():
        eps_scales, features = unet_with_mid(unet, x, t, text, scales=True)
        _, features_mid_only = unet_with_mid(unet, x, t, text, mid_only=True, scales=True)
    assert torch.equal(eps_scales, reference)
    assert [f.shape for f in features] == [(3, 64, 16, 16), (3, 128, 8, 8), (3, 160, 4, 4)]
    assert torch.equal(features[0], down[0]) and torch.equal(features[1], down[1]) and torch.equal(features[2], hooked[0])
    assert all(torch.equal(a, b) for a, b in zip(features, features_mid_only))
    assert MultiScaleClassifier()(features).shape == (3,)


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
@pytest.mark.parametrize("classifier_features", ["mid", "multi"])
def test_a_short_run_with_the_gan_term_trains_every_part(tmp_path: Path, classifier_features: str) -> None:
    """The loop end to end on CPU (the cached caption embeddings, the explicit mid-block features, the
    classifier): student and fake-score steps are taken and every part's weights are written."""
    from training.checkpoint import load_state
    from training.distill_dmd import CRITIC_DIR, STAGE, train
    from training.export import import_weights

    import_weights(ROOT / "weights", tmp_path)
    # one fake-score update per student update (the recipe's 5 would need 10 iterations for 2 student steps; the fake
    # score and classifier still update every iteration)
    metrics = train(tmp_path, RUN_S, torch.device("cpu"), batch=2, init_unet=ROOT / "weights" / "bundled_turbo" / "unet",
                    gan_weight=0.05, guidance=6.0, eval_count=2, pool_size=16, fake_steps=1, three_object_weight=2.0,
                    classifier_features=classifier_features, max_iterations=2)
    state = load_state(tmp_path / STAGE)
    assert state.step >= 2 and state.metrics["guidance"] == 6.0 and "compile" not in state.metrics
    assert state.metrics["three_object_weight"] == 2.0 and state.metrics["classifier_features"] == classifier_features
    assert metrics["export"] in ("ema_student", "student", "best_ema_student")
    for name in ("fake_score", "classifier", "ema_student", "student"):
        assert (tmp_path / STAGE / f"{name}.safetensors").exists(), name
    fake = load_file(str(tmp_path / STAGE / "fake_score.safetensors"))
    teacher = UNet2DConditionModel.from_pretrained(ROOT / "weights" / "bundled" / "unet").float().state_dict()
    assert fake.keys() == teacher.keys() and all(torch.isfinite(v).all() for v in fake.values())
    # the fake score learnt from the student's samples: it moved away from the teacher it started as
    assert max((fake[k] - teacher[k]).abs().max().item() for k in fake) > 1e-4
    critic = tmp_path / STAGE / CRITIC_DIR  # the fp16 copy a later call carries
    assert load_file(str(critic / "fake_score.safetensors"))["conv_in.weight"].dtype == torch.float16
    assert (critic / "classifier.safetensors").exists()


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_a_fresh_run_starts_from_another_runs_critic(tmp_path: Path) -> None:
    """--init-critic: a fresh run's fake score and classifier are the given folder's, not the teacher and a new classifier."""
    from safetensors.torch import save_file

    from training.checkpoint import load_state
    from training.distill_dmd import STAGE, train
    from training.export import import_weights

    teacher = UNet2DConditionModel.from_pretrained(ROOT / "weights" / "bundled" / "unet").float()
    critic = tmp_path / "critic"
    critic.mkdir()
    fake = {k: (v + 0.01).half() for k, v in teacher.state_dict().items()}  # a critic unlike the teacher
    save_file(fake, str(critic / "fake_score.safetensors"))
    classifier = {k: torch.full_like(v, 0.5).half() for k, v in MidFeatureClassifier().state_dict().items()}
    save_file(classifier, str(critic / "classifier.safetensors"))
    run = tmp_path / "run"
    import_weights(ROOT / "weights", run)
    with pytest.raises(FileNotFoundError, match="init-critic"):
        train(run, 0.0, torch.device("cpu"), init_critic=tmp_path / "nowhere")
    train(run, 0.0, torch.device("cpu"), batch=2, init_unet=ROOT / "weights" / "bundled_turbo" / "unet",
          gan_weight=0.05, eval_count=2, pool_size=16, init_critic=critic)  # no time to train: the loaded critic is saved back
    saved = load_file(str(run / STAGE / "fake_score.safetensors"))
    assert all(torch.equal(saved[k], fake[k].float()) for k in fake)
    saved = load_file(str(run / STAGE / "classifier.safetensors"))
    assert all(torch.equal(saved[k], classifier[k].float()) for k in classifier)
    assert load_state(run / STAGE).metrics["init_critic"] == str(critic)


def test_three_object_captions_can_be_drawn_more_often() -> None:
    from training.data import sample_scenes
    from training.distill_dmd import caption_draw_weights

    scenes = sample_scenes(3, 600, "train")
    three = torch.tensor([len(s.caption.objects) == 3 for s in scenes])
    assert 0.1 < three.float().mean() < 0.5  # the grammar draws all three counts
    assert torch.equal(caption_draw_weights(scenes, 1.0), torch.ones(600))
    weights = caption_draw_weights(scenes, 2.0)
    assert torch.equal(weights[three], torch.full((int(three.sum()),), 2.0)) and torch.all(weights[~three] == 1.0)
    rows = torch.multinomial(weights, 20_000, replacement=True, generator=torch.Generator().manual_seed(0))
    share, base = three[rows].float().mean().item(), three.float().mean().item()
    assert abs(share - 2 * base / (1 + base)) < 0.02  # odds doubled


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_gan_probe_trains_each_classifier_kind_on_the_same_samples(tmp_path: Path) -> None:
    from training.export import import_weights
    from training.gan_probe import T_BANDS, Samples, probe

    import_weights(ROOT / "weights", tmp_path)
    student = ROOT / "weights" / "bundled_turbo" / "unet"
    first = Samples(tmp_path, student, seed=1).batch(3)
    again = Samples(tmp_path, student, seed=1).batch(3)
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # both kinds read the same sequence of samples
    assert first.real.shape == first.fake.shape == (3, 4, 16, 16) and first.t.shape == (3,)
    assert first.text.shape == first.negative.shape and not torch.equal(first.text, first.negative)
    assert first.right.dtype == torch.bool and first.right.shape == (3,)
    for kind in ("mid", "multi"):
        result = probe(Samples(tmp_path, student, seed=1), kind, steps=2, batch=2, eval_batches=1, mismatch=1.0)
        assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["matching"] <= 1.0
        assert len(result) == 2 + 2 * len(T_BANDS) + 2  # accuracy and matching, each by t band, judge_auc, student_right
    # --critic: a run's fake score and classifier, measured as they are (no training); a folder without them is refused
    critic = tmp_path / "critic"
    critic.mkdir()
    from safetensors.torch import save_file

    teacher = UNet2DConditionModel.from_pretrained(ROOT / "weights" / "bundled" / "unet").float()
    save_file({k: v.half().contiguous() for k, v in teacher.state_dict().items()}, str(critic / "fake_score.safetensors"))
    with pytest.raises(FileNotFoundError, match="classifier"):
        probe(Samples(tmp_path, student, seed=1), "mid", steps=0, batch=2, eval_batches=1, critic=critic)
    save_file({k: torch.zeros_like(v).half() for k, v in MidFeatureClassifier().state_dict().items()},
              str(critic / "classifier.safetensors"))
    zero = probe(Samples(tmp_path, student, seed=1), "mid", steps=0, batch=2, eval_batches=1, critic=critic)
    assert zero["accuracy"] == 0.0 and zero["matching"] == 0.0  # its logits are all 0: neither side is called right


def test_ranking_auc_counts_ordered_pairs() -> None:
    from training.gan_probe import ranking_auc

    right = torch.tensor([True, True, False, False])
    assert ranking_auc(torch.tensor([3.0, 2.0, 1.0, 0.0]), right) == 1.0
    assert ranking_auc(torch.tensor([0.0, 1.0, 2.0, 3.0]), right) == 0.0
    assert ranking_auc(torch.tensor([1.0, 0.0, 1.0, 0.0]), right) == 0.5  # one win, one loss, two ties of four
    assert torch.isnan(torch.tensor(ranking_auc(torch.zeros(2), torch.tensor([True, True]))))


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_the_classifier_learns_hard_negative_captions_as_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--mismatch-weight: the classifier's loss gains the real latents under their captions' hard negatives as fake (one
    more mid-block pass of the fake score per update, under other caption embeddings), and the run logs how often it
    ranks the matched caption above the mismatched; without the GAN term it is refused."""
    import training.distill_dmd as dmd
    from training.checkpoint import load_state
    from training.export import import_weights

    import_weights(ROOT / "weights", tmp_path)
    with pytest.raises(ValueError, match="mismatch_weight"):
        dmd.train(tmp_path, 0.0, torch.device("cpu"), mismatch_weight=1.0)
    texts: list[torch.Tensor] = []
    original = dmd.unet_with_mid

    def spy(unet, sample, timestep, text, mid_only=False, scales=("mid",)):  # type: ignore[no-untyped-def]
        texts.append(text.detach().clone())
        return original(unet, sample, timestep, text, mid_only, scales)

    monkeypatch.setattr(dmd, "unet_with_mid", spy)
    dmd.train(tmp_path, RUN_S, torch.device("cpu"), batch=2, init_unet=ROOT / "weights" / "bundled_turbo" / "unet",
              gan_weight=0.05, mismatch_weight=1.0, eval_count=2, pool_size=16, fake_steps=1, max_iterations=50)
    state = load_state(tmp_path / dmd.STAGE)
    assert state.metrics["mismatch_weight"] == 1.0
    # per iteration: the student's GAN pass (student turns), the fake score's denoising pass, the real side and the
    # mismatched side; the last two read the same latents under different captions
    assert len(texts) >= 3 * 50
    assert len(state.losses["classifier_matching"]) == 1 and 0.0 <= state.losses["classifier_matching"][0][1] <= 1.0
    negatives = [text for previous, text in itertools.pairwise(texts) if text.shape == previous.shape and not torch.equal(text, previous)]
    assert negatives  # the mismatched side's captions differ from the real side's


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_the_critic_warms_up_before_the_student_moves(tmp_path: Path) -> None:
    """--critic-warmup: the fake score and classifier train on the student's samples while the student stays as loaded."""
    from training.checkpoint import load_state
    from training.distill_dmd import STAGE, train
    from training.export import import_weights

    import_weights(ROOT / "weights", tmp_path)
    init = ROOT / "weights" / "bundled_turbo" / "unet"
    train(tmp_path, RUN_S, torch.device("cpu"), batch=2, init_unet=init, gan_weight=0.05, eval_count=2, pool_size=16,
          fake_steps=1, critic_warmup=10**6, max_iterations=3)  # longer than the run: no student update at all
    state = load_state(tmp_path / STAGE)
    assert state.step == 0 and state.metrics["critic_warmup"] == 10**6
    loaded = UNet2DConditionModel.from_pretrained(init).float().state_dict()
    student = load_file(str(tmp_path / STAGE / "student.safetensors"))
    assert all(torch.equal(student[k], loaded[k]) for k in loaded)
    fake = load_file(str(tmp_path / STAGE / "fake_score.safetensors"))
    teacher = UNet2DConditionModel.from_pretrained(ROOT / "weights" / "bundled" / "unet").float().state_dict()
    assert max((fake[k] - teacher[k]).abs().max().item() for k in fake) > 1e-4  # the critic did train


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_the_judge_discriminator_trains_beside_dmd_and_travels_with_the_critic(tmp_path: Path) -> None:
    """--judge-gan-weight: ADD's discriminator on the judge's frozen features is loaded from a carried critic, trained on
    renders vs the student's samples every iteration, gives the student its term and is saved (fp32 and the fp16 copy);
    --seed is recorded; a run without the discriminator writes none."""
    from safetensors.torch import save_file

    from training.checkpoint import load_state
    from training.distill_add import JudgeDiscriminator
    from training.distill_dmd import CRITIC_DIR, STAGE, train
    from training.export import import_weights

    critic = tmp_path / "critic"
    critic.mkdir()
    teacher = UNet2DConditionModel.from_pretrained(ROOT / "weights" / "bundled" / "unet").float()
    save_file({k: v.half() for k, v in teacher.state_dict().items()}, str(critic / "fake_score.safetensors"))
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in JudgeDiscriminator().state_dict().items()}
    save_file({k: v.half() for k, v in start.items()}, str(critic / "discriminator.safetensors"))
    init = ROOT / "weights" / "bundled_turbo" / "unet"
    for seed, judge_gan in ((0, 0.0), (1, 0.3)):
        run = tmp_path / f"run{seed}_{judge_gan:g}"
        import_weights(ROOT / "weights", run)
        train(run, RUN_S, torch.device("cpu"), batch=2, init_unet=init, eval_count=2, pool_size=16, fake_steps=1,
              init_critic=critic, judge_gan_weight=judge_gan, seed=seed, max_iterations=1)
        state = load_state(run / STAGE)
        assert state.step >= 1 and state.metrics["seed"] == seed and state.metrics["judge_gan_weight"] == judge_gan
        assert (run / STAGE / "discriminator.safetensors").exists() == (judge_gan > 0)
        assert ("judge_gan_generator+5" in state.losses) == (judge_gan > 0)  # the student got the term
    saved = load_file(str(tmp_path / "run1_0.3" / STAGE / "discriminator.safetensors"))
    assert saved.keys() == start.keys() and all(torch.isfinite(v).all() for v in saved.values())
    weights = [k for k, _ in JudgeDiscriminator().named_parameters()]  # not spectral norm's power-iteration vectors
    moved = max((saved[k] - start[k].half().float()).abs().max().item() for k in weights)
    assert 1e-4 < moved < 0.05  # trained, from the carried weights (a fresh initialisation would be far from them)
    assert load_file(str(tmp_path / "run1_0.3" / STAGE / CRITIC_DIR / "discriminator.safetensors"))["heads.0.out.bias"].dtype == torch.float16


def test_ema_without_warm_up_keeps_its_decay_from_the_first_update() -> None:
    from training.checkpoint import EMA

    module = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        module.weight.fill_(1.0)
    warm, full = EMA(module, 0.998), EMA(module, 0.998, warmup=False)
    with torch.no_grad():
        module.weight.fill_(2.0)
    warm.update(module)
    full.update(module)
    assert torch.allclose(full.shadow[0], torch.full((2, 2), 1.002))  # 0.998 x 1 + 0.002 x 2
    assert torch.allclose(warm.shadow[0], torch.full((2, 2), 2.0 - 2 / 11))  # the warm-up's d = 2 / 11 follows the weights


@pytest.mark.skipif(not (ROOT / "weights" / "bundled_turbo" / "unet" / "config.json").exists(), reason="no shipped student")
def test_the_students_learning_rate_warms_up_and_its_ema_can_stay_at_the_start(tmp_path: Path) -> None:
    """--lr-warmup: the first updates are lr x k / N, not Adam's full lr-sized step on every weight; --ema-from-init: the
    EMA averages around the loaded student (decay 0.998 from the first update)."""
    from training.checkpoint import load_state
    from training.distill_dmd import STAGE, train
    from training.export import import_weights

    init = ROOT / "weights" / "bundled_turbo" / "unet"
    loaded = UNet2DConditionModel.from_pretrained(init).float().state_dict()
    moved = {}
    for warmup in (0, 10**6):
        run = tmp_path / f"run{warmup}"
        import_weights(ROOT / "weights", run)
        train(run, RUN_S, torch.device("cpu"), batch=2, init_unet=init, eval_count=2, pool_size=16, fake_steps=1,
              lr=2e-5, lr_warmup=warmup, ema_from_init=bool(warmup), max_iterations=2)
        state = load_state(run / STAGE)
        steps = state.step
        assert steps >= 1 and state.metrics["lr_warmup"] == warmup
        student = load_file(str(run / STAGE / "student.safetensors"))
        moved[warmup] = max((student[k] - loaded[k]).abs().max().item() for k in loaded)
        if warmup:
            ema = load_file(str(run / STAGE / "ema_student.safetensors"))
            ema_moved = max((ema[k] - loaded[k]).abs().max().item() for k in loaded)
            assert ema_moved <= 0.002 * steps * moved[warmup] + 1e-9  # each update takes 0.2% of the student's offset
    assert moved[0] >= 1.9e-5  # Adam's first update alone moves some weight by ~lr
    assert moved[10**6] < 1e-9 * 20  # lr x k / 10^6 for the k-th of at most a few updates


def randint_ranges(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every (low, high) that torch.randint is called with from now on, in order."""
    drawn: list[tuple[int, int]] = []
    randint = torch.randint

    def spy(low: int, high: int | None = None, *args: object, **kwargs: object) -> torch.Tensor:
        drawn.append((low, high) if high is not None else (0, low))
        return randint(low, high, *args, **kwargs) if high is not None else randint(low, *args, **kwargs)

    monkeypatch.setattr(torch, "randint", spy)
    return drawn


def test_the_score_comparison_range_is_checked_and_drawn_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--t-range LO HI: the student's noised sample is scored at timesteps in [LO, HI) only; a bad range fails
    before anything loads."""
    from training.checkpoint import load_state
    from training.distill_dmd import STAGE, T_MAX, T_MIN, comparison_range, train
    from training.export import import_weights

    assert comparison_range((T_MIN, T_MAX)) == (20, 980)
    for bad in ((500, 500), (600, 500), (-1, 500), (20, 1001)):
        with pytest.raises(ValueError, match="t_range"):
            train(tmp_path / "never", 1.0, torch.device("cpu"), t_range=bad)
    assert not (tmp_path / "never").exists()

    drawn = randint_ranges(monkeypatch)
    run = tmp_path / "run"
    import_weights(ROOT / "weights", run)
    train(run, RUN_S, torch.device("cpu"), batch=2, eval_count=2, pool_size=16, fake_steps=1, t_range=(20, 60),
          max_iterations=1)
    state = load_state(run / STAGE)
    assert state.step >= 1 and state.metrics["t_range"] == [20, 60]
    assert (20, 60) in drawn and (T_MIN, T_MAX) not in drawn  # the comparison's draws; the GAN's and the fake's are 0-1000


def test_each_student_update_averages_its_gradient_over_the_given_draws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--draws D: every student update scores each sample at D draws of (t, noise); D < 1 fails before anything loads."""
    from training.checkpoint import load_state
    from training.distill_dmd import STAGE, train
    from training.export import import_weights

    with pytest.raises(ValueError, match="draws"):
        train(tmp_path / "never", 1.0, torch.device("cpu"), draws=0)
    assert not (tmp_path / "never").exists()

    drawn = randint_ranges(monkeypatch)
    run = tmp_path / "run"
    import_weights(ROOT / "weights", run)
    train(run, RUN_S, torch.device("cpu"), batch=2, eval_count=2, pool_size=16, fake_steps=1, t_range=(20, 60), draws=3,
          max_iterations=1)
    state = load_state(run / STAGE)
    assert state.step >= 1 and state.metrics["draws"] == 3
    assert drawn.count((20, 60)) == 3 * state.step  # only the comparison draws from this range


def test_the_output_anchor_measures_the_students_drift_from_a_reference_refreshed_every_period(tmp_path: Path) -> None:
    """--anchor-weight W --anchor-every K: each student update also runs the student on a second batch of (noise,
    caption) pairs and pays W x its outputs' mean squared change there since the reference copy, which is retaken every
    K student updates; bad settings fail before anything loads."""
    from training.checkpoint import load_state
    from training.distill_dmd import STAGE, train
    from training.export import import_weights

    for weight, every in ((-1.0, 32), (1.0, 0)):
        with pytest.raises(ValueError, match="anchor"):
            train(tmp_path / "never", 1.0, torch.device("cpu"), anchor_weight=weight, anchor_every=every)
    assert not (tmp_path / "never").exists()

    run = tmp_path / "run"
    import_weights(ROOT / "weights", run)
    train(run, RUN_S, torch.device("cpu"), batch=2, eval_count=2, pool_size=16, fake_steps=1, lr=2e-5,
          init_unet=ROOT / "weights" / "bundled_turbo" / "unet", anchor_weight=1.0, anchor_every=2, max_iterations=3)
    state = load_state(run / STAGE)
    assert state.step == 3 and state.metrics["anchor_weight"] == 1.0 and state.metrics["anchor_every"] == 2
    drift = [value for _, value in state.losses["anchor_drift"]]
    assert len(drift) == 3
    # updates 1 and 3 start a period (the reference is the student itself: only the pass size's rounding differs);
    # update 2 sees the change of update 1
    assert drift[0] < 1e-9 and drift[2] < 1e-9
    assert drift[1] > 100 * max(drift[0], drift[2], 1e-12)
