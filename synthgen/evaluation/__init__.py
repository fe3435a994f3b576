"""Evaluating a trained assistant with LLM-as-a-judge: the eval recipe, its question sets, candidate
answer sources, the evaluator, clustered bootstrap statistics, human calibration and the summary."""
