"""Prompts -> text conditioning: the CLIP BPE tokenizer and the text encoders of each family.

The CLIP byte-pair vocabulary ships inside open_clip_torch (bpe_simple_vocab_16e6.txt.gz); it is
the same 49,408-id vocabulary as every SD / SDXL tokenizer on the hub, so prompts tokenize with no
hub files. Each family keeps its own pad id (SD1 / SDXL-1: 49407 = EOS; SD2 / SDXL-2: 0 = "!").

Encoders (Radford et al. 2021 CLIP; Podell et al. 2023 SDXL, sec. 2.1; Raffel et al. 2020 T5):
- SD1 / SD2 / bundled: CLIPTextModel last hidden state (SD2 checkpoints already stop at the
  penultimate layer of OpenCLIP ViT-H: 23 of 24 layers are kept).
- SDXL: penultimate hidden states of CLIP-L and OpenCLIP-bigG concatenated (768 + 1280 = 2048),
  pooled = bigG's projected EOS embedding, time_ids = (orig_h, orig_w, crop_top, crop_left,
  target_h, target_w).
- PixArt: T5 encoder hidden states with an attention mask, 120 tokens.
"""

from __future__ import annotations

import gzip
import json
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import torch
from open_clip.tokenizer import SimpleTokenizer, bytes_to_unicode, default_bpe
from torch import Tensor

from pipelines.conditioning import Conditioning, to_device

BOS_ID = 49406  # <|startoftext|>
EOS_ID = 49407  # <|endoftext|>
VOCAB_SIZE = 49408
MAX_TOKENS = 77  # CLIP context length, BOS and EOS included
NUM_MERGES = 49152 - 256 - 2  # merges used by the CLIP vocabulary (the file holds more)


@lru_cache(maxsize=1)
def _bpe() -> SimpleTokenizer:
    return SimpleTokenizer(bpe_path=default_bpe(), context_length=None)


# Prompts of printable ASCII without "&" (an HTML entity) or "<" (open_clip's special-token names) are
# unchanged by open_clip's cleaning (ftfy and html.unescape touch only non-ASCII text, control characters
# and entities), so for them the cleaning reduces to collapsing spaces and lowering case.
_PLAIN = frozenset(chr(c) for c in range(32, 127)) - {"&", "<"}
_WORD_IDS: dict[str, list[int]] = {}  # a word of plain text -> its ids (BPE of each word is fixed)
_WORD_IDS_LIMIT = 1 << 16  # a bound on what user text can grow it to
# Lower-case letters, spaces and lone commas: open_clip's word pattern (letter runs, each digit, runs of other
# symbols) then splits at the spaces and around each comma, so str.split does its work (a run ",," is one piece
# to the pattern, so it keeps the pattern)
_LETTERS_AND_COMMAS = frozenset("abcdefghijklmnopqrstuvwxyz ,")


def clip_token_ids(prompt: str) -> list[int]:
    """open_clip SimpleTokenizer.encode(prompt), without BOS/EOS. Plain prompts (see _PLAIN) skip its
    cleaning and reuse each word's ids: about 5x faster, the same ids (tests/pipelines/test_text.py)."""
    if not _PLAIN.issuperset(prompt):
        return _bpe().encode(prompt)
    bpe = _bpe()
    text = " ".join(prompt.split()).lower()
    if _LETTERS_AND_COMMAS.issuperset(text) and ",," not in text:
        words = text.replace(",", " , ").split()
    else:
        words = bpe.pat.findall(text)
    ids: list[int] = []
    for word in words:
        word_ids = _WORD_IDS.get(word)
        if word_ids is None:
            # a word holds no space, and the rest of printable ASCII is its own symbol in CLIP's byte encoding
            word_ids = [bpe.encoder[piece] for piece in bpe.bpe(word).split(" ")]
            if len(_WORD_IDS) < _WORD_IDS_LIMIT:
                _WORD_IDS[word] = word_ids
        ids.extend(word_ids)
    return ids


class ClipTokenizer:
    """CLIP BPE tokenization to fixed-length ids with BOS/EOS and a family's pad id."""

    def __init__(self, pad_token_id: int = EOS_ID, max_tokens: int = MAX_TOKENS) -> None:
        self.pad_token_id = pad_token_id
        self.max_tokens = max_tokens

    def tokenize(self, prompts: list[str]) -> tuple[Tensor, list[bool]]:
        """(B, max_tokens) int64 ids and, per prompt, whether words beyond max_tokens were dropped."""
        room = self.max_tokens - 2  # BOS and EOS take two places
        flat = array("q")  # the rows back to back: one buffer, read by torch without a per-element conversion
        truncated: list[bool] = []
        for prompt in prompts:
            tokens = clip_token_ids(prompt)
            truncated.append(len(tokens) > room)
            row = [BOS_ID, *tokens[:room], EOS_ID]
            flat.extend(row)
            flat.extend([self.pad_token_id] * (self.max_tokens - len(row)))
        if not prompts:
            return torch.zeros(0, self.max_tokens, dtype=torch.long), truncated
        return torch.frombuffer(flat, dtype=torch.long).view(len(prompts), self.max_tokens).clone(), truncated


def write_hf_clip_tokenizer_files(directory: str | Path) -> tuple[Path, Path]:
    """Write vocab.json and merges.txt (the transformers CLIPTokenizer format) from open_clip's BPE file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(default_bpe()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1 : NUM_MERGES + 1]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB_SIZE
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab_path.write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


class TextEncoderWithSize(Protocol):
    """Text encoders whose conditioning depends on the output size (SDXL micro-conditioning)."""

    def encode(self, prompts: list[str], size: tuple[int, int] | None = None) -> tuple[Conditioning, list[bool]]: ...


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def reverse_words(text: str) -> str:
    """The prompt's words in reverse order, a comma counting as a word ("a red circle, a blue square"
    -> "square blue a , circle red a"): CLIP's BPE splits punctuation from words, so the reversed
    text tokenizes to the same pieces in reverse word order."""
    return " ".join(reversed(text.replace(",", " ,").split()))


class ClipTextEncoder:
    """SD1 / SD2 / bundled: one CLIPTextModel, last (or penultimate) hidden state as context.

    both_directions (a model trained so; model_index.json "darkroom_text_directions": 2): the
    context is the prompt's encoding followed by its word-reversed encoding, (B, 2 x 77, D). CLIP's
    encoder is causal, so in the prompt as written a word is encoded knowing only the words before
    it: in "a red circle left of a blue square" the red circle's tokens never see "left of". In the
    reversed pass they come last and do (training/results/analysis/text_directions_probe.md: a linear probe reads the
    relation at the first object's colour token at 0.48 forward, 1.00 reversed).
    """

    zero_empty_negative = False  # an empty negative prompt is encoded like any prompt

    def __init__(self, model: torch.nn.Module, tokenizer: ClipTokenizer, *, hidden_layer: int = -1,
                 both_directions: bool = False) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        # -1: last_hidden_state (final layer norm applied); -2: penultimate, no final norm
        self.hidden_layer = hidden_layer
        self.both_directions = both_directions

    @torch.no_grad()
    def encode(self, prompts: list[str], size: tuple[int, int] | None = None) -> tuple[Conditioning, list[bool]]:
        """Context (B, 77, D) for the UNet's cross-attention ((B, 154, D) with both_directions);
        `size` is unused by this family."""
        ids, truncated = self.tokenizer.tokenize(prompts)
        if self.both_directions:
            reversed_ids, _ = self.tokenizer.tokenize([reverse_words(p) for p in prompts])
            ids = torch.cat((ids, reversed_ids))
        ids = to_device(ids, _device_of(self.model))
        if self.hidden_layer == -1:
            hidden = self.model(ids).last_hidden_state  # (B, 77, D)
        else:
            hidden = self.model(ids, output_hidden_states=True).hidden_states[self.hidden_layer]
        if self.both_directions:
            forward, backward = hidden.chunk(2)
            hidden = torch.cat((forward, backward), dim=1)
        return Conditioning(text_embeddings=hidden), truncated


class SDXLTextEncoder:
    """SDXL: two CLIP towers; penultimate states concatenated, pooled bigG, size time_ids."""

    # SDXL was trained with zeroed conditioning for empty prompts: diffusers'
    # force_zeros_for_empty_prompt gives zeros for the uncond rows when no negative prompt is set
    zero_empty_negative = True

    def __init__(
        self,
        model: torch.nn.Module,
        model_2: torch.nn.Module,
        tokenizer: ClipTokenizer | None = None,
        tokenizer_2: ClipTokenizer | None = None,
        *,
        default_size: tuple[int, int] = (1024, 1024),
    ) -> None:
        self.model = model.eval()  # CLIPTextModel (CLIP-L)
        self.model_2 = model_2.eval()  # CLIPTextModelWithProjection (OpenCLIP bigG)
        self.tokenizer = tokenizer or ClipTokenizer(pad_token_id=EOS_ID)
        self.tokenizer_2 = tokenizer_2 or ClipTokenizer(pad_token_id=0)
        self.default_size = default_size  # (height, width) in pixels

    @torch.no_grad()
    def encode(self, prompts: list[str], size: tuple[int, int] | None = None) -> tuple[Conditioning, list[bool]]:
        """Context (B, 77, D1+D2), pooled (B, D2) and time_ids (B, 6) for output size (height, width)."""
        ids_1, truncated_1 = self.tokenizer.tokenize(prompts)
        ids_2, truncated_2 = self.tokenizer_2.tokenize(prompts)
        out_1 = self.model(to_device(ids_1, _device_of(self.model)), output_hidden_states=True)
        out_2 = self.model_2(to_device(ids_2, _device_of(self.model_2)), output_hidden_states=True)
        context = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2].to(out_1.hidden_states[-2].device)], dim=-1)
        pooled = out_2.text_embeds.to(context.device)  # (B, D2)
        time_ids = sdxl_time_ids(size or self.default_size, len(prompts)).to(context.device, context.dtype)
        cond = Conditioning(text_embeddings=context, pooled_text_embeddings=pooled, time_ids=time_ids)
        return cond, [a or b for a, b in zip(truncated_1, truncated_2)]


def sdxl_time_ids(size: tuple[int, int], rows: int) -> Tensor:
    """(rows, 6) micro-conditioning (orig_h, orig_w, crop_top, crop_left, target_h, target_w); Podell et al. 2023, 2.2."""
    height, width = size
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32).repeat(rows, 1)


class T5TextEncoder:
    """PixArt: T5EncoderModel hidden states (B, L, 4096) with the attention mask."""

    zero_empty_negative = False

    def __init__(self, model: torch.nn.Module, tokenizer: object, *, max_tokens: int = 120) -> None:
        self.model = model.eval()
        # a transformers T5 tokenizer (loaded from the model's tokenizer/ folder, never the hub)
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @torch.no_grad()
    def encode(self, prompts: list[str], size: tuple[int, int] | None = None) -> tuple[Conditioning, list[bool]]:
        """Context (B, max_tokens, D) and mask (B, max_tokens); `size` is unused here."""
        # PixArt's reference text preprocessing without caption cleaning: lower case, stripped
        prompts = [p.lower().strip() for p in prompts]
        full = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]  # type: ignore[operator]
        truncated = [len(ids) > self.max_tokens for ids in full]
        batch = self.tokenizer(  # type: ignore[operator]
            prompts,
            padding="max_length",
            max_length=self.max_tokens,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        device = _device_of(self.model)
        ids, mask = to_device(batch["input_ids"], device), to_device(batch["attention_mask"], device)
        hidden = self.model(ids, attention_mask=mask)[0]  # (B, L, D)
        return Conditioning(text_embeddings=hidden, text_mask=mask), truncated


def encode_with_negative(
    encoder: TextEncoderWithSize,
    prompts: list[str],
    negative_prompts: list[str],
    size: tuple[int, int] | None = None,
) -> tuple[Conditioning, Conditioning, list[bool]]:
    """cond and uncond rows in one encoder pass; empty negatives become zeros where the family wants it."""
    both, truncated = encoder.encode(prompts + negative_prompts, size=size)
    n = len(prompts)
    cond, uncond = both.rows(slice(0, n)), both.rows(slice(n, 2 * n))
    if getattr(encoder, "zero_empty_negative", False):
        empty = to_device(torch.tensor([p == "" for p in negative_prompts]), _cond_device(uncond))
        uncond = _zero_rows(uncond, empty)
    return cond, uncond, truncated[:n]


def _cond_device(cond: Conditioning) -> torch.device:
    for t in (cond.text_embeddings, cond.pooled_text_embeddings, cond.time_ids):
        if t is not None:
            return t.device
    return torch.device("cpu")


def _zero_rows(cond: Conditioning, rows: Tensor) -> Conditioning:
    """Zero the text embeddings and pooled embeddings of the selected rows (time_ids stay)."""

    def zero(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        keep = (~rows).to(t.dtype).view(-1, *([1] * (t.dim() - 1)))
        return t * keep

    return Conditioning(
        text_embeddings=zero(cond.text_embeddings),
        text_mask=cond.text_mask,
        pooled_text_embeddings=zero(cond.pooled_text_embeddings),
        time_ids=cond.time_ids,
        class_labels=cond.class_labels,
        control_image=cond.control_image,
        control_scale=cond.control_scale,
    )


__all__ = [
    "BOS_ID",
    "EOS_ID",
    "MAX_TOKENS",
    "ClipTextEncoder",
    "ClipTokenizer",
    "SDXLTextEncoder",
    "T5TextEncoder",
    "clip_token_ids",
    "encode_with_negative",
    "sdxl_time_ids",
    "write_hf_clip_tokenizer_files",
]
