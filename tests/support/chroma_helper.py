"""Test helper: make a real Chroma persist directory, or query one.

Usage:
  chroma_helper.py make DIR    # a collection "notes" with explicit embeddings
  chroma_helper.py mutate DIR  # deletes 40 notes and adds one
  chroma_helper.py query DIR   # prints the nearest neighbours of fixed vectors as JSON

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


def hold(path):
    """A running app: the client keeps the store open until killed."""
    import time
    col = client(path).get_collection("notes", embedding_function=None)
    col.count()
    print("open", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    {"make": make, "mutate": mutate, "query": query, "hold": hold}[sys.argv[1]](sys.argv[2])
