//! A writer in another process commits continuously while `create` runs: the
//! copy must be consistent and row counts must match the manifest (parity).

use std::process::{Child, Command, Stdio};

use crate::support::{count, python_with, Workspace};

const WRITER: &str = r#"
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("PRAGMA busy_timeout=30000")
stop = sys.argv[2]
i = 0
while not os.path.exists(stop):
    db.execute("BEGIN IMMEDIATE")
    cur = db.execute("INSERT INTO orders(note) VALUES (?)", (f"order {i}",))
    db.execute("INSERT INTO lines(order_id, qty) VALUES (?, ?)", (cur.lastrowid, i))
    db.execute("COMMIT")
    i += 1
    if i == 50:
        open(sys.argv[1] + ".started", "w").close()
"#;

fn start_writer(ws: &Workspace, python: &std::path::Path) -> Child {
    let child = Command::new(python)
        .args(["-c", WRITER])
        .arg(ws.path("shop.db"))
        .arg(ws.path("stop"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = ws.path("shop.db.started");
    let t = std::time::Instant::now();
    while !started.exists() {
        assert!(t.elapsed().as_secs() < 30, "writer did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}

fn parity_under_a_writer(journal_mode: &str) {
    let Some(python) = python_with("sqlite3") else {
        return;
    };
    let ws = Workspace::new();
    ws.sqlite(
        "shop.db",
        &format!(
            "PRAGMA journal_mode={journal_mode};
             CREATE TABLE orders(id INTEGER PRIMARY KEY, note TEXT);
             CREATE TABLE lines(id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id), qty INTEGER);"
        ),
    );
    let mut writer = start_writer(&ws, &python);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let bundle = ws.create(&["--dest", "b", "--sqlite", "shop=shop.db", "--full-check"]);
        let copy = bundle.join("shop/shop.db");
        let (orders, lines) = (count(&copy, "orders"), count(&copy, "lines"));
        // Every order commits with its line: a consistent snapshot has equal counts.
        assert_eq!(orders, lines, "torn snapshot");
        let m = ws.manifest(&bundle);
        assert_eq!(
            m["stores"][0]["files"][0]["sqlite"]["tables"]["orders"],
            orders
        );
        assert_eq!(
            m["stores"][0]["files"][0]["sqlite"]["check"],
            "integrity_check"
        );
        ws.run(&["verify", bundle.to_str().unwrap()]).code(0);
        seen.push(orders);
    }
    std::fs::write(ws.path("stop"), "").unwrap();
    assert!(
        writer.wait().unwrap().success(),
        "the writer must never fail because of create"
    );
    assert!(seen[0] >= 50, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(count(&ws.path("shop.db"), "orders") >= *seen.last().unwrap());
}

#[test]
fn wal_writer_during_create_keeps_parity() {
    parity_under_a_writer("WAL");
}

#[test]
fn rollback_journal_writer_during_create_keeps_parity() {
    parity_under_a_writer("DELETE");
}
