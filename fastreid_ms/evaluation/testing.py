"""results_table: evaluation results as a tabulate table (one row plain, one row re-ranked)."""
from collections import OrderedDict

from tabulate import tabulate

__all__ = ["results_table"]

RK_PREFIX = "RK "
# Results of several test distances: "<column>/<metric>" keys, one table row per column.
COLUMN_SEP = "/"


def _column_rows(name, results):
    """Rows of results with "<column>/<metric>" keys (an evaluator's table of several test
    distances, e.g. AlignedReID++'s TEST.DISTANCE all): one row per column."""
    columns = OrderedDict()
    for key, value in results.items():
        if COLUMN_SEP in key:
            column, metric = key.split(COLUMN_SEP, 1)
            columns.setdefault(column, OrderedDict())[metric] = value
    headers = list(next(iter(columns.values())))
    rows = [[(name + " " if name else "") + column] + [values.get(h) for h in headers]
            for column, values in columns.items()]
    return headers, rows


def _rows(name, results):
    if any(COLUMN_SEP in k for k in results):
        return _column_rows(name, results)
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
    per dataset). Results with "<column>/<metric>" keys give one row per column instead
    (the plain and "RK " keys are then left out of the table).
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
