"""Model profiles refuse what would send requests (or a secret) somewhere the user did not mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from synthgen.errors import ConfigError, RecipeError
from synthgen.llm.profile import ModelProfile
from synthgen.recipe import load_recipe
from tests.conftest import REPO

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"

BAD_URLS = [
    "file:///etc/passwd",
    "ftp://example.org/v1",
    "localhost:8000/v1",  # no scheme: urlsplit reads "localhost" as the scheme
    "127.0.0.1:8000/v1",
    "http:///v1",  # empty host
    "https://",
    "javascript:alert(1)",
    "//api.openai.com/v1",
    "",
    "http://exa mple.org/v1",
    "http://localhost:notaport/v1",
]
GOOD_URLS = [
    "http://localhost:8000/v1",
    "https://api.openai.com/v1",
    "HTTP://127.0.0.1:9/v1/",
    "http://[::1]:8000/v1",
    "https://gpu-box.internal/openai/v1",
]


def write_demo(tmp_path: Path, **judge: Any) -> Path:
    recipe: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    for key in ("seeds", "personas"):
        recipe[key] = str((DEMO.parent / recipe[key]).resolve())
    recipe["models"]["judge"].update(judge)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("url", BAD_URLS)
def test_base_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        ModelProfile(name="judge", model="m", base_url=url)
    message = str(info.value)
    assert "base_url" in message and "http://HOST" in message, message


@pytest.mark.parametrize("url", GOOD_URLS)
def test_http_urls_are_accepted_as_written(url: str) -> None:
    profile = ModelProfile(name="judge", model="m", base_url=url)
    assert profile.resolved_base_url == url.rstrip("/")


def test_recipe_points_at_the_line_of_a_bad_base_url(tmp_path: Path) -> None:
    path = write_demo(tmp_path, base_url="localhost:8000/v1")
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "localhost:8000" in text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.exit_code == 2
    assert str(info.value).startswith(f"{path}:{line}: models.judge.base_url: "), str(info.value)
    assert "'localhost:8000/v1'" in str(info.value) and "(" in str(info.value)


@pytest.mark.parametrize("url", ["localhost:8000/v1", "file:///tmp/x", "http:///v1", "ftp://h/v1"])
def test_a_bad_openai_base_url_names_the_env_var(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    profile = ModelProfile(name="judge", model="m")
    with pytest.raises(ConfigError) as info:
        _ = profile.resolved_base_url
    assert "$OPENAI_BASE_URL" in str(info.value) and repr(url) in str(info.value)
    assert info.value.field == "models.judge.base_url" and info.value.hint


def test_openai_base_url_and_default_still_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ModelProfile(model="m").resolved_base_url == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1/")
    assert ModelProfile(model="m").resolved_base_url == "http://127.0.0.1:8000/v1"
    assert ModelProfile(model="m", base_url="https://x.org/v1").resolved_base_url == "https://x.org/v1"


NOT_LLM_KEYS = [
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "SSH_AUTH_SOCK",
    "NPM_TOKEN",
    "PYPI_TOKEN",
    "TWINE_PASSWORD",
    "POSTGRES_PASSWORD",
    "DATABASE_URL",
    "WANDB_API_KEY",
    "aws_secret_access_key",
]
LLM_KEYS = [
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "VLLM_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "OPENROUTER_API_KEY",
    "GOOGLE_API_KEY",
    "HF_INFERENCE_KEY",
    "SYNTHGEN_TEST_KEY",
]


@pytest.mark.parametrize("name", NOT_LLM_KEYS)
def test_api_key_env_refuses_secrets_that_are_not_llm_keys(name: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        ModelProfile(name="judge", model="m", api_key_env=name)
    message = str(info.value)
    assert "api_key_env" in message and name in message
    assert "not an LLM API key" in message and "export" in message, message  # why, and what to do


@pytest.mark.parametrize("name", LLM_KEYS)
def test_api_key_env_accepts_llm_keys(name: str) -> None:
    assert ModelProfile(model="m", api_key_env=name).api_key_env == name


def test_recipe_refuses_hf_token_as_a_model_key_at_its_line(tmp_path: Path) -> None:
    path = write_demo(tmp_path, api_key_env="HF_TOKEN")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "models.judge.api_key_env" in str(info.value) and "HF_TOKEN" in str(info.value)
    assert str(info.value).startswith(f"{path}:"), str(info.value)
