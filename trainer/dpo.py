"""Direct preference optimisation on a synthgen ``prefs`` dataset: step 2 of the Zephyr recipe.

    python -m trainer.dpo --config recipes/faculty-sciences-es/dpo.yaml [--beta 0.1 ...]

TRL's stock ``dpo`` script (same YAML keys) plus ``dataset_revision``, LoRA on by default and a preflight.
``model_name_or_path`` is the merged SFT model (``<sft output_dir>/merged``): DPO trains a fresh adapter on
it, and its reference model is that same checkpoint with the adapter disabled, i.e. exactly the SFT model,
as in Zephyr, without a second copy in memory.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from trl import DPOConfig, DPOTrainer, TrlParser, get_peft_config, get_quantization_config

from trainer import ModelArguments, load_tokenizer, run_cli, say_rows_per_step
from trainer.data import DataArguments, first_row, hub_dataset_name, load_splits
from trainer.preflight import preflight_dpo, preflight_model

__all__ = ["DPOScriptArguments", "main", "make_parser", "train"]


@dataclass
class DPOScriptArguments(DataArguments):
    dataset_config: str | None = field(
        default="prefs", metadata={"help": "Dataset config: synthgen's `prefs`."}
    )


def make_parser() -> TrlParser:
    return TrlParser((DPOScriptArguments, DPOConfig, ModelArguments), prog="python -m trainer.dpo")


def train(
    script_args: DPOScriptArguments, training_args: DPOConfig, model_args: ModelArguments
) -> DPOTrainer:
    """Preflight, train, save (and push when asked); return the trainer, model still in memory."""
    preflight_model(model_args)
    train_set, eval_set = load_splits(script_args, kind="prefs", evaluate=training_args.eval_strategy != "no")
    tokenizer = load_tokenizer(model_args, trust_remote_code=training_args.trust_remote_code)
    preflight_dpo(tokenizer, first_row(train_set))
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    trainer = DPOTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    if script_args.ignore_bias_buffers:  # as TRL's stock script: a DDP workaround for bool buffers
        import torch

        trainer.model._ddp_params_and_buffers_to_ignore = [
            name for name, buffer in trainer.model.named_buffers() if buffer.dtype == torch.bool
        ]
    say_rows_per_step(trainer)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:  # TRL's own: pushes output_dir (the adapter) to hub_model_id
        trainer.push_to_hub(dataset_name=hub_dataset_name(script_args))
    trainer.end()
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 when trained, 2 (with the fix on stderr) when a preflight or input check fails."""
    return run_cli(make_parser, train, argv)


if __name__ == "__main__":
    sys.exit(main())
