#!/usr/bin/env python3
"""Two (or more) bundle binaries side by side on N files of 4 KiB.

For each binary, in turn and for each round: a first create, two unchanged
creates, a full verify, list over three bundles, a create after 1% of the
files changed, a replace of the first bundle over the live store (with its
safety snapshot), and a restore --into an empty folder. Prints the wall
time and peak RSS of every run, and writes them to WORK/compare.json.

    python3 bench/compare.py --many-files 50000 --work /mnt/bench/m50000 \\
        /tmp/bundle-before /tmp/bundle-after

The data set is bench/run.py's --many-files set (made once per WORK).
"""
import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_run", HERE / "run.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def bundles(dest):
    return sorted(p for p in dest.iterdir() if not p.name.startswith("."))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+", type=Path)
    ap.add_argument("--many-files", type=int, default=50000, metavar="N")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, required=True)
    args = ap.parse_args()

    work, n = args.work.resolve(), args.many_files
    data, dest, cfg = work / "data", work / "dest", work / "bundle.toml"
    marker = work / f"many-{n}"
    if not marker.exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        bench.generate_many(data, n)
        marker.write_text("")
        # Past the freshness window, so that reuse may trust every source.
        time.sleep(2.5)
    cfg.write_text('destination = "dest"\n[[stores]]\nname = "files"\nkind = "dir"\npath = "data"\n')

    def run(binary, argv, label, out):
        subprocess.run(["sync"], check=True)
        start = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", str(binary), "--config", str(cfg), "--quiet"]
                           + argv, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if p.returncode != 0:
            sys.exit(f"{binary} {' '.join(argv)} failed:\n{p.stderr[-2000:]}")
        rss = int(p.stderr.strip().splitlines()[-1]) / 1024
        out.setdefault(label, []).append([round(wall, 2), round(rss, 1)])

    results = {str(b): {} for b in args.binaries}
    for round_no in range(args.rounds):
        for binary in args.binaries:
            out = results[str(binary)]
            shutil.rmtree(dest, ignore_errors=True)
            run(binary, ["create"], "create (first)", out)
            base = bundles(dest)[0]
            for _ in range(2):
                run(binary, ["create"], "create (unchanged)", out)
                shutil.rmtree(bundles(dest)[-1])
            run(binary, ["verify", str(base)], "verify", out)
            run(binary, ["create"], "untimed", {})
            run(binary, ["create"], "untimed", {})
            run(binary, ["list"], "list (3 bundles)", out)
            bench.change_many(data, round_no + 1)
            time.sleep(2.5)
            run(binary, ["create"], "create (1% changed)", out)
            plan = subprocess.run([str(binary), "--config", str(cfg), "--json", "restore", str(base),
                                   "--mode", "replace", "--dry-run"],
                                  capture_output=True, text=True, check=True)
            token = json.loads(plan.stdout)["confirm_token"]
            run(binary, ["restore", str(base), "--mode", "replace", "--confirm-token", token],
                "restore --mode replace", out)
            into = work / "out"
            shutil.rmtree(into, ignore_errors=True)
            run(binary, ["restore", str(base), "--mode", "replace", "--into", str(into)],
                "restore --into (empty folder)", out)
            shutil.rmtree(into, ignore_errors=True)

    for label in results[str(args.binaries[0])]:
        cells = [f"{b.name}: " + " ".join(f"{t:.2f}s/{m:.0f}MiB" for t, m in results[str(b)][label])
                 for b in args.binaries]
        print(f"{label:30} " + "  |  ".join(cells))
    (work / "compare.json").write_text(json.dumps({"files": n, "results": results}, indent=1))


if __name__ == "__main__":
    main()
