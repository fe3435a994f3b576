"""GPU training benchmark: LoRA SFT through TRL's ``SFTTrainer`` on a random ~1B Llama-shaped model.

What the trainer step of the recipe costs on one GPU: tokens/s (real, non-padding tokens) and peak GPU
memory, with the recipe's settings (bf16, LoRA r=16 on all linear layers, assistant-only loss, activation
checkpointing). The model is built from a config (no download); the tokenizer is a byte-level BPE trained
on the benchmark's own texts; the rows are chat dialogues from a RUN_DIR, or generated. Nothing is needed
but torch, transformers, trl and peft (and the tokenizers/datasets they bring): the GPU box is offline.

    python benchmarks/train_gpu.py --out train_gpu.json                  # ~1.1B params, 5 + 30 steps
    python benchmarks/train_gpu.py --out train_gpu.json --run-dir RUN_DIR
    python benchmarks/train_gpu.py --dry-run --out /tmp/train_gpu.json   # CPU, tiny model, seconds

Why ratios: ``mfu`` is model FLOPs per second over the card's peak bf16 dense rate (the ideal). Model
FLOPs per token for LoRA are ``4 * N_matmul`` (forward + input gradients; frozen weights get no weight
gradient) plus causal attention ``6 * layers * seq * hidden``; activation-checkpoint recomputation is not
counted (it is overhead, not model work). Every run checks itself (finite losses, every timed step seen,
tokens counted, adapter smaller than the model) and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

PAD, BOS, EOS, UNK, IM_START = "<|pad|>", "<|begin_of_text|>", "<|im_end|>", "<unk>", "<|im_start|>"
# ChatML with {% generation %} around each reply and its <|im_end|>: assistant_only_loss works as in the
# recipe (the same template as tests/tiny_model.py, copied so that this script imports nothing of ours).
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
SYSTEM = (
    "Eres el asistente virtual de la Facultad de Ciencias. Respondes con precisión y amabilidad a las "
    "consultas de estudiantes y familias sobre normativa, matrícula, trámites, calendario y servicios."
)
VOCABULARY = (
    "matrícula plazo créditos asignatura grado máster secretaría facultad estudiante solicitud sede "
    "electrónica convocatoria examen evaluación continua revisión calificación beca tasa pago fraccionado "
    "reconocimiento transferencia expediente título prácticas externas tutor trabajo fin de calendario "
    "cuatrimestre semestre horario grupo cambio anulación permanencia dedicación tiempo parcial completo "
    "normativa artículo requisito documento certificado plazo ordinario extraordinario septiembre febrero "
    "julio octubre enero junio universidad campus biblioteca laboratorio movilidad erasmus idioma nivel "
    "acreditación se puede debe tiene que para con sin por los las una del al es son está están hay "
    "cuando donde cómo qué cuál si no también además pero porque entonces hasta desde durante antes "
    "después primero segundo último cada todos varios algunos mismo otro nuevo necesario posible"
)
WORDS = VOCABULARY.split()


@dataclass(frozen=True)
class Shape:
    """The model: Llama-shaped, built from config with random weights."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int


FULL = Shape(hidden=2048, layers=16, heads=32, kv_heads=32, intermediate=5632, vocab=32000)  # ~1.1B
TINY = Shape(hidden=64, layers=2, heads=4, kv_heads=4, intermediate=128, vocab=1024)


def generated_rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Dialogues shaped like synthgen's sft rows: system prompt, 1-4 student/assistant turns."""

    def text(lo: int, hi: int) -> str:
        words = rng.choices(WORDS, k=rng.randint(lo, hi))
        return " ".join(words).capitalize() + "."

    rows = []
    for _ in range(n):
        messages = [{"role": "system", "content": SYSTEM}]
        for _ in range(rng.randint(1, 4)):
            messages.append({"role": "user", "content": "¿" + text(6, 30) + "?"})
            messages.append({"role": "assistant", "content": text(30, 180)})
        rows.append({"messages": messages})
    return rows


def run_dir_rows(run_dir: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    dataset = load_dataset(run_dir, "sft", split="train")
    return [{"messages": row["messages"]} for row in dataset]


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Byte-level BPE trained on the benchmark's texts: offline, and any text encodes without <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK, IM_START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=8192,
    )


def build_model(shape: Shape, tokenizer: Any, *, device: str, dtype: Any, max_length: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=max(shape.vocab, len(tokenizer)),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=max(2048, max_length),
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: a 1B model's random init takes minutes on CPU
        model = LlamaForCausalLM(config)
    return model.to(dtype=dtype)


class StepClock(TrainerCallback):
    """Times each optimizer step, the GPU synchronised at each boundary so that the time is the GPU's."""

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.ends: list[float] = []
        self.losses: list[float] = []
        self.start = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sync()
        self.start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sync()
        self.ends.append(time.perf_counter())

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


class Profile(TrainerCallback):
    """torch.profiler over a few steps after warm-up; writes the top kernels and CPU ops to ``path``."""

    def __init__(self, path: str, first: int, steps: int = 3) -> None:
        self.path, self.first, self.last = path, first, first + steps
        self.prof: Any = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch.profiler as tp

        if state.global_step == self.first:
            acts = [tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if torch_cuda() else [])
            self.prof = tp.profile(activities=acts)
            self.prof.__enter__()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.prof is not None and state.global_step == self.last:
            self.prof.__exit__(None, None, None)
            table = self.prof.key_averages()
            text = [
                f"== {sort} ==\n{table.table(sort_by=sort, row_limit=30, max_name_column_width=70)}"
                for sort in ("self_cuda_time_total", "self_cpu_time_total", "cpu_time_total")
            ]
            Path(self.path).write_text("\n\n".join(text), encoding="utf-8")
            self.prof = None


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class CountingCollator:
    """Wraps TRL's collator; records real (non-padding) and padded tokens of each batch, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.real: list[int] = []
        self.padded: list[int] = []

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)
        mask = batch.get("attention_mask")
        self.real.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        self.padded.append(int(batch["input_ids"].numel()))
        return batch


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import peft
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available() and not args.dry_run
    if not args.cudnn_attention:
        torch.backends.cuda.enable_cudnn_sdp(False)  # SDPA then picks flash / memory-efficient kernels
    if not cuda and not args.dry_run:
        raise SystemExit("no CUDA GPU visible: run with --dry-run to check the script on CPU")
    shape = TINY if args.dry_run else FULL
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    total_steps = args.warmup + args.steps
    rng = random.Random(args.seed)

    rows = run_dir_rows(args.run_dir) if args.run_dir else generated_rows(512, rng)
    need = total_steps * args.batch_size
    rows = [rows[i % len(rows)] for i in range(max(need, len(rows)))]
    tokenizer = train_tokenizer([m["content"] for r in rows[:512] for m in r["messages"]], shape.vocab)
    model = build_model(shape, tokenizer, device=device, dtype=dtype, max_length=args.max_length)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()

    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            max_steps=total_steps,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=1e-4,
            lr_scheduler_type="constant",
            bf16=cuda,
            activation_checkpointing=args.activation_checkpointing,
            max_length=args.max_length,
            assistant_only_loss=True,
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=cuda,
            use_cpu=not cuda,
            seed=args.seed,
            pad_to_multiple_of=args.pad_to_multiple_of,
        )
        lora = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
        )
        clock = StepClock(torch.cuda.synchronize if cuda else lambda: None)
        trainer.add_callback(clock)
        if args.profile:
            trainer.add_callback(Profile(args.profile, first=args.warmup))
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        peak = torch.cuda.max_memory_allocated() if cuda else None

    marks = [clock.start, *clock.ends]
    step_s = [b - a for a, b in itertools.pairwise(marks)]
    timed = slice(args.warmup, total_steps)
    seconds = sum(step_s[timed])
    real, padded = sum(counter.real[timed]), sum(counter.padded[timed])
    tokens_per_s = real / seconds if seconds > 0 else float("nan")
    mean_seq = padded / (args.batch_size * args.steps)
    flops_per_token = 4 * (n_params - n_embed - n_trainable) + 6 * shape.layers * mean_seq * shape.hidden
    gpu = torch.cuda.get_device_name() if cuda else None
    peak_tflops = args.peak_tflops or (_peak_bf16_tflops(gpu) if gpu else None)
    result = {
        "benchmark": "train_gpu",
        "dry_run": args.dry_run,
        "device": gpu or platform.processor() or "cpu",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "peft": peft.__version__,
        },
        "model": {**asdict(shape), "params": n_params, "trainable_params": n_trainable, "dtype": str(dtype)},
        "setup": {
            "data": args.run_dir or "generated",
            "rows": len(rows),
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
            "activation_checkpointing": args.activation_checkpointing,
            "profiled": bool(args.profile),
            "pad_to_multiple_of": args.pad_to_multiple_of,
            "cudnn_attention": args.cudnn_attention,
            "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"},
        },
        "tokens_per_s": tokens_per_s,
        "padded_tokens_per_s": padded / seconds if seconds > 0 else float("nan"),
        "padding_fraction": 1 - real / padded if padded else None,
        "seconds_per_step_median": statistics.median(step_s[timed]) if step_s[timed] else None,
        "timed_seconds": seconds,
        "timed_tokens": real,
        "mean_padded_seq_len": mean_seq,
        "peak_gpu_memory_gib": peak / 2**30 if peak is not None else None,
        "model_tflops_per_s": flops_per_token * tokens_per_s / 1e12,
        "peak_bf16_tflops": peak_tflops,
        "mfu": flops_per_token * tokens_per_s / (peak_tflops * 1e12) if peak_tflops else None,
        "loss_first": clock.losses[0] if clock.losses else None,
        "loss_last": clock.losses[-1] if clock.losses else None,
    }
    result["checks"] = _checks(result, clock, counter, total_steps)
    return result


def _peak_bf16_tflops(name: str) -> float | None:
    """Dense bf16 peak from the vendor sheets; None when the card is unknown (pass --peak-tflops)."""
    if "H100" in name:
        return 756.0 if "PCIe" in name else 989.0
    if "H200" in name:
        return 989.0
    if "A100" in name:
        return 312.0
    return None


def _checks(
    result: dict[str, Any], clock: StepClock, counter: CountingCollator, steps: int
) -> dict[str, bool]:
    checks = {
        "every_step_timed": len(clock.ends) == steps,
        "every_batch_counted": len(counter.real) >= steps,
        "losses_finite": len(clock.losses) == steps and all(math.isfinite(x) for x in clock.losses),
        "tokens_counted": result["timed_tokens"] > 0 and math.isfinite(result["tokens_per_s"]),
        # r=16 on a 64-wide toy model is not small: the tiny shape only checks that something is frozen
        "adapter_smaller_than_model": 0
        < result["model"]["trainable_params"]
        < result["model"]["params"] / (1 if result["dry_run"] else 10),
    }
    if not result["dry_run"]:
        checks["peak_memory_measured"] = (result["peak_gpu_memory_gib"] or 0) > 0
    return checks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument(
        "--run-dir", help="a synthgen RUN_DIR whose sft rows to train on (default: generated)"
    )
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (CUDA init, allocator)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument(
        "--activation-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TRL's default",
    )
    parser.add_argument(
        "--pad-to-multiple-of", type=int, help="pad batches to a multiple of N tokens (fewer distinct shapes)"
    )
    parser.add_argument(
        "--cudnn-attention",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let SDPA use cuDNN attention (torch's default on Hopper)",
    )
    parser.add_argument("--peak-tflops", type=float, help="the card's peak bf16 dense TFLOP/s, for mfu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile", help="write a torch.profiler table of 3 steps after warm-up to this file"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny model, 1 + 3 steps: checks the script"
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        args.steps, args.warmup, args.batch_size, args.max_length = 3, 1, 2, min(args.max_length, 256)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = benchmark(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    peak, mfu = result["peak_gpu_memory_gib"], result["mfu"]
    summary = (
        f"{result['device']}: {result['tokens_per_s']:,.0f} tokens/s, "
        f"peak {'n/a' if peak is None else f'{peak:.1f} GiB'}, mfu {'n/a' if mfu is None else f'{mfu:.1%}'}"
        f" -> {args.out}"
    )
    print(summary)
    failed = [name for name, ok in result["checks"].items() if not ok]
    if failed:
        print(f"checks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
