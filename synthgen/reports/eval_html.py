"""stub"""
from pathlib import Path


def write_eval_html(eval_dir: str | Path, path: str | Path) -> Path:
    raise NotImplementedError
