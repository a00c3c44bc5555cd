"""Test helper: make a real LanceDB database, change it, write to it live, or read it.

Usage:
  lance_helper.py make DIR            # tables "notes" (14 rows, 3 versions, a scalar index) and "other"
  lance_helper.py grow DIR            # adds 5 rows to "notes" (a new version)
  lance_helper.py drop DIR TABLE      # drops a table
  lance_helper.py query DIR           # per table: version, rows, ids found by a vector search, as JSON
  lance_helper.py write DIR           # a live writer: adds to "stress" until killed
  lance_helper.py check-stress DIR... # per copy: version, rows, known ids found

Vectors are explicit (no model download). Used by the Rust integration tests.
"""
import json
import sys
import warnings

import lancedb

warnings.filterwarnings("ignore")


def vector(i):
    return [float(i), float(i % 7), 1.0, -float(i % 3)]


def make(path):
    db = lancedb.connect(path)
    t = db.create_table("notes", data=[{"id": i, "vector": vector(i), "text": f"note {i}"} for i in range(10)])
    t.add([{"id": i, "vector": vector(i), "text": f"note {i}"} for i in range(10, 15)])
    t.delete("id = 3")
    t.create_scalar_index("id")
    db.create_table("other", data=[{"id": 1, "vector": vector(1), "text": "other"}])


def grow(path):
    t = lancedb.connect(path).open_table("notes")
    t.add([{"id": i, "vector": vector(i), "text": f"note {i}"} for i in range(100, 105)])


def drop(path, table):
    lancedb.connect(path).drop_table(table)


def query(path):
    db = lancedb.connect(path)
    out = {}
    for name in sorted(db.table_names()):
        t = db.open_table(name)
        hits = t.search(vector(5)).limit(3).to_list()
        out[name] = {"version": t.version, "rows": t.count_rows(), "ids": [h["id"] for h in hits]}
    print(json.dumps(out, sort_keys=True))


def write(path):
    """A live writer: one new version per small batch."""
    db = lancedb.connect(path)
    t = db.create_table("stress", data=[{"id": i, "vector": vector(i), "text": f"w {i}"} for i in range(10)])
    n = 10
    print("ready", flush=True)
    while True:
        t.add([{"id": i, "vector": vector(i), "text": f"w {i}"} for i in range(n, n + 5)])
        n += 5


def check_stress(paths):
    for path in paths:
        t = lancedb.connect(path).open_table("stress")
        found = 0
        for i in range(10):
            hits = t.search().where(f"id = {i}").to_list()
            found += len(hits) == 1 and hits[0]["text"] == f"w {i}"
        print(json.dumps({"path": path, "version": t.version, "rows": t.count_rows(), "found": found}))


if __name__ == "__main__":
    action = sys.argv[1]
    if action == "check-stress":
        check_stress(sys.argv[2:])
    elif action == "drop":
        drop(sys.argv[2], sys.argv[3])
    else:
        {"make": make, "grow": grow, "query": query, "write": write}[action](sys.argv[2])
