#!/usr/bin/env python3
"""Benchmark `bundle` against the tools its users would pick instead.

    python3 bench/run.py [--scale-gib 2] [--runs 3] [--work DIR] [--only bundle|offsite] [--many-files N]

Generates a realistic data set (a WAL SQLite memory database with text and
384-byte embedding blobs and an index, JSONL logs in several files, a
vector-store-like folder of binary segments with an embedded SQLite file),
then times, on the same data in the same run, each at least --runs times
(median): `bundle create` (first, unchanged, after 1% of rows and one segment
change), `bundle verify` (full and --quick), `bundle restore --mode replace`
(right after a nightly create, as a user would), the naive shell script
(sqlite3 .backup + cp -r + sha256sum + wc -l + row counts), plain `cp -r` (the
floor of a full copy), and restic / rustic / borg when installed. With
--many-files N the data set is one dir store of N files of 4 KiB instead. Peak RSS comes from
/usr/bin/time. Prints a table with ratios and the issue's targets, and writes
everything as JSON (default WORK/results.json). See docs/performance.md.

Only the Python standard library is used; the sqlite3 CLI, /usr/bin/time and
cargo must be on PATH.
"""

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Whether this run times the many-files set (its targets differ).
MANY_FILES = False
MIB = 1024 * 1024


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data set

WORDS = (
    "memory agent note project garden travel tomato basil train vector index "
    "search query embedding context user assistant tool result summary plan "
    "task deadline meeting draft review commit branch merge release backup"
).split()


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def generate(data, scale_gib, seed=7):
    """Writes the data set under `data`; returns its byte count."""
    rng = random.Random(seed)
    data.mkdir(parents=True)
    rows = int(500_000 * scale_gib)
    log(f"generating {scale_gib} GiB: {rows} SQLite rows, JSONL, segments")

    db = sqlite3.connect(data / "app.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE memories(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
        "text TEXT NOT NULL, created REAL NOT NULL, embedding BLOB NOT NULL)"
    )
    db.execute("CREATE INDEX memories_kind_created ON memories(kind, created)")
    texts = [sentence(rng, 25) for _ in range(2000)]
    batch = []
    for i in range(rows):
        batch.append(
            (
                rng.choice(("fact", "episode", "preference", "task")),
                texts[i % len(texts)] + f" #{i}",
                1.7e9 + i,
                rng.randbytes(384),
            )
        )
        if len(batch) == 20_000:
            db.executemany(
                "INSERT INTO memories(kind, text, created, embedding) VALUES (?,?,?,?)",
                batch,
            )
            db.commit()
            batch.clear()
    if batch:
        db.executemany(
            "INSERT INTO memories(kind, text, created, embedding) VALUES (?,?,?,?)", batch
        )
        db.commit()
    db.close()

    kb = data / "kb"
    kb.mkdir()
    jsonl_bytes = int(250 * MIB * scale_gib)
    for f in range(4):
        with open(kb / f"log-{f}.jsonl", "w") as out:
            written, i = 0, 0
            while written < jsonl_bytes // 4:
                line = json.dumps(
                    {"id": f"{f}-{i}", "role": rng.choice(("user", "assistant")),
                     "text": texts[(i * 7 + f) % len(texts)], "ts": 1.7e9 + i}
                ) + "\n"
                out.write(line)
                written += len(line)
                i += 1

    vectors = data / "chroma"
    segs = vectors / "3f6c1c1e-segment"
    segs.mkdir(parents=True)
    seg_bytes = int(300 * MIB * scale_gib) // 10
    for s in range(10):
        with open(segs / f"data_level{s}.bin", "wb") as out:
            left = seg_bytes
            while left > 0:
                n = min(left, 8 * MIB)
                out.write(os.urandom(n))
                left -= n
    emb = sqlite3.connect(vectors / "chroma.sqlite3")
    emb.execute("CREATE TABLE embeddings(id INTEGER PRIMARY KEY, seg TEXT, doc TEXT)")
    emb.executemany(
        "INSERT INTO embeddings(seg, doc) VALUES (?, ?)",
        ((f"seg{i % 10}", texts[i % len(texts)]) for i in range(int(100_000 * scale_gib))),
    )
    emb.commit()
    emb.close()
    return tree_bytes(data)


def generate_many(data, n, seed=11):
    """N files of 4 KiB (text-like, so they compress) in folders of 100."""
    rng = random.Random(seed)
    words = "agent memory vector backup restore sqlite index note task chunk".split()
    for i in range(n):
        folder = data / f"d{i // 100:05d}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        text = " ".join(rng.choice(words) for _ in range(800)).encode()[:4096]
        (folder / f"f{i:07d}.txt").write_bytes(text.ljust(4096, b"."))
    log(f"generated {n} files of 4 KiB in {data}")


def change_many(data, round_no):
    """Rewrites 1% of the files of the many-files set."""
    files = sorted(data.rglob("*.txt"))
    step = 100
    changed = 0
    for f in files[round_no % step::step]:
        f.write_bytes(f"round {round_no}\n".encode().ljust(4096, b"#"))
        changed += 1
    return changed


def tree_bytes(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def change_one_percent(data, round_no, scale_gib):
    """Updates 1% of the rows and rewrites one segment file."""
    db = sqlite3.connect(data / "app.db")
    rows = int(500_000 * scale_gib)
    step = 100
    db.execute(
        "UPDATE memories SET text = text || ?, embedding = randomblob(384) WHERE id % ? = ?",
        (f" edited {round_no}", step, round_no % step),
    )
    db.commit()
    db.close()
    seg = data / "chroma" / "3f6c1c1e-segment" / "data_level0.bin"
    size = seg.stat().st_size
    with open(seg, "r+b") as out:
        out.write(os.urandom(min(size, 4 * MIB)))
    return rows // step


# ---------------------------------------------------------------- timing

def timed(cmd, cwd=None, env=None, shell=False):
    """Runs `cmd` under /usr/bin/time; returns (wall seconds, peak RSS KiB)."""
    with tempfile.NamedTemporaryFile("r") as t:
        full = ["/usr/bin/time", "-f", "%e %M", "-o", t.name]
        full += ["sh", "-c", cmd] if shell else cmd
        start = time.perf_counter()
        proc = subprocess.run(
            full, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(
                f"command failed ({proc.returncode}): {cmd}\n{proc.stderr.decode()[-2000:]}"
            )
        fields = t.read().split()
        return wall, int(fields[-1])


def measure(name, runs, setup, cmd, **kw):
    """Median of `runs` timings of `cmd()`, each after `setup()` (untimed).

    What a setup wrote or removed is synced before the run: a command whose
    own sync covers the whole file system (`syncfs`, `sync`) would else pay
    for the setup's writeback (deleting the last run's bundle of 50,000
    files, say)."""
    times, rss = [], []
    for i in range(runs):
        if setup:
            setup(i)
            subprocess.run(["sync"], check=True)
        s, k = timed(cmd(i), **kw)
        times.append(s)
        rss.append(k)
        log(f"{name} run {i + 1}: {s:.2f} s, {k / 1024:.1f} MiB")
    return {"name": name, "median_s": statistics.median(times), "runs_s": times,
            "peak_rss_mib": max(rss) / 1024}


def rm(path):
    if Path(path).exists():
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
        shutil.rmtree(path)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale-gib", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bundle-bench")
    ap.add_argument("--bundle", type=Path, help="the bundle binary [default: cargo build --release]")
    ap.add_argument("--only", choices=["bundle", "all", "offsite"], default="all",
                    help="bundle: time only bundle and cp -r (e.g. for the 8 GiB memory check); "
                         "offsite: only push / unchanged push / restore --remote against a local "
                         "S3 server (moto from .venv-s3) and `aws s3 cp --recursive`")
    ap.add_argument("--json", type=Path, help="where to write results [default: WORK/results.json]")
    ap.add_argument("--many-files", type=int, metavar="N",
                    help="instead of the mixed set: one dir store of N files of 4 KiB in folders of 100")
    args = ap.parse_args()
    global MANY_FILES
    MANY_FILES = bool(args.many_files)

    if args.bundle is None:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        args.bundle = ROOT / "target" / "release" / "bundle"
    bundle = str(args.bundle.resolve())
    work = args.work.resolve()
    data = work / "data"
    marker = work / (f"many-{args.many_files}" if args.many_files else f"scale-{args.scale_gib}")
    if not marker.exists():
        rm(work)
        work.mkdir(parents=True)
        if args.many_files:
            generate_many(data, args.many_files)
        else:
            generate(data, args.scale_gib)
        marker.write_text("")
    for junk in ("dest", "cp", "naive", "restic", "borg", "out"):
        rm(work / junk)
    total = tree_bytes(data)
    log(f"data set: {total / MIB:.0f} MiB in {data}")
    # Let every source settle past the freshness window so reuse can trust it.
    time.sleep(2.5)

    config = work / "bundle.toml"
    if args.many_files:
        config.write_text('destination = "dest"\n'
                          '[[stores]]\nname = "files"\nkind = "dir"\npath = "data"\n')
    else:
        config.write_text(
            'destination = "dest"\n'
            '[[stores]]\nname = "memory"\nkind = "sqlite"\npath = "data/app.db"\n'
            '[[stores]]\nname = "kb"\nkind = "jsonl"\npath = "data/kb"\n'
            '[[stores]]\nname = "vectors"\nkind = "dir"\npath = "data/chroma"\n'
        )
    B = [bundle, "--config", str(config), "--quiet"]
    dest = work / "dest"
    results = {}
    runs = args.runs

    def fresh_dest(_):
        rm(dest)

    if args.only == "offsite":
        offsite(results, work, bundle, config, runs, data)
        report(results, total, args, work)
        return

    results["cp -r"] = measure("cp -r", runs, lambda _: rm(work / "cp"),
                               lambda _: ["cp", "-r", str(data), str(work / "cp")])
    results["cp -r + sync"] = measure(
        "cp -r + sync", runs, lambda _: rm(work / "cp"),
        lambda _: f"cp -r '{data}' '{work / 'cp'}' && sync", shell=True)
    rm(work / "cp")

    results["bundle create (first)"] = measure(
        "bundle create (first)", runs, fresh_dest, lambda _: B + ["create"])
    results["bundle create --jobs 1 (first)"] = measure(
        "bundle create --jobs 1 (first)", runs, fresh_dest,
        lambda _: B + ["create", "--jobs", "1"])
    # Keep one bundle as the base of the unchanged runs.
    rm(dest)
    subprocess.run(B + ["create"], check=True)
    base = sorted(p for p in dest.iterdir() if not p.name.startswith("."))[0]

    def drop_newer(_):
        for p in dest.iterdir():
            if not p.name.startswith(".") and p.name != base.name:
                rm(p)

    results["bundle create (unchanged)"] = measure(
        "bundle create (unchanged)", runs, drop_newer, lambda _: B + ["create"])
    drop_newer(0)
    results["bundle verify"] = measure(
        "bundle verify", runs, None, lambda _: B + ["verify", str(base)])
    results["bundle verify --quick"] = measure(
        "bundle verify --quick", runs, None, lambda _: B + ["verify", "--quick", str(base)])

    changed_rows = {}

    def mutate(i):
        if args.many_files:
            changed_rows[i] = change_many(data, i + 1)
        else:
            changed_rows[i] = change_one_percent(data, i + 1, args.scale_gib)
        time.sleep(2.5)

    results["bundle create (1% changed)"] = measure(
        "bundle create (1% changed)", runs, mutate, lambda _: B + ["create"])

    def nightly_then_token(i):
        # Every run restores over live stores that changed since the bundle
        # (else the runs after the first find nothing to change).
        mutate(runs + i)
        subprocess.run(B + ["create"], check=True)
        # The nightly create's writeback is not the restore's to pay.
        subprocess.run(["sync"], check=True)
        newest = sorted(p for p in dest.iterdir() if not p.name.startswith("."))[-1]
        plan = subprocess.run(
            [bundle, "--config", str(config), "--json", "restore", str(base),
             "--mode", "replace", "--dry-run"], check=True, capture_output=True)
        nightly_then_token.token = json.loads(plan.stdout)["confirm_token"]
        del newest

    results["bundle restore --mode replace"] = measure(
        "bundle restore --mode replace", runs, nightly_then_token,
        lambda _: B + ["restore", str(base), "--mode", "replace",
                       "--confirm-token", nightly_then_token.token])

    def token_only(i):
        mutate(2 * runs + i)
        plan = subprocess.run(
            [bundle, "--config", str(config), "--json", "restore", str(base),
             "--mode", "replace", "--dry-run"], check=True, capture_output=True)
        token_only.token = json.loads(plan.stdout)["confirm_token"]

    results["bundle restore --mode replace --no-safety-snapshot"] = measure(
        "bundle restore --mode replace --no-safety-snapshot", runs, token_only,
        lambda _: B + ["restore", str(base), "--mode", "replace", "--no-safety-snapshot",
                       "--confirm-token", token_only.token])

    # Every byte written: into an empty folder, as restic restores.
    out = work / "out"
    results["bundle restore --into (empty folder)"] = measure(
        "bundle restore --into (empty folder)", runs, lambda _: rm(out),
        lambda _: B + ["restore", str(base), "--mode", "replace", "--into", str(out)])
    rm(out)

    if args.only == "all" and args.many_files:
        peers(results, work, data, runs)
    elif args.only == "all":
        naive_out = work / "naive"
        naive = (
            f"set -e; out='{naive_out}'; mkdir -p \"$out\"; cd '{data}';"
            " sqlite3 app.db \".backup '$out/app.db'\";"
            " cp -r kb \"$out/kb\";"
            " mkdir -p \"$out/chroma\"; cp -r chroma/3f6c1c1e-segment \"$out/chroma/\";"
            " sqlite3 chroma/chroma.sqlite3 \".backup '$out/chroma/chroma.sqlite3'\";"
            " cd \"$out\"; find . -type f ! -name SHA256SUMS -print0 | sort -z |"
            " xargs -0 sha256sum > SHA256SUMS;"
            " wc -l kb/*.jsonl > LINES;"
            " sqlite3 app.db 'PRAGMA quick_check; SELECT count(*) FROM memories' > COUNTS;"
            " sqlite3 chroma/chroma.sqlite3 'SELECT count(*) FROM embeddings' >> COUNTS; sync"
        )
        results["naive script"] = measure("naive script", runs, lambda _: rm(naive_out),
                                          lambda _: naive, shell=True)
        rm(naive_out)
        peers(results, work, data, runs)

    report(results, total, args, work)


def offsite(results, work, bundle, config, runs, data):
    """push (first), push after an unchanged create, restore --remote, to a
    local S3 server, plain and encrypted, against `aws s3 cp --recursive` of
    the bundle folder and restic's backup / unchanged backup / restore to the
    same server."""
    import socket
    s3_python = ROOT / ".venv-s3" / "bin" / "python"
    server = subprocess.Popen([str(s3_python), str(ROOT / "tests/support/s3_server.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    port = int(server.stdout.readline())
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_DEFAULT_REGION="us-east-1")

    def request(line):
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(f"{line} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n".encode())
            c.recv(4096)

    def bucket(name):
        # The server keeps objects in memory: each measured run starts empty.
        request("POST /moto-api/reset")
        request(f"PUT /{name}")

    base_config = config.read_text()
    counter = iter(range(1000))

    def fresh_remote(_):
        name = f"bench{next(counter)}"
        bucket(name)
        config.write_text(base_config + f'[[remotes]]\nname = "s3"\nurl = "s3://{name}/b"\n'
                          f'endpoint = "http://127.0.0.1:{port}"\nencryption = "none"\n')

    dest = work / "dest"
    rm(dest)
    subprocess.run([bundle, "--config", str(config), "--quiet", "create"], check=True)
    folder = sorted(p for p in dest.iterdir() if not p.name.startswith("."))[0]
    B = [bundle, "--config", str(config), "--quiet"]
    results["aws s3 cp --recursive"] = measure(
        "aws s3 cp --recursive", runs, fresh_remote,
        lambda i: ["aws", "--endpoint-url", f"http://127.0.0.1:{port}", "s3", "cp",
                   "--recursive", "--quiet", str(folder), f"s3://bench{i}/floor"], env=env)
    results["bundle push (first)"] = measure(
        "bundle push (first)", runs, fresh_remote, lambda _: B + ["push"], env=env)
    time.sleep(2.5)
    subprocess.run(B + ["create"], check=True, env=env)
    results["bundle push (after unchanged create)"] = measure(
        "bundle push (after unchanged create)", 1, None, lambda _: B + ["push"], env=env)
    listed = subprocess.run([bundle, "--config", str(config), "--json", "list", "--remote", "s3"],
                            check=True, capture_output=True, env=env)
    rows = json.loads(listed.stdout)
    results["remote bytes / local bytes"] = {
        "name": "remote bytes / local bytes", "median_s": 0, "runs_s": [], "peak_rss_mib": 0,
        "ratio": rows[0]["stored_bytes"] / max(rows[0]["bytes"], 1)}
    log(f"remote stores {rows[0]['stored_bytes'] / MIB:.0f} MiB for "
        f"{rows[0]['bytes'] / MIB:.0f} MiB of bundle")

    def token(_):
        plan = subprocess.run(B[:-1] + ["--json", "restore", "--remote", "s3", rows[0]["id"],
                                        "--mode", "replace", "--dry-run"],
                              check=True, capture_output=True, env=env)
        token.value = json.loads(plan.stdout)["confirm_token"]

    results["bundle restore --remote (replace)"] = measure(
        "bundle restore --remote (replace)", runs, token,
        lambda _: B + ["restore", "--remote", "s3", rows[0]["id"], "--mode", "replace",
                       "--no-safety-snapshot", "--confirm-token", token.value], env=env)
    encrypted(results, work, bundle, config, runs, env, bucket, base_config, port,
              folder.name, rows[0]["id"])
    restic_s3(results, work, runs, env, bucket, port, data)
    server.stdin.close()
    server.wait()
    config.write_text(base_config)


def encrypted(results, work, bundle, config, runs, env, bucket, base_config, port, first, rid):
    """The first push and the restore again, to a remote encrypted to an age key."""
    key = work / "offsite.key"
    key.unlink(missing_ok=True)
    public = subprocess.run([bundle, "key", "new", "--out", str(key)], check=True,
                            capture_output=True, text=True).stdout.strip()
    counter = iter(range(1000))

    def fresh_age_remote(_):
        name = f"age{next(counter)}"
        bucket(name)
        config.write_text(base_config + f'[[remotes]]\nname = "s3"\nurl = "s3://{name}/b"\n'
                          f'endpoint = "http://127.0.0.1:{port}"\nencryption = "age"\n'
                          f'recipients = ["{public}"]\n')

    B = [bundle, "--config", str(config), "--quiet"]
    results["bundle push (first, encrypted)"] = measure(
        "bundle push (first, encrypted)", runs, fresh_age_remote,
        lambda _: B + ["push", first], env=env)
    envk = dict(env, BUNDLE_IDENTITY_FILE=str(key))

    def token(_):
        plan = subprocess.run(B[:-1] + ["--json", "restore", "--remote", "s3", rid,
                                        "--mode", "replace", "--dry-run"],
                              check=True, capture_output=True, env=envk)
        token.value = json.loads(plan.stdout)["confirm_token"]

    results["bundle restore --remote (replace, encrypted)"] = measure(
        "bundle restore --remote (replace, encrypted)", runs, token,
        lambda _: B + ["restore", "--remote", "s3", rid, "--mode", "replace",
                       "--no-safety-snapshot", "--confirm-token", token.value], env=envk)
    key.unlink(missing_ok=True)


def restic_s3(results, work, runs, env, bucket, port, data):
    """restic to the same S3 server: backup, unchanged backup, restore."""
    if not shutil.which("restic"):
        log("restic not installed: its S3 rows skipped (apt-get install restic)")
        return
    renv = dict(env, RESTIC_PASSWORD="bench")
    counter = iter(range(1000))
    out = work / "out"

    def repo(_):
        name = f"restic{next(counter)}"
        bucket(name)
        repo.url = f"s3:http://127.0.0.1:{port}/{name}"
        subprocess.run(["restic", "init", "-q", "-r", repo.url], env=renv, check=True)

    r = lambda: ["restic", "-q", "-r", repo.url]
    results["restic backup to S3 (first)"] = measure(
        "restic backup to S3 (first)", runs, repo, lambda _: r() + ["backup", str(data)], env=renv)
    results["restic backup to S3 (unchanged)"] = measure(
        "restic backup to S3 (unchanged)", runs, None, lambda _: r() + ["backup", str(data)],
        env=renv)
    results["restic restore from S3"] = measure(
        "restic restore from S3", runs, lambda _: rm(out),
        lambda _: r() + ["restore", "latest", "--target", str(out)], env=renv)
    rm(out)


def peers(results, work, data, runs):
    env = dict(os.environ, RESTIC_PASSWORD="bench", BORG_PASSPHRASE="",
               BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
               BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
    out = work / "out"
    if shutil.which("restic"):
        repo = work / "restic"

        def init(_):
            rm(repo)
            subprocess.run(["restic", "init", "-q", "-r", str(repo)], env=env, check=True)

        r = ["restic", "-q", "-r", str(repo)]
        results["restic backup (first)"] = measure(
            "restic backup (first)", runs, init, lambda _: r + ["backup", str(data)], env=env)
        results["restic backup (unchanged)"] = measure(
            "restic backup (unchanged)", runs, None, lambda _: r + ["backup", str(data)], env=env)
        results["restic check --read-data"] = measure(
            "restic check --read-data", runs, None, lambda _: r + ["check", "--read-data"], env=env)
        results["restic restore"] = measure(
            "restic restore", runs, lambda _: rm(out),
            lambda _: r + ["restore", "latest", "--target", str(out)], env=env)
        rm(out)
        rm(repo)
    else:
        log("restic not installed: skipped (apt-get install restic)")
    if shutil.which("rustic"):
        repo = work / "rustic"
        renv = dict(env, RUSTIC_PASSWORD="bench")

        def init_rustic(_):
            rm(repo)
            subprocess.run(["rustic", "-r", str(repo), "init"], env=renv, check=True,
                           capture_output=True)

        r = ["rustic", "-r", str(repo)]
        results["rustic backup (first)"] = measure(
            "rustic backup (first)", runs, init_rustic, lambda _: r + ["backup", str(data)],
            env=renv)
        results["rustic backup (unchanged)"] = measure(
            "rustic backup (unchanged)", runs, None, lambda _: r + ["backup", str(data)], env=renv)
        results["rustic check --read-data"] = measure(
            "rustic check --read-data", runs, None, lambda _: r + ["check", "--read-data"],
            env=renv)
        results["rustic restore"] = measure(
            "rustic restore", runs, lambda _: rm(out),
            lambda _: r + ["restore", "latest", str(out)], env=renv)
        rm(out)
        rm(repo)
    else:
        log("rustic not installed: skipped (cargo install rustic-rs)")
    if shutil.which("borg"):
        repo = work / "borg"

        def init(_):
            rm(repo)
            subprocess.run(["borg", "init", "-e", "none", str(repo)], env=env, check=True)

        counter = iter(range(10_000))
        results["borg create (first)"] = measure(
            "borg create (first)", runs, init,
            lambda _: ["borg", "create", f"{repo}::a{next(counter)}", str(data)], env=env)
        results["borg create (unchanged)"] = measure(
            "borg create (unchanged)", runs, None,
            lambda _: ["borg", "create", f"{repo}::a{next(counter)}", str(data)], env=env)
        results["borg check --verify-data"] = measure(
            "borg check --verify-data", runs, None,
            lambda _: ["borg", "check", "--verify-data", str(repo)], env=env)

        def clean_out(_):
            rm(out)
            out.mkdir()

        last = subprocess.run(["borg", "list", "--short", "--last", "1", str(repo)], env=env,
                              check=True, capture_output=True, text=True).stdout.strip()
        results["borg extract"] = measure(
            "borg extract", runs, clean_out,
            lambda _: ["borg", "extract", f"{repo}::{last}"], cwd=out, env=env)
        rm(out)
        rm(repo)
    else:
        log("borg not installed: skipped (apt-get install borgbackup)")


def report(results, total, args, work):
    def t(name):
        return results[name]["median_s"] if name in results else None

    rows = []
    for name, r in results.items():
        rows.append({**r, "mib_per_s": total / MIB / r["median_s"] if r["median_s"] else None,
                     "x_cp": r["median_s"] / t("cp -r") if t("cp -r") else None})
    targets = []

    def target(text, value, limit):
        if value is None or limit is None:
            targets.append({"target": text, "value": value, "limit": limit, "met": None})
        else:
            targets.append({"target": text, "value": round(value, 3), "limit": round(limit, 3),
                            "met": value <= limit})

    first, cp = t("bundle create (first)"), t("cp -r")
    if cp is None:
        offsite_targets(t, target, results)
    else:
        local_targets(t, target, first, cp)
    peak = max(r["peak_rss_mib"] for n, r in results.items() if n.startswith("bundle"))
    size = f"{args.many_files} files" if args.many_files else f"{args.scale_gib} GiB"
    target(f"bundle peak RSS <= 64 MiB at {size}", peak, 64)
    finish_report(results, rows, targets, total, args, work)


def local_targets(t, target, first, cp):
    """The local targets (docs/performance.md)."""
    target("first create <= 1.2 x cp -r", first, 1.2 * cp)
    target("first create < restic backup (first)", first, t("restic backup (first)"))
    target("first create < borg create (first)", first, t("borg create (first)"))
    target("unchanged create <= 0.1 x first create", t("bundle create (unchanged)"), 0.1 * first)
    target("unchanged create <= borg create (unchanged)", t("bundle create (unchanged)"),
           t("borg create (unchanged)"))
    target("verify <= restic check --read-data", t("bundle verify"), t("restic check --read-data"))
    rc = t("restic check --read-data")
    target("verify --quick <= 0.5 x restic check --read-data", t("bundle verify --quick"),
           0.5 * rc if rc else None)
    target("restore replace <= 1.2 x cp -r", t("bundle restore --mode replace"), 1.2 * cp)
    for op, ours in [("backup (first)", "bundle create (first)"),
                     ("backup (unchanged)", "bundle create (unchanged)"),
                     ("check --read-data", "bundle verify"),
                     ("restore", "bundle restore --mode replace")]:
        target(f"{ours} < rustic {op}", t(ours), t(f"rustic {op}"))
    # The same job as the peers' restores: every file written into an empty folder.
    target("bundle restore --into (empty folder) < rustic restore",
           t("bundle restore --into (empty folder)"), t("rustic restore"))
    rr = t("restic restore")
    target("restore replace <= 0.5 x restic restore", t("bundle restore --mode replace"),
           0.5 * rr if rr else None)
    target("restore --into <= 0.5 x restic restore", t("bundle restore --into (empty folder)"),
           0.5 * rr if rr else None)
    # The speed issue's targets, against the durable copy.
    cps = t("cp -r + sync")
    scaled = lambda f, v: f * v if v else None
    unchanged = t("bundle create (unchanged)")
    restore = t("bundle restore --mode replace")
    if MANY_FILES:
        target("many files: first create <= 1.5 x cp -r + sync", first, scaled(1.5, cps))
        target("many files: first create <= 0.7 x restic backup (first)", first,
               scaled(0.7, t("restic backup (first)")))
        target("many files: unchanged create <= 0.5 s", unchanged, 0.5)
        target("many files: unchanged create <= 0.2 x restic backup (unchanged)", unchanged,
               scaled(0.2, t("restic backup (unchanged)")))
        target("many files: restore after files changed <= restic restore", restore, rr)
    else:
        target("restore replace <= 1.3 x cp -r + sync", restore, scaled(1.3, cps))
        target("first create <= 1.2 x cp -r + sync", first, scaled(1.2, cps))
        target("unchanged create <= 0.1 s", unchanged, 0.1)


def finish_report(results, rows, targets, total, args, work):
    """Writes the JSON and prints the table."""
    machine = {
        "cpus": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), platform.processor()),
        "sha_ni": "sha_ni" in open("/proc/cpuinfo").read(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "restic": tool_version(["restic", "version"]),
        "borg": tool_version(["borg", "--version"]),
        "rustic": tool_version(["rustic", "--version"]),
        "sqlite3": tool_version(["sqlite3", "--version"]),
    }
    doc = {"data_bytes": total, "scale_gib": args.scale_gib, "runs": args.runs,
           "machine": machine, "results": rows, "targets": targets}
    out = args.json or work / "results.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")

    print(f"\ndata set: {total / MIB:.0f} MiB; {args.runs} runs each, median; warm page cache\n")
    print(f"{'operation':<52} {'median s':>9} {'MiB/s':>8} {'x cp -r':>8} {'peak RSS':>10}")
    for r in rows:
        print(f"{r['name']:<52} {r['median_s']:>9.2f} {r['mib_per_s'] or 0:>8.0f} "
              f"{r['x_cp'] or 0:>8.2f} {r['peak_rss_mib']:>7.1f} MiB")
    print("\ntargets:")
    for tg in targets:
        mark = {True: "met", False: "MISSED", None: "n/a (not measured)"}[tg["met"]]
        print(f"  {mark:<8} {tg['target']}: {tg['value']} vs {tg['limit']}")
    print(f"\nresults written to {out}")


def offsite_targets(t, target, results):
    """The offsite and encryption issues' targets."""
    floor = t("aws s3 cp --recursive")
    target("first push <= 1.2 x aws s3 cp --recursive", t("bundle push (first)"),
           1.2 * floor if floor else None)
    restic = t("restic backup to S3 (first)")
    target("first push <= 0.7 x restic's first backup to S3", t("bundle push (first)"),
           0.7 * restic if restic else None)
    plain = t("bundle push (first)")
    target("encrypted first push <= 1.1 x the plain one", t("bundle push (first, encrypted)"),
           1.1 * plain if plain else None)
    rss = results.get("bundle push (first)", {}).get("peak_rss_mib")
    enc_rss = results.get("bundle push (first, encrypted)", {}).get("peak_rss_mib")
    target("encrypted push peak RSS <= plain push peak RSS + 4 MiB", enc_rss,
           rss + 4 if rss else None)
    target("unchanged push <= 1 s", t("bundle push (after unchanged create)"), 1.0)
    ratio = results.get("remote bytes / local bytes", {}).get("ratio")
    target("remote bytes <= 0.6 x local bundle bytes", ratio, 0.6)


def tool_version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return None


if __name__ == "__main__":
    main()
