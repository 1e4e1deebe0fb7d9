"""results_table: evaluation results as a tabulate table (one row plain, one row re-ranked)."""
from collections import OrderedDict

from tabulate import tabulate

__all__ = ["results_table"]

RK_PREFIX = "RK "


def _rows(name, results):
    plain = OrderedDict((k, v) for k, v in results.items() if not k.startswith(RK_PREFIX))
    rows = [[name] + [plain[k] for k in plain]]
    rk = [results.get(RK_PREFIX + k) for k in plain]
    if any(v is not None for v in rk):
        rows.append([(name + " " if name else "") + "RK"] + rk)
    return list(plain), rows


def results_table(results, name="", floatfmt=".2f"):
    """A text table of ``results`` (OrderedDict metric -> percent, as the evaluators return).

    One row with the plain metrics and, when "RK ..." keys are present, a second row "RK" with
    the re-ranked ones. ``results`` may also map dataset names to such dicts (one pair of rows
    per dataset).
    """
    if results and all(isinstance(v, dict) for v in results.values()):
        headers, rows = None, []
        for dataset, res in results.items():
            h, r = _rows(dataset, res)
            headers = headers or h
            rows.extend(r)
    else:
        headers, rows = _rows(name, results)
    return tabulate(rows, headers=[""] + list(headers), tablefmt="pipe", floatfmt=floatfmt,
                    numalign="left")
