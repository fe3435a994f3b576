"""Offline test fixtures for training: a tiny random Llama with its own tokenizer, and a tiny RUN_DIR.

Nothing here downloads anything: the tokenizer is trained in-process on the texts it will see, the model is
randomly initialised, and both are saved with ``save_pretrained`` so that ``AutoTokenizer``,
``AutoProcessor`` and ``AutoModelForCausalLM`` load the folder exactly like a Hub checkpoint. That is what
TRL's stock scripts (``model_name_or_path: DIR``) and ``trainer/`` need to run on CPU in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "DEMO_RECIPE", "build_tiny_llama", "make_run_dir", "run_dir_texts"]

REPO = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO / "recipes" / "offline-demo" / "recipe.yaml"

BOS, EOS, PAD, UNK = "<|begin_of_text|>", "<|im_end|>", "<|pad|>", "<unk>"
IM_START = "<|im_start|>"

# ChatML, as Qwen2.5's training template renders it, reduced to system/user/assistant. Two choices matter:
# - `{% generation %}...{% endgeneration %}` wraps each assistant reply INCLUDING its `<|im_end|>`, so
#   `assistant_only_loss=True` masks everything but the replies and still trains the model to stop (TRL
#   warns when the end-of-turn token falls outside the mask); without markers TRL would try to swap in a
#   known training template and fail on an unknown one.
# - the generation prompt is exactly the prefix an assistant turn starts with, so the tokenized DPO prompt
#   is a prefix of prompt+chosen (TRL warns and trims the prompt otherwise).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _train_tokenizer(texts: Iterable[str], vocab_size: int):  # -> PreTrainedTokenizerFast
    """Byte-level BPE: any text (Spanish accents, ¿, emoji) encodes without <unk>, and decode round-trips.

    The pre-tokenizer splits whitespace from words, so no merge crosses the chat template's `\\n` after
    `<|im_start|>assistant`; the special tokens are added tokens, never split, and TRL's stop-token check
    requires the end-of-turn token to be an added one.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK, IM_START]
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(texts) or ["hola"], trainer=trainer)
    # pad is its own token, not eos: a collator that masks pad positions out of the labels would otherwise
    # also mask every real end-of-turn token, and the model would never learn to stop.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def build_tiny_llama(
    path: str | Path,
    *,
    vocab: Iterable[str] = (),
    vocab_size: int = 512,
    hidden_size: int = 32,
    seed: int = 0,
) -> Path:
    """Save a tokenizer trained on ``vocab`` (texts) and a random 2-layer ``LlamaForCausalLM`` at ``path``.

    A few tens of thousands of parameters: a training step takes milliseconds on one CPU thread, so tests
    exercise the real TRL/transformers code paths (chat template, masking, loss, save) and not a mock.
    ``torch.manual_seed(seed)`` makes the weights, and so the first losses, reproducible.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = _train_tokenizer(vocab, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_run_dir(tmp_path: str | Path, *, limit: int = 6, name: str = "run") -> Path:
    """Run the offline-demo recipe with ``limit`` items per step into ``tmp_path/name``; return RUN_DIR.

    The embedded offline provider makes it deterministic and network-free; ``limit`` keeps it to seconds.
    """
    from synthgen import load_recipe, run

    out = Path(tmp_path) / name
    run(load_recipe(DEMO_RECIPE), out=out, offline=True, limit=limit)
    return out


def run_dir_texts(run_dir: str | Path) -> list[str]:
    """Every message text of a RUN_DIR's sft and prefs rows: a corpus for ``build_tiny_llama(vocab=...)``."""
    import pandas as pd

    texts: list[str] = []
    for file in sorted(Path(run_dir, "data").glob("*/*.parquet")):
        frame = pd.read_parquet(file)
        for column in ("messages", "prompt", "chosen", "rejected"):
            if column in frame:
                texts.extend(m["content"] for messages in frame[column] for m in messages)
        for column in ("question", "answer"):
            if column in frame:
                texts.extend(frame[column])
    return texts
