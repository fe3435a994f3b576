"""One rank of the 2-process run in test_ddp.py, started by ``accelerate launch``.

    accelerate launch --cpu --num_processes 2 tests/trainer/ddp_worker.py sft|dpo REPORT_DIR --config ...

It trains through the scripts' own parser and ``train`` (what ``python -m trainer.sft|dpo`` runs), and
records, without changing what runs: the rows each micro-batch fed this rank (a wrapper around
``Trainer.training_step`` that counts and calls through), every call of the adapter merge (the same around
``trainer.sft.merge_adapter``), and, after training, a hash of this rank's LoRA weights.
``REPORT_DIR/rank<N>.json`` is what the test compares across ranks.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any


def adapter_digest(model: Any) -> tuple[str, float]:
    """sha256 over the LoRA tensors (names and bytes) of ``model``, and the norm of its ``lora_B`` weights
    (zero at initialisation: a positive norm says the adapter trained)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    digest = hashlib.sha256()
    norm = 0.0
    for name in sorted(state):
        tensor = state[name].detach().cpu().float().contiguous()
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
        if "lora_B" in name:
            norm += float(tensor.pow(2).sum())
    return digest.hexdigest(), norm**0.5


def main(argv: list[str]) -> int:
    import transformers

    from trainer import dpo, sft

    kind, report_dir, *args = argv
    script = {"sft": sft, "dpo": dpo}[kind]
    rows = {"micro_batches": 0, "rows": 0}
    merges: list[int] = []

    real_step = transformers.Trainer.training_step

    # TRL's DPO collator stacks each pair's chosen and rejected sequences into one input_ids batch
    sequences_per_row = 2 if kind == "dpo" else 1

    def counting_step(self: Any, model: Any, inputs: dict[str, Any], *rest: Any, **kw: Any) -> Any:
        rows["micro_batches"] += 1
        rows["rows"] += int(inputs["input_ids"].shape[0]) // sequences_per_row
        return real_step(self, model, inputs, *rest, **kw)

    transformers.Trainer.training_step = counting_step  # type: ignore[method-assign]
    if kind == "sft":
        real_merge = sft.merge_adapter

        def counting_merge(*a: Any, **kw: Any) -> Any:
            merges.append(1)
            return real_merge(*a, **kw)

        sft.merge_adapter = counting_merge  # type: ignore[assignment]

    trainer = script.train(*script.make_parser().parse_args_and_config(args=args))
    state = trainer.accelerator.state
    digest, lora_b_norm = adapter_digest(trainer.accelerator.unwrap_model(trainer.model))
    report = {
        "rank": state.process_index,
        "world_size": state.num_processes,
        "backend": str(getattr(state, "backend", "")),
        "device": str(state.device),
        "global_step": trainer.state.global_step,
        "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "micro_batches": rows["micro_batches"],
        "rows": rows["rows"],
        "merges": len(merges),
        "adapter_sha256": digest,
        "lora_b_norm": lora_b_norm,
    }
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{state.process_index}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
