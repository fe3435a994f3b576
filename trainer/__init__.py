"""Zephyr's recipe on synthgen datasets: SFT, then DPO from the merged SFT model, with TRL and PEFT::

    python -m trainer.sft --config recipes/faculty-sciences-es/sft.yaml
    python -m trainer.dpo --config recipes/faculty-sciences-es/dpo.yaml

The scripts are TRL's stock ``sft``/``dpo`` (``TrlParser``, ``SFTTrainer``/``DPOTrainer``,
``get_peft_config``) plus what they lack for a small synthetic dataset: a pinned dataset revision
(:mod:`trainer.data`), a preflight that renders one row with the chat template before the model loads
(:mod:`trainer.preflight`), and a full-precision merge of the SFT adapter that DPO starts from
(:mod:`trainer.merge`).

This module holds what both scripts share: the model arguments (LoRA on by default) and the tokenizer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trl import ModelConfig

from synthgen.errors import TrainerError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["ModelArguments", "load_tokenizer", "run_cli", "say_rows_per_step"]


@dataclass
class ModelArguments(ModelConfig):
    """TRL's ``ModelConfig`` with LoRA on by default, on every linear layer.

    A few hundred to a few thousand rows cannot move billions of weights usefully: an adapter trains in a
    fraction of the memory and cannot drift far from the instruct model's Spanish. ``all-linear`` (attention
    and MLP) is what the QLoRA paper found necessary to match full fine-tuning. ``use_peft: false`` trains
    every weight instead.
    """

    use_peft: bool = field(
        default=True,
        metadata={"help": "Train a LoRA adapter (synthgen's default); `false` fine-tunes every weight."},
    )
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "LoRA target modules; synthgen's default `all-linear` adapts attention and MLP."},
    )
    tokenizer_pad_token: str | None = field(
        default=None,
        metadata={
            "help": "A token of the vocabulary to pad with when the tokenizer defines none (Llama 3: "
            "`<|finetune_right_pad_id|>`). Without one the preflight stops rather than pad with EOS."
        },
    )


def load_tokenizer(model_args: ModelArguments, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The model's tokenizer at its pinned revision, with ``tokenizer_pad_token`` applied.

    Loaded before the model so that the preflight can fail in seconds, not after a multi-GB download.
    """
    from transformers import AutoTokenizer

    if not model_args.model_name_or_path:
        raise TrainerError(
            "no model to train", field="model_name_or_path", hint="a Hub id or a folder with config.json"
        )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision, trust_remote_code=trust_remote_code
    )
    pad = model_args.tokenizer_pad_token
    if pad is not None:
        if pad not in tokenizer.get_vocab():
            raise TrainerError(
                f"{pad!r} is not a token of {model_args.model_name_or_path}'s vocabulary",
                field="tokenizer_pad_token",
                hint="pick an existing special token that is not the EOS token",
            )
        tokenizer.pad_token = pad
    return tokenizer


def say_rows_per_step(trainer: Any) -> int:
    """Print once (main process) the rows one optimizer step consumes, and return it.

    It is per-device batch x ``gradient_accumulation_steps`` x processes: on N GPUs the accumulation must
    be divided by N to keep a recipe's rows per step (16 for the faculty recipe), and nothing else says
    whether it was; a learning rate tuned for 16 rows is wrong for 64.
    """
    args = trainer.args
    rows = int(args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size)
    trainer.accelerator.print(
        f"{rows} rows per optimizer step = {args.per_device_train_batch_size} per device x "
        f"{args.gradient_accumulation_steps} accumulation x {args.world_size} processes"
    )
    return rows


def run_cli(make_parser: Callable[[], Any], train: Callable[..., Any], argv: Sequence[str] | None) -> int:
    """Shared entry of ``python -m trainer.sft|dpo``: parse the TrlParser config, train, map TrainerError."""
    try:
        script_args, training_args, model_args = make_parser().parse_args_and_config(args=argv)
        train(script_args, training_args, model_args)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
