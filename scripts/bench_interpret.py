"""expt interpret's confusion matrix and report (plain tensor operations, expt/interpret.py) against
scikit-learn's confusion_matrix + classification_report (the test extra's reference) on the same
random predictions: the largest difference of any number, and the time of each, side by side.

    .venv/bin/python scripts/bench_interpret.py --images 10000 100000 --classes 10 37
"""

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from expt.interpret import class_report, confusion_matrix


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from sklearn.metrics import classification_report
    from sklearn.metrics import confusion_matrix as sk_confusion
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 37])
    args = parser.parse_args()
    table = Table(title="confusion matrix + per-class report")
    for col in ("images", "classes", "expt (ms)", "scikit-learn (ms)", "largest difference"):
        table.add_column(col, justify="right")
    g = torch.Generator().manual_seed(0)
    for n in args.images:
        for k in args.classes:
            actual = torch.randint(0, k, (n,), generator=g)
            predicted = torch.where(torch.rand(n, generator=g) < 0.7, actual, torch.randint(0, k, (n,), generator=g))
            names = [str(i) for i in range(k)]

            def ours():
                return class_report(confusion_matrix(actual, predicted, k), names)

            def theirs():
                return (sk_confusion(actual.numpy(), predicted.numpy(), labels=range(k)),
                        classification_report(actual.numpy(), predicted.numpy(), labels=range(k), target_names=names,
                                              output_dict=True, zero_division=0))
            rows, (matrix, report) = ours(), theirs()
            diff = max(abs(row[key] - report[row["class"]][their])
                       for row in rows for key, their in (("precision", "precision"), ("recall", "recall"),
                                                          ("f1", "f1-score"), ("support", "support")))
            diff = max(diff, (confusion_matrix(actual, predicted, k) - torch.tensor(matrix)).abs().max().item())
            table.add_row(f"{n:,}", str(k), f"{best_of(ours) * 1e3:.2f}", f"{best_of(theirs) * 1e3:.2f}", f"{diff:.1e}")
    Console().print(table)
    print(f"({time.strftime('%Y-%m-%d')}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
