"""EVALUATOR_REGISTRY: class(cfg, num_query) with reset(), process(features, pids, camids)
and evaluate() -> OrderedDict of metrics (TEST.EVALUATOR)."""
from ..utils.registry import Registry

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_evaluator(cfg, num_query, output_dir=None):
    """The evaluator TEST.EVALUATOR names, for a test set whose first ``num_query`` items are queries."""
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, num_query, output_dir=output_dir)
