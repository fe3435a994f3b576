"""Checks run before the model loads, so that a wrong template or setup fails in seconds, naming the fix.

Each problem below otherwise trains "fine" and only shows at inference or in odd metrics:

- the assistant mask is empty (TRL fails late, inside ``dataset.map``) or leaves out the end-of-turn token
  (the model never learns to stop; TRL only logs a warning);
- the template rejects the system turn (Gemma 1/2 raise) or drops it: synthgen rows always carry the
  recipe's deployment system prompt, which the model must see in training as it will at inference;
- the DPO prompt rendered alone is not a prefix of prompt+completion: TRL then trims the prompt and trains
  on a context the model never sees at inference;
- the tokenizer has no pad token: TRL silently pads with EOS, and the published tokenizer inherits it;
- QLoRA without a GPU, which bitsandbytes reports with an unrelated message after the download.

The templates rendered are the ones TRL will use: ``chat_template_path`` when set, else the tokenizer's,
swapped for TRL's training variant (with ``{% generation %}`` markers) under ``assistant_only_loss``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError

from synthgen.errors import TrainerError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from trainer import ModelArguments

__all__ = [
    "check_assistant_mask",
    "check_model_path",
    "check_pad_token",
    "check_prompt_prefix",
    "check_quantization",
    "check_system_turn",
    "preflight_dpo",
    "preflight_model",
    "preflight_sft",
    "sft_chat_template",
]

logger = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, Any]]
GENERATION_HINT = (
    "wrap each assistant reply and its end-of-turn token in {% generation %}...{% endgeneration %} in a "
    ".jinja copy of the template and set chat_template_path to it, or set assistant_only_loss: false"
)


def preflight_model(model_args: ModelArguments) -> None:
    """Model-side checks that need no download: the path is a model, QLoRA is possible here."""
    if model_args.model_name_or_path:
        check_model_path(model_args.model_name_or_path)
    check_quantization(model_args)


def preflight_sft(
    tokenizer: PreTrainedTokenizerBase,
    row: Mapping[str, Any],
    *,
    assistant_only_loss: bool = True,
    eos_token: str | None = None,
    chat_template_path: str | None = None,
) -> str | None:
    """Render ``row["messages"]`` as SFTTrainer will; return its template (None: the tokenizer's own)."""
    check_pad_token(tokenizer)
    template = sft_chat_template(
        tokenizer, assistant_only_loss=assistant_only_loss, chat_template_path=chat_template_path
    )
    messages = row["messages"]
    check_system_turn(tokenizer, messages, chat_template=template)
    if assistant_only_loss:
        check_assistant_mask(tokenizer, messages, chat_template=template, eos_token=eos_token)
    logger.info("preflight passed: one sft row renders with its system turn and a complete assistant mask")
    return template


def preflight_dpo(tokenizer: PreTrainedTokenizerBase, row: Mapping[str, Any]) -> None:
    """Render one preference row as DPOTrainer will (the tokenizer's own template)."""
    check_pad_token(tokenizer)
    if not isinstance(row["prompt"], list):
        return  # plain-text preference data: no template to check (synthgen's prefs are conversational)
    _require_template(tokenizer)
    check_system_turn(tokenizer, [*row["prompt"], *row["chosen"]])
    check_prompt_prefix(tokenizer, row["prompt"], {"chosen": row["chosen"], "rejected": row["rejected"]})
    logger.info("preflight passed: the dpo prompt renders as a prefix of prompt+chosen and prompt+rejected")


def check_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is None:
        raise TrainerError(
            "the tokenizer has no pad token (TRL would silently pad with EOS, and the saved tokenizer "
            "would keep that)",
            field="tokenizer_pad_token",
            hint="set tokenizer_pad_token to an existing special token other than EOS "
            "(Llama 3: <|finetune_right_pad_id|>)",
        )


def sft_chat_template(
    tokenizer: PreTrainedTokenizerBase, *, assistant_only_loss: bool, chat_template_path: str | None = None
) -> str | None:
    """The template SFTTrainer will use; a ``.jinja`` ``chat_template_path`` is set on ``tokenizer``."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if chat_template_path:
        path = Path(chat_template_path)
        if not (path.is_file() and path.suffix in (".jinja", ".j2")):
            raise TrainerError(
                "chat_template_path must be a .jinja file here: cloning another tokenizer's template adds "
                "tokens and resizes the model after the preflight",
                field="chat_template_path",
                hint="save the template as a .jinja file whose special tokens the tokenizer already has",
            )
        tokenizer.chat_template = path.read_text(encoding="utf-8")  # as SFTTrainer does with a .jinja path
    _require_template(tokenizer)
    if not assistant_only_loss or has_generation_markers(tokenizer.chat_template):
        return None
    try:
        return get_training_chat_template(tokenizer)
    except ValueError as exc:
        raise TrainerError(
            "the chat template has no {% generation %} markers and TRL knows no training variant of it, so "
            "assistant_only_loss cannot find the assistant tokens",
            field="chat_template_path",
            hint=GENERATION_HINT,
        ) from exc


def check_system_turn(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, *, chat_template: str | None = None
) -> None:
    """The template must render a leading system turn, and keep its text."""
    probe = list(messages)
    if not probe or probe[0]["role"] != "system":
        probe = [{"role": "system", "content": "Preflight system prompt."}, *probe]
    try:
        text = tokenizer.apply_chat_template(probe, tokenize=False, chat_template=chat_template)
    except TemplateError as exc:
        try:
            tokenizer.apply_chat_template(probe[1:], tokenize=False, chat_template=chat_template)
        except TemplateError:
            raise TrainerError(f"the chat template cannot render a row: {exc}") from exc
        raise TrainerError(
            f"the chat template rejects a system turn ({exc}); synthgen rows start with the recipe's "
            "system prompt, which the model must see in training as at inference",
            field="model_name_or_path",
            hint="choose a model whose template accepts a system turn, or set chat_template_path to one",
        ) from exc
    if probe[0]["content"] not in text:
        raise TrainerError(
            "the chat template drops the system turn; synthgen rows start with the recipe's system prompt",
            field="model_name_or_path",
            hint="choose a model whose template renders a system turn, or set chat_template_path to one",
        )


def check_assistant_mask(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    *,
    chat_template: str | None = None,
    eos_token: str | None = None,
) -> None:
    """Every assistant span of the mask must end with the end-of-turn token, so the model learns to stop."""
    out = tokenizer.apply_chat_template(
        list(messages), chat_template=chat_template, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    spans = _runs(mask)
    if not spans:
        raise TrainerError(
            "the chat template marks no token of a row as assistant: with assistant_only_loss every label "
            "would be masked",
            field="chat_template_path",
            hint=GENERATION_HINT,
        )
    eos = eos_token or tokenizer.eos_token
    if eos is None:
        raise TrainerError("the tokenizer has no EOS token", field="eos_token", hint="set eos_token")
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    for start, end in spans:
        content = list(ids[start:end])
        while content and tokenizer.decode([content[-1]]).strip() == "":
            content.pop()  # trailing newlines inside the span are harmless
        if not content or content[-1] != eos_id:
            raise TrainerError(
                f"the assistant mask leaves out the end-of-turn token {eos!r}: a masked reply ends with "
                f"{tokenizer.decode(ids[max(start, end - 6) : end])!r}, so the model never learns to stop",
                field="chat_template_path",
                hint=f"move {eos} inside {{% generation %}}...{{% endgeneration %}}, or set eos_token to the "
                "token that ends an assistant turn",
            )


def check_prompt_prefix(
    tokenizer: PreTrainedTokenizerBase, prompt: Messages, completions: Mapping[str, Messages]
) -> None:
    """The prompt with the generation prompt must tokenize as a prefix of each prompt+completion."""
    prompt_ids = _ids(tokenizer, list(prompt), add_generation_prompt=True)
    for name, completion in completions.items():
        full_ids = _ids(tokenizer, [*prompt, *completion])
        same = _common_prefix(prompt_ids, full_ids)
        if same < len(prompt_ids):
            raise TrainerError(
                f"the DPO prompt rendered alone is not a prefix of prompt+{name}: the prompt ends "
                f"{tokenizer.decode(prompt_ids[same:])!r} where prompt+{name} has "
                f"{tokenizer.decode(full_ids[same : len(prompt_ids)])!r}; TRL would trim the "
                "prompt and train on a context the model never sees at inference",
                field="model_name_or_path",
                hint="use a chat template whose generation prompt (add_generation_prompt) is exactly how an "
                "assistant turn starts",
            )


def check_quantization(model_args: ModelArguments) -> None:
    """QLoRA loads the base in 4/8 bit through bitsandbytes: it needs a CUDA GPU and an adapter to train."""
    flag = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit" if model_args.load_in_8bit else None
    if flag is None:
        return
    import torch

    if not torch.cuda.is_available():
        raise TrainerError(
            f"QLoRA ({flag}) needs a CUDA GPU: bitsandbytes quantizes on the GPU, and none is visible",
            field=flag,
            hint=f"remove {flag} to train LoRA on the unquantized model, or run on a machine with a GPU",
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainerError(
            f"{flag} needs the bitsandbytes package", field=flag, hint="pip install bitsandbytes"
        )
    if not model_args.use_peft:
        raise TrainerError(
            "a quantized model cannot be fine-tuned in full",
            field="use_peft",
            hint="set use_peft: true (QLoRA trains a LoRA adapter over the quantized model)",
        )


def check_model_path(model_name_or_path: str) -> None:
    """A folder holding only a LoRA adapter is not a starting point: DPO starts from the merged SFT model."""
    path = Path(model_name_or_path).expanduser()
    if (path / "adapter_config.json").is_file():
        merged = path / "merged"
        hint = (
            f"use {merged}"
            if (merged / "config.json").is_file()
            else f"merge it: python -m trainer.merge {path}"
        )
        raise TrainerError(f"{path} holds a LoRA adapter, not a model", field="model_name_or_path", hint=hint)


def _require_template(tokenizer: PreTrainedTokenizerBase) -> None:
    if not tokenizer.chat_template:
        raise TrainerError(
            "the tokenizer has no chat template (a base model, not an instruct one?)",
            field="model_name_or_path",
            hint="start from an instruct model, or set chat_template_path to a .jinja template",
        )


def _ids(tokenizer: PreTrainedTokenizerBase, messages: list[Any], **kwargs: Any) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, return_dict=True, **kwargs)["input_ids"])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of 1s."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            runs.append((start, i))
            start = None
    return runs
