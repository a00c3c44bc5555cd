"""sqlite-vec stand-in for an app: make a database with a vec0 table, delete
rows, or query it (through apsw, whose SQLite can load extensions).

usage: vec_helper.py make|delete|query DB
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
