"""Prompt templates: the library that finds, renders and hashes them, next to the templates themselves
(``<language>/<role>.txt``, shipped as package data)."""

from synthgen.prompts.library import PromptLibrary, PromptTemplate

__all__ = ["PromptLibrary", "PromptTemplate"]
