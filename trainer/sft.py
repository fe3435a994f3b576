"""Supervised fine-tuning on a synthgen ``sft`` dataset: step 1 of the Zephyr recipe.

    python -m trainer.sft --config recipes/faculty-sciences-es/sft.yaml [--learning_rate 1e-4 ...]

(several GPUs: ``accelerate launch`` with one of TRL's bundled configs, see trainer/README.md).

TRL's stock ``sft`` script (same YAML keys) plus: ``dataset_revision``; LoRA on by default; the chat
template's ``assistant_only_loss`` on by default (the student turns were written by a simulator: training
on them would teach the model to talk like it); a preflight before the model loads; and the adapter merged
in float32 into ``<output_dir>/merged``, the ``model_name_or_path`` of the DPO step.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trl import SFTConfig, SFTTrainer, TrlParser, get_peft_config, get_quantization_config

from trainer import ModelArguments, load_tokenizer, run_cli, say_rows_per_step
from trainer.data import DataArguments, first_row, hub_dataset_name, load_splits
from trainer.merge import merge_adapter
from trainer.preflight import preflight_model, preflight_sft

__all__ = ["SFTScriptArguments", "main", "make_parser", "train"]

logger = logging.getLogger(__name__)


@dataclass
class SFTScriptArguments(DataArguments):
    dataset_config: str | None = field(default="sft", metadata={"help": "Dataset config: synthgen's `sft`."})
    merge_adapter: bool = field(
        default=True,
        metadata={"help": "After LoRA training, merge the adapter in float32 into <output_dir>/merged."},
    )


def make_parser() -> TrlParser:
    parser = TrlParser((SFTScriptArguments, SFTConfig, ModelArguments), prog="python -m trainer.sft")
    parser.set_defaults(assistant_only_loss=True)
    return parser


def train(
    script_args: SFTScriptArguments, training_args: SFTConfig, model_args: ModelArguments
) -> SFTTrainer:
    """Preflight, train, save (and merge, and push when asked); return the trainer, model still in memory."""
    preflight_model(model_args)
    train_set, eval_set = load_splits(script_args, kind="sft", evaluate=training_args.eval_strategy != "no")
    tokenizer = load_tokenizer(model_args, trust_remote_code=training_args.trust_remote_code)
    preflight_sft(
        tokenizer,
        first_row(train_set),
        assistant_only_loss=training_args.assistant_only_loss,
        eos_token=training_args.eos_token,
        chat_template_path=training_args.chat_template_path,
    )
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    peft_config = get_peft_config(model_args)
    trainer = SFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=get_quantization_config(model_args),
    )
    say_rows_per_step(trainer)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    # TRL's own push (output_dir to hub_model_id), before the merge so that the float32 merged model, which
    # lands inside output_dir, is not uploaded with the adapter.
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=hub_dataset_name(script_args))
    if peft_config is not None and script_args.merge_adapter:
        if trainer.accelerator.is_main_process:
            merged = merge_adapter(
                training_args.output_dir,
                Path(training_args.output_dir) / "merged",
                base=model_args.model_name_or_path,
                revision=model_args.model_revision,
                tokenizer=tokenizer,
                trust_remote_code=training_args.trust_remote_code,
            )
            trainer.accelerator.print(f"merged SFT model (float32) saved to {merged}: the DPO starting point")
        trainer.accelerator.wait_for_everyone()
    trainer.end()
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 when trained, 2 (with the fix on stderr) when a preflight or input check fails."""
    return run_cli(make_parser, train, argv)


if __name__ == "__main__":
    sys.exit(main())
