"""Start-up time of `anomalyforge --help` and of every subcommand's `--help` (prints a table).

    python benchmarks/startup.py [--repeats 3]

Each command runs in a fresh interpreter (`python anomalyforge.py ... --help`), so the time is
what a user waits for: interpreter start, the imports the command's parser needs, argparse. The
best of ``--repeats`` runs is reported (the others include page-cache misses and other load),
with its CPU time (user + system: what the start-up costs on an idle machine, even when the
machine is loaded) and the heavy packages the command imported (none expected: torch, gradio and datasets load
only when a command runs).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEAVY = ("torch", "gradio", "datasets", "pandas", "scipy.stats", "sklearn", "matplotlib", "accelerate")

_PROBE = """
import sys
sys.argv = ["anomalyforge", *{argv!r}]
import anomalyforge
try:
    anomalyforge.main()
except SystemExit:
    pass
sys.stderr.write(" ".join(m for m in {heavy!r} if m in sys.modules))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def help_time(argv: list[str], repeats: int) -> tuple[float, float, str]:
    """Best wall and CPU time over ``repeats`` fresh interpreters, and the heavy modules imported."""
    best, best_cpu, heavy = float("inf"), float("inf"), ""
    code = _PROBE.format(argv=argv, heavy=HEAVY)
    for _ in range(repeats):
        start, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, _children_cpu() - cpu)
        heavy = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return best, best_cpu, heavy


def main() -> None:
    import anomalyforge

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    commands = [[]] + [[name] for name in anomalyforge.SUBCOMMANDS]
    print(f"| command | wall s, best of {args.repeats} | CPU s | heavy modules imported |")
    print("|---|---|---|---|")
    for command in commands:
        seconds, cpu, heavy = help_time([*command, "--help"], args.repeats)
        print(f"| anomalyforge {' '.join(command + ['--help'])} | {seconds:.2f} | {cpu:.2f} | {heavy or 'none'} |")


if __name__ == "__main__":
    main()
