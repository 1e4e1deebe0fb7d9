"""Evaluation: rank metrics, k-reciprocal re-ranking, distances, evaluators."""
from .build import EVALUATOR_REGISTRY, build_evaluator
from .evaluator import inference_on_dataset
from .rank import evaluate_rank
from .reid_evaluation import ReidEvaluator
from .rerank import re_ranking
from .testing import results_table

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator", "evaluate_rank", "re_ranking",
           "ReidEvaluator", "inference_on_dataset", "results_table"]
