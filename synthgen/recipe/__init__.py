"""Recipes: the declarative description of a dataset (:mod:`~synthgen.recipe.model`), how one is read
and checked (:mod:`~synthgen.recipe.load`), and where it may read (:mod:`~synthgen.recipe.confine`)."""

from synthgen.recipe.load import load_recipe
from synthgen.recipe.model import LICENSES, Budget, HubOutput, OutputConfig, Recipe, Step

__all__ = ["LICENSES", "Budget", "HubOutput", "OutputConfig", "Recipe", "Step", "load_recipe"]
