"""Test helper: make a real Chroma persist directory, or query one.

Usage:
  chroma_helper.py make DIR    # a collection "notes" with explicit embeddings
  chroma_helper.py mutate DIR  # deletes 40 notes and adds one
  chroma_helper.py query DIR   # prints the nearest neighbours of fixed vectors as JSON
  chroma_helper.py grow DIR    # adds 30 notes (the index is persisted again)
  chroma_helper.py write DIR   # a live writer: adds to "stress" until killed
  chroma_helper.py check-stress DIR...  # per copy: count, and ten known ids found by query

Embeddings are explicit (no model download). Used by the Rust integration tests.
"""
import json
import random
import sys

import chromadb
from chromadb.config import Settings

DIM = 8
COUNT = 120


def vector(i):
    rng = random.Random(i)
    return [rng.uniform(-1.0, 1.0) for _ in range(DIM)]


def client(path):
    return chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False))


def make(path):
    c = client(path)
    col = c.create_collection(
        "notes",
        embedding_function=None,
        configuration={"hnsw": {"batch_size": 10, "sync_threshold": 20}},
    )
    for start in range(0, COUNT, 10):
        ids = [f"note-{i}" for i in range(start, start + 10)]
        col.add(
            ids=ids,
            embeddings=[vector(i) for i in range(start, start + 10)],
            documents=[f"note number {i}" for i in range(start, start + 10)],
            metadatas=[{"n": i} for i in range(start, start + 10)],
        )


def mutate(path):
    col = client(path).get_collection("notes", embedding_function=None)
    col.delete(ids=[f"note-{i}" for i in range(0, 40)])
    col.add(ids=["intruder"], embeddings=[vector(3)], documents=["not in the backup"])


def query(path):
    col = client(path).get_collection("notes", embedding_function=None)
    res = col.query(query_embeddings=[vector(3), vector(77)], n_results=5)
    print(json.dumps({"count": col.count(), "ids": res["ids"], "documents": res["documents"],
                      "distances": [[round(d, 6) for d in row] for row in res["distances"]]}))


def grow(path):
    col = client(path).get_collection("notes", embedding_function=None)
    for start in range(COUNT, COUNT + 30, 10):
        ids = [f"note-{i}" for i in range(start, start + 10)]
        col.add(ids=ids, embeddings=[vector(i) for i in range(start, start + 10)],
                documents=[f"note number {i}" for i in range(start, start + 10)])


def write(path):
    """A live writer: small batches, an index persisted every 10 adds."""
    col = client(path).create_collection(
        "stress",
        embedding_function=None,
        configuration={"hnsw": {"batch_size": 10, "sync_threshold": 10}},
    )
    n = 0
    while True:
        ids = [f"w-{i}" for i in range(n, n + 5)]
        col.add(ids=ids, embeddings=[vector(i) for i in range(n, n + 5)],
                documents=[f"written {i}" for i in range(n, n + 5)])
        n += 5
        if n == 50:
            print("ready", flush=True)


def check_stress(paths):
    known = [f"w-{i}" for i in range(10)]
    for path in paths:
        col = client(path).get_collection("stress", embedding_function=None)
        found = []
        for i, id in enumerate(known):
            res = col.query(query_embeddings=[vector(i)], n_results=1)
            found.append(res["ids"][0][0] == id and res["documents"][0][0] == f"written {i}")
        print(json.dumps({"path": path, "count": col.count(), "found": sum(found)}))


def hold(path):
    """A running app: the client keeps the store open until killed."""
    import time
    col = client(path).get_collection("notes", embedding_function=None)
    col.count()
    print("open", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    if sys.argv[1] == "check-stress":
        check_stress(sys.argv[2:])
    else:
        {"make": make, "mutate": mutate, "query": query, "grow": grow, "write": write,
         "hold": hold}[sys.argv[1]](sys.argv[2])
