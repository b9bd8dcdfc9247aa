"""Tokenizer from open_clip's BPE file against transformers' CLIPTokenizer; the text encoders' outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTokenizer

from pipelines.text import (
    ClipTextEncoder,
    ClipTokenizer,
    SDXLTextEncoder,
    clip_token_ids,
    encode_with_negative,
    write_hf_clip_tokenizer_files,
)
from pipelines.text import _bpe as open_clip_bpe
from pipelines.tiny import tiny_sd1_components, tiny_sdxl_components

PROMPTS = [
    "a photo of a cat",
    "A small RED circle, left of a blue square.",
    "two green triangles above a yellow star on a striped background",
    "an astronaut riding a horse, 4k, highly detailed",
    "",
]


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    vocab, merges = write_hf_clip_tokenizer_files(tmp_path_factory.mktemp("clip"))
    return str(vocab), str(merges)


def test_known_ids_of_a_photo_of_a_cat() -> None:
    ids, truncated = ClipTokenizer().tokenize(["a photo of a cat"])
    assert ids.shape == (1, 77)
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert bool((ids[0, 7:] == 49407).all())  # SD1 pads with EOS
    assert truncated == [False]


@pytest.mark.parametrize(("pad_id", "pad_token"), [(49407, "<|endoftext|>"), (0, "!")])
def test_ids_equal_transformers_clip_tokenizer(hf_files, pad_id: int, pad_token: str) -> None:
    vocab, merges = hf_files
    hf = CLIPTokenizer(vocab, merges, pad_token=pad_token, model_max_length=77)
    assert hf.pad_token_id == pad_id
    ours, _ = ClipTokenizer(pad_token_id=pad_id).tokenize(PROMPTS)
    theirs = hf(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    assert torch.equal(ours, theirs)


def test_exclamation_mark_keeps_its_word_id_under_pad_zero(hf_files) -> None:
    # transformers makes the pad token "!" special, so a prompt's "!" becomes id 0 (the pad id)
    # there; OpenCLIP (which SD2 / SDXL-2 were trained with) gives "!</w>" = 256, as we do
    vocab, merges = hf_files
    ours, _ = ClipTokenizer(pad_token_id=0).tokenize(["wow!"])
    assert ours[0, :4].tolist() == [49406, 2781, 256, 49407]
    hf = CLIPTokenizer(vocab, merges, pad_token="!", model_max_length=77)
    assert hf("wow!").input_ids == [49406, 2781, 0, 49407]


def test_truncation_is_reported_beyond_77_tokens(hf_files) -> None:
    vocab, merges = hf_files
    fits = " ".join(["cat"] * 75)  # 75 words + BOS + EOS = 77
    too_long = " ".join(["cat"] * 76)
    ids, truncated = ClipTokenizer().tokenize([fits, too_long])
    assert truncated == [False, True]
    assert ids[1, -1].item() == 49407 and ids[1, 0].item() == 49406
    hf = CLIPTokenizer(vocab, merges, model_max_length=77)
    assert ids[1].tolist() == hf(too_long, padding="max_length", max_length=77, truncation=True).input_ids


def test_plain_prompt_ids_equal_open_clip_encode() -> None:
    # clip_token_ids skips open_clip's cleaning for printable ASCII without "&" or "<"; the ids must not change.
    # Fuzzed strings are drawn from the characters that matter: case, digits, runs of spaces, the apostrophe
    # contractions, punctuation runs, and every other printable ASCII character.
    import random

    from training.data import sample_scenes

    captions = [scene.caption.text for scene in sample_scenes(5, 300, "train") + sample_scenes(6, 300, "heldout")]
    rng = random.Random(0)
    alphabet = [*"aAzZ09 '.,!?-_/()[]{}:;\"|~`^$%#@*+=>", "'s", "'T", "'re", "'ll", "  ", "cat", "SQUARE"]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(2000)]
    # letters, spaces and commas only: the path that splits at spaces and commas without the word pattern
    words_and_commas = ["".join(rng.choice([*"abZ ,", "  ", ",,", " , ", "cat", "Square"]) for _ in range(rng.randint(0, 30)))
                        for _ in range(2000)]
    assert sum(",," not in w and "," in w for w in words_and_commas) > 300  # the new path, with a comma
    printable = "".join(chr(c) for c in range(32, 127) if chr(c) not in "&<")
    for prompt in [*PROMPTS, *captions, *fuzz, *words_and_commas, printable, "  leading and trailing  "]:
        assert clip_token_ids(prompt) == open_clip_bpe().encode(prompt), prompt


@pytest.mark.parametrize("prompt", ["fish &amp; chips", "caf\u00e9 au lait", "tab\tand\nnewline", "<start_of_text> a cat",
                                    "\u201ccurly\u201d quotes", "\ufb01ne ligature", "a\x1b[31mred"])
def test_other_prompts_take_open_clip_cleaning(prompt: str) -> None:
    assert clip_token_ids(prompt) == open_clip_bpe().encode(prompt)


def test_tokenize_pads_each_row_to_max_tokens() -> None:
    ids, truncated = ClipTokenizer(pad_token_id=0).tokenize(["a cat", "", "a red circle left of a blue square"])
    assert ids.shape == (3, 77) and ids.dtype == torch.long
    assert ids[1, :3].tolist() == [49406, 49407, 0] and truncated == [False, False, False]
    assert ClipTokenizer().tokenize([])[0].shape == (0, 77)


def test_sd1_encoder_is_last_hidden_state() -> None:
    model = tiny_sd1_components(0)["text_encoder"]
    encoder = ClipTextEncoder(model, ClipTokenizer(pad_token_id=49407))
    cond, truncated = encoder.encode(["a photo of a cat", "a dog"])
    ids, _ = ClipTokenizer().tokenize(["a photo of a cat", "a dog"])
    with torch.no_grad():
        expected = model(ids).last_hidden_state
    assert cond.text_embeddings.shape == (2, 77, 32)
    assert torch.allclose(cond.text_embeddings, expected, atol=0)
    assert truncated == [False, False]


def test_sdxl_encoder_concatenates_penultimate_states_and_pools_bigg() -> None:
    parts = tiny_sdxl_components(0)
    encoder = SDXLTextEncoder(parts["text_encoder"], parts["text_encoder_2"])
    cond, _ = encoder.encode(["a photo of a cat"], size=(64, 48))
    ids_1, _ = ClipTokenizer(pad_token_id=49407).tokenize(["a photo of a cat"])
    ids_2, _ = ClipTokenizer(pad_token_id=0).tokenize(["a photo of a cat"])
    assert ids_2[0, 7].item() == 0  # the second tower's tokenizer pads with 0
    with torch.no_grad():
        out_1 = parts["text_encoder"](ids_1, output_hidden_states=True)
        out_2 = parts["text_encoder_2"](ids_2, output_hidden_states=True)
    assert cond.text_embeddings.shape == (1, 77, 64)
    assert torch.equal(cond.text_embeddings[..., :32], out_1.hidden_states[-2])
    assert torch.equal(cond.text_embeddings[..., 32:], out_2.hidden_states[-2])
    assert torch.equal(cond.pooled_text_embeddings, out_2.text_embeds)
    assert cond.time_ids.tolist() == [[64.0, 48.0, 0.0, 0.0, 64.0, 48.0]]


def test_empty_negative_prompt_is_zero_for_sdxl_only() -> None:
    parts = tiny_sdxl_components(0)
    sdxl = SDXLTextEncoder(parts["text_encoder"], parts["text_encoder_2"])
    cond, uncond, _ = encode_with_negative(sdxl, ["a cat", "a dog"], ["", "blurry"])
    assert float(uncond.text_embeddings[0].abs().max()) == 0.0
    assert float(uncond.pooled_text_embeddings[0].abs().max()) == 0.0
    assert float(uncond.text_embeddings[1].abs().max()) > 0.0
    assert torch.equal(uncond.time_ids, cond.time_ids)

    sd1 = ClipTextEncoder(tiny_sd1_components(0)["text_encoder"], ClipTokenizer())
    _, uncond_sd1, _ = encode_with_negative(sd1, ["a cat"], [""])
    expected, _ = sd1.encode([""])
    # the row was encoded beside the prompt's, `expected` alone: MKL may sum the two in another order (on an AVX-512 /
    # AMX CPU it does), so equal up to fp32 rounding
    torch.testing.assert_close(uncond_sd1.text_embeddings, expected.text_embeddings, rtol=1e-5, atol=1e-6)
