"""sqlite-vec stand-in for an app: make a database with a vec0 table, delete
rows, or query it (through apsw, whose SQLite can load extensions).

usage: vec_helper.py make|delete|query|write|check DB
  write: a live writer (WAL), one note and its vector per transaction, until killed
  check: notes, vectors, and how many of notes 1..10 a k=1 query finds
"""
import json
import struct
import sys

import apsw
import sqlite_vec


def connect(path):
    db = apsw.Connection(path)
    db.enable_load_extension(True)
    db.load_extension(sqlite_vec.loadable_path())
    return db


def main():
    action, path = sys.argv[1], sys.argv[2]
    db = connect(path)
    if action == "make":
        db.execute(
            "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);"
            "CREATE VIRTUAL TABLE notes_vec USING vec0(embedding float[4]);"
        )
        with db:
            for i in range(1, 11):
                db.execute("INSERT INTO notes VALUES (?, ?)", (i, f"note {i}"))
                db.execute(
                    "INSERT INTO notes_vec(rowid, embedding) VALUES (?, ?)",
                    (i, struct.pack("4f", i, 0, 0, 1)),
                )
    elif action == "delete":
        with db:
            db.execute("DELETE FROM notes WHERE id > 7")
            db.execute("DELETE FROM notes_vec WHERE rowid > 7")
    elif action == "write":
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);"
            "CREATE VIRTUAL TABLE notes_vec USING vec0(embedding float[4]);"
        )
        i = 1
        while True:
            with db:
                db.execute("INSERT INTO notes VALUES (?, ?)", (i, f"note {i}"))
                db.execute(
                    "INSERT INTO notes_vec(rowid, embedding) VALUES (?, ?)",
                    (i, struct.pack("4f", i, 0, 0, 1)),
                )
            if i == 20:
                print("ready", flush=True)
            i += 1
    elif action == "check":
        found = 0
        for i in range(1, 11):
            row = db.execute(
                "SELECT rowid FROM notes_vec WHERE embedding MATCH ? AND k = 1",
                (struct.pack("4f", i, 0, 0, 1),),
            ).fetchone()
            found += row is not None and row[0] == i
        notes = db.execute("SELECT count(*) FROM notes").fetchone()[0]
        vectors = db.execute("SELECT count(*) FROM notes_vec").fetchone()[0]
        print(json.dumps({"notes": notes, "vectors": vectors, "found": found}))
    elif action == "query":
        rows = list(
            db.execute(
                "SELECT rowid FROM notes_vec WHERE embedding MATCH ? AND k = 10 ORDER BY distance",
                (struct.pack("4f", 10, 0, 0, 1),),
            )
        )
        count = db.execute("SELECT count(*) FROM notes").fetchone()[0]
        print(json.dumps({"notes": count, "nearest": [r[0] for r in rows]}))
    db.close()


if __name__ == "__main__":
    main()
