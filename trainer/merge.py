"""Merge a LoRA adapter into its base model in full precision, so that DPO starts from the SFT model.

Zephyr's DPO starts from the SFT model and uses it as the reference. With adapters, that model is
base + SFT adapter: merged into one checkpoint, DPO can train a fresh adapter on it (its reference is then
that checkpoint with the adapter disabled), and evaluation can load it like any model. The base is loaded
in float32 whatever it was trained in: merging into a 4-bit (QLoRA) or bf16 base would round the small
LoRA delta away or quantize it twice. The merged checkpoint is saved in float32; ``dtype`` in the DPO
config casts it on load.

    python -m trainer.merge OUTPUT_DIR [--out OUTPUT_DIR/merged]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from synthgen.errors import TrainerError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["main", "merge_adapter"]


def merge_adapter(
    adapter_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    base: str | None = None,
    revision: str = "main",
    tokenizer: PreTrainedTokenizerBase | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """Save base + adapter as one float32 model, with its tokenizer, at ``out_dir`` (``adapter_dir/merged``).

    ``base`` defaults to the adapter's ``base_model_name_or_path``; ``tokenizer`` to the one saved with the
    adapter (which carries the pad token and chat template the adapter was trained with).
    """
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise TrainerError("no LoRA adapter here (adapter_config.json is missing)", path=adapter_dir)
    out = Path(out_dir) if out_dir is not None else adapter_dir / "merged"
    base = base or PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.float32, revision=revision, trust_remote_code=trust_remote_code
    )
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(adapter_dir))
    # The tokenizer may have been given a pad (or eos) token in training: the model's configs must agree.
    merged.config.pad_token_id = tokenizer.pad_token_id
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    eos = merged.generation_config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        merged.generation_config.eos_token_id = [tokenizer.eos_token_id, *eos_ids]
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter_dir", help="a folder written by trainer.sft/trainer.dpo with use_peft")
    parser.add_argument("--out", help="where to save the merged model (default: ADAPTER_DIR/merged)")
    parser.add_argument("--base", help="base model (default: the adapter's base_model_name_or_path)")
    parser.add_argument("--revision", default="main", help="revision of the base model")
    args = parser.parse_args(argv)
    try:
        out = merge_adapter(args.adapter_dir, args.out, base=args.base, revision=args.revision)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"merged model saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
