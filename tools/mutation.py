"""Mutation testing (`make mutation`, docs/mutation-testing.md): mutmut over the logic modules with
the unit suite, then the score and every mutant the suite did not kill.

mutmut reads [tool.mutmut] in pyproject.toml. It runs in .mutation/, a snapshot of the package, the
tests and the files they read, taken when the run starts: edits made meanwhile do not disturb the
run, and the reported line numbers are those of the snapshot. mutmut copies the snapshot into
.mutation/mutants/ and the tests import the mutated copy from there. The unit tests find
../shared (recorded answers, official OpenAPI documents) through .mutation/shared.

    python tools/mutation.py                      # everything, in a fresh snapshot
    python tools/mutation.py 'airflow_provider_maxwell.watch.*'   # only these mutants (fresh snapshot)
    python tools/mutation.py --keep               # resume an interrupted run in the last snapshot
    python tools/mutation.py --report             # print the last run's report again
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
WORK = PROJECT / ".mutation"
PACKAGE = "airflow_provider_maxwell"
# What the unit tests need from the project root (also listed in [tool.mutmut] also_copy or copied by
# mutmut itself: tests/, pyproject.toml).
SNAPSHOT = (PACKAGE, "tests", "pyproject.toml", "README.md", "docs", "example_dags")
DETECTED = ("killed", "timeout")


def snapshot() -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SNAPSHOT:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, WORK / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, WORK / name)
    # tests/conftest.py looks for the shared data beside the project root; in mutants/ that is here.
    shared = PROJECT.parent / "shared"
    if shared.is_dir():
        (WORK / "shared").symlink_to(shared)
    else:
        print(f"note: {shared} not found; the unit tests that need it skip and kill nothing", flush=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT, capture_output=True, text=True)
    (WORK / "snapshot.json").write_text(
        json.dumps(
            {
                "taken": time.strftime("%Y-%m-%d %H:%M:%S"),
                "commit": head.stdout.strip(),
                "uncommitted_changes": bool(dirty.stdout.strip()),
            }
        )
    )


def run_mutmut(names: list[str], max_children: int) -> int:
    mutmut = Path(sys.executable).parent / "mutmut"
    began = time.monotonic()
    done = subprocess.run([str(mutmut), "run", "--max-children", str(max_children), *names], cwd=WORK)
    minutes = (time.monotonic() - began) / 60
    info = json.loads((WORK / "snapshot.json").read_text())
    info.setdefault("runs", []).append({"minutes": round(minutes, 1), "mutants": len(names) or "all"})
    (WORK / "snapshot.json").write_text(json.dumps(info))
    print(f"\nmutmut run: exit code {done.returncode}, {minutes:.1f} min", flush=True)
    return done.returncode


class Sources:
    """Where a mutant sits in the snapshot's source: the def line of each function and method."""

    def __init__(self) -> None:
        self.def_lines: dict[str, dict[str, int]] = {}

    def def_line(self, path: str, function: str, class_name: str | None) -> int:
        if path not in self.def_lines:
            lines: dict[str, int] = {}
            for node in ast.parse((WORK / path).read_text()).body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines[node.name] = node.lineno
                elif isinstance(node, ast.ClassDef):
                    for child in node.body:
                        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            lines[f"{node.name}.{child.name}"] = child.lineno
            self.def_lines[path] = lines
        return self.def_lines[path][f"{class_name}.{function}" if class_name else function]


def locate(sources: Sources, path: str, key: str) -> tuple[int, str, str]:
    """The file line of a mutant's change, and the changed lines before and after."""
    import libcst as cst
    from mutmut.mutation.diff_apply import read_functions_from_index
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    functions = read_functions_from_index(key, path)
    if functions is None:
        raise RuntimeError(f"mutmut's line index has no {key}")
    original, mutant = (cst.Module([f]).code.strip().split("\n") for f in functions)
    function, class_name = orig_function_and_class_names_from_key(key)
    def_index = next(i for i, line in enumerate(original) if line.lstrip().startswith(("def ", "async def ")))
    before: list[str] = []
    after: list[str] = []
    first = None
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=original, b=mutant, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        first = i1 if first is None else first
        before += [line.strip() for line in original[i1:i2]]
        after += [line.strip() for line in mutant[j1:j2]]
    if first is None:
        return sources.def_line(path, function, class_name), "(no textual change)", ""
    line = sources.def_line(path, function, class_name) + first - def_index
    return line, " / ".join(before) or "(nothing)", " / ".join(after) or "(removed)"


def report() -> int:
    os.chdir(WORK)
    sys.path.insert(0, str(WORK))  # mutmut reads its configuration from the current directory
    from mutmut.stats import status_by_exit_code

    info = json.loads((WORK / "snapshot.json").read_text()) if (WORK / "snapshot.json").exists() else {}
    counts: dict[str, Counter[str]] = {}
    undetected: list[tuple[str, int, str, str, str, str]] = []
    sources = Sources()
    metas = sorted((WORK / "mutants" / PACKAGE).rglob("*.py.meta"))
    for meta in metas:
        path = str(meta.relative_to(WORK / "mutants"))[: -len(".meta")]
        results = json.loads(meta.read_text())["exit_code_by_key"]
        module = counts.setdefault(path, Counter())
        for key, exit_code in results.items():
            status = status_by_exit_code[exit_code]
            if status == "not checked":
                continue
            module[status] += 1
            if status not in DETECTED:
                line, before, after = locate(sources, path, key)
                undetected.append((path, line, status, before, after, key.rpartition(".")[2]))
    counts = {path: c for path, c in counts.items() if c}
    if not counts:
        print("no mutant has a result yet")
        return 1
    total = Counter[str]()
    for c in counts.values():
        total.update(c)

    def score(c: Counter[str]) -> str:
        n = sum(c.values())
        killed = sum(c[s] for s in DETECTED)
        return f"{killed}/{n} ({100 * killed / n:.1f} %)"

    out: list[str] = []
    runs = info.get("runs", [])
    took = f", {sum(r['minutes'] for r in runs):.1f} min in {len(runs)} run(s)" if runs else ""
    dirty = " + uncommitted changes" if info.get("uncommitted_changes") else ""
    out.append(f"mutation score: {score(total)} killed (snapshot of {info.get('commit', '?')}{dirty}{took})")
    if any(r["mutants"] != "all" for r in runs):
        unchecked = sum(1 for m in metas for v in json.loads(m.read_text())["exit_code_by_key"].values() if v is None)
        out.append(f"only named mutants were run; {unchecked} others have no result and are not counted")
    out.append("")
    width = max(len(p) for p in counts)
    statuses = ["killed", "timeout", "survived", "no tests", "suspicious", "segfault", "skipped"]
    statuses += sorted({s for c in counts.values() for s in c} - set(statuses))
    shown = [s for s in statuses if total[s]]
    out.append(f"{'module':{width}}  {'score':>18}  " + "  ".join(f"{s:>9}" for s in shown))
    for path, c in sorted(counts.items()):
        out.append(f"{path:{width}}  {score(c):>18}  " + "  ".join(f"{c[s]:>9}" for s in shown))
    out.append(f"{'all':{width}}  {score(total):>18}  " + "  ".join(f"{total[s]:>9}" for s in shown))
    out.append("")
    out.append(f"not killed ({len(undetected)}): file:line  status  original -> mutated  [mutant]")
    for path, line, status, before, after, name in sorted(undetected):
        out.append(f"{path}:{line}  {status}  {before}  ->  {after}  [{name}]")
    out.append("")
    out.append(
        "A mutant's full name: its module, a dot, its [name], e.g. airflow_provider_maxwell.watch.x_observe__mutmut_3."
    )
    out.append("Its diff: cd .mutation && ../.venv/bin/mutmut show FULL_NAME. Re-test: make mutation MUTANTS=FULL_NAME")
    text = "\n".join(out) + "\n"
    (WORK / "report.txt").write_text(text)
    print("\n" + text + f"(also in {WORK / 'report.txt'})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mutants", nargs="*", help="mutmut names or globs, e.g. 'airflow_provider_maxwell.watch.*'")
    parser.add_argument("--keep", action="store_true", help="reuse the last snapshot and results (resume)")
    parser.add_argument("--report", action="store_true", help="only print the last run's report")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    if not args.report:
        if not (args.keep and WORK.exists()):
            snapshot()
        code = run_mutmut(args.mutants, args.max_children)
        if code != 0:
            return code
    return report()


if __name__ == "__main__":
    sys.exit(main())
