//! Test fixtures: a temp workspace that builds stores from text, and a command
//! helper that runs the real binary with a cleared environment.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::cargo::cargo_bin;
use rusqlite::Connection;
use serde_json::Value;

/// A temp folder holding stores and a destination.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// What a finished command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Run {
        assert_eq!(
            self.code, want,
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a text file, creating parent folders.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Creates an SQLite database by running `sql`.
    pub fn sqlite(&self, rel: &str, sql: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        path
    }

    /// The `bundle` binary run in this workspace with a cleared environment.
    pub fn cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(cargo_bin!("bundle"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(self.root())
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Runs `bundle ARGS` and collects the outcome.
    pub fn run(&self, args: &[&str]) -> Run {
        self.cmd().args(args).output().expect("run bundle").into()
    }

    /// `bundle create --json ARGS`, asserting success; returns the bundle folder.
    pub fn create(&self, args: &[&str]) -> PathBuf {
        let mut all = vec!["--json", "create"];
        all.extend_from_slice(args);
        let run = self.run(&all);
        run.code(0);
        PathBuf::from(run.json()["path"].as_str().expect("path in output"))
    }

    /// `bundle restore BUNDLE --mode replace --dry-run EXTRA`: the plan's confirm token.
    pub fn replace_token(&self, bundle: &Path, extra: &[&str]) -> String {
        let mut args = vec![
            "--json",
            "restore",
            bundle.to_str().unwrap(),
            "--mode",
            "replace",
            "--dry-run",
        ];
        args.extend_from_slice(extra);
        let run = self.run(&args);
        run.code(0);
        run.json()["confirm_token"].as_str().unwrap().to_string()
    }

    /// A confirmed `bundle restore BUNDLE --mode replace EXTRA`, asserting success.
    pub fn replace(&self, bundle: &Path, extra: &[&str]) -> Value {
        let token = self.replace_token(bundle, extra);
        let mut args = vec![
            "--json",
            "restore",
            bundle.to_str().unwrap(),
            "--mode",
            "replace",
            "--confirm-token",
            &token,
        ];
        args.extend_from_slice(extra);
        let run = self.run(&args);
        run.code(0);
        run.json()
    }

    /// The manifest of a bundle.
    pub fn manifest(&self, bundle: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(bundle.join("bundle-meta.json")).unwrap()).unwrap()
    }
}

/// A small demo app: an SQLite db, a JSONL folder and a directory store.
pub fn demo_stores(ws: &Workspace) {
    ws.sqlite(
        "data/memory.db",
        "PRAGMA journal_mode=WAL;
         CREATE TABLE projects(id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE notes(id INTEGER PRIMARY KEY, project_id INTEGER REFERENCES projects(id), body TEXT);
         CREATE VIRTUAL TABLE notes_fts USING fts5(body);
         INSERT INTO projects VALUES (1, 'garden'), (2, 'travel');
         INSERT INTO notes(project_id, body) VALUES (1, 'tomatoes'), (1, 'basil'), (2, 'trains');
         INSERT INTO notes_fts(body) SELECT body FROM notes;",
    );
    ws.write(
        "data/kb/2026/a.jsonl",
        "{\"id\":1,\"t\":\"x\"}\n{\"id\":2,\"t\":\"y\"}\n",
    );
    ws.write("data/kb/b.jsonl", "{\"id\":3}\n");
    ws.write("data/kb/README.txt", "not a jsonl file\n");
    ws.write(
        "data/vectors/seg-1/data_level0.bin",
        "binary-ish segment bytes",
    );
    ws.sqlite(
        "data/vectors/chroma.sqlite3",
        "CREATE TABLE embeddings(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO embeddings(v) VALUES (x'0102');",
    );
    ws.write("bundle.toml", DEMO_CONFIG);
}

/// The config of the demo stores: `data/memory.db`, `data/kb`, `data/vectors`.
pub const DEMO_CONFIG: &str = "destination = \"backups\"\n\
     [[stores]]\nname = \"memory\"\nkind = \"sqlite\"\npath = \"data/memory.db\"\n\
     [[stores]]\nname = \"kb\"\nkind = \"jsonl\"\npath = \"data/kb\"\nkey = \"id\"\n\
     [[stores]]\nname = \"vectors\"\nkind = \"dir\"\npath = \"data/vectors\"\n";

/// Copies the tree `from` to `to` (replacing `to`), leaving every file writable.
pub fn copy_tree(from: &Path, to: &Path) {
    if to.exists() {
        make_writable(to);
        std::fs::remove_dir_all(to).unwrap();
    }
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    make_writable(to);
}

/// The manifest's record of `path` in store `store`.
pub fn file_record<'a>(manifest: &'a Value, path: &str) -> &'a Value {
    manifest["stores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["files"].as_array().unwrap())
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in manifest"))
}

/// Makes every file under `root` writable again (bundle files are read-only).
pub fn make_writable(root: &Path) {
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let mut perms = entry.metadata().unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(entry.path(), perms).unwrap();
        }
    }
}

/// Row count of `table` in the database at `path`.
pub fn count(path: &Path, table: &str) -> i64 {
    Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })
        .unwrap()
}

/// A Python interpreter that can import `module`, or `None` (with a loud
/// message) when there is none; panics instead when `BUNDLE_REQUIRE_<MODULE>`
/// is set, as `.ci/run` does.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BUNDLE_TEST_PYTHON").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    for python in candidates.into_iter().flatten() {
        let ok = std::process::Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(python);
        }
    }
    let var = format!("BUNDLE_REQUIRE_{}", module.to_ascii_uppercase());
    if std::env::var_os(&var).is_some() {
        panic!("{var} is set but no Python can import {module}; set BUNDLE_TEST_PYTHON");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: no Python with `{module}` (pip install {module}, or set BUNDLE_TEST_PYTHON) !!!!!!!!\n"
    );
    None
}

/// Rewrites a bundle's manifest with `edit`, laid out as this tool writes
/// one, and fixes its checksum file.
pub fn forge(bundle: &Path, edit: impl FnOnce(&mut Value)) {
    forge_laid_out(bundle, Layout::Tool, edit)
}

/// How a forged manifest is laid out: as this tool writes one (each file
/// record on a line of its own, read line by line), or indented in full
/// (parsed whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Tool,
    Pretty,
}

/// [`forge`], with the manifest written in `layout`.
pub fn forge_laid_out(bundle: &Path, layout: Layout, edit: impl FnOnce(&mut Value)) {
    use sha2::{Digest, Sha256};
    make_writable(bundle);
    let path = bundle.join("bundle-meta.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    let mut bytes = match layout {
        Layout::Pretty => serde_json::to_vec_pretty(&manifest).unwrap(),
        Layout::Tool => {
            let mut out = Vec::new();
            bundle::json_layout::write_outlined(
                &mut out,
                &manifest,
                bundle::manifest::RECORD_DEPTH,
            )
            .unwrap();
            out
        }
    };
    bytes.push(b'\n');
    std::fs::write(&path, &bytes).unwrap();
    let sum = format!(
        "{}  bundle-meta.json\n",
        hex::encode(Sha256::digest(&bytes))
    );
    std::fs::write(bundle.join("bundle-meta.json.sha256"), sum).unwrap();
}

/// The entry of store `name` in a manifest or a `--json` report (its
/// `stores` array).
pub fn store_entry<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no store \"{name}\" in {doc}"))
}

/// Rewrites `path` with `bytes` and puts its mtime back, as `cp -p`,
/// `rsync -t` or a careless tool leaves a file (only its ctime moves).
pub fn rewrite_keeping_mtime(path: &Path, bytes: &[u8]) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

/// The record of store `name` in a manifest, to edit.
pub fn store<'a>(m: &'a mut Value, name: &str) -> &'a mut Value {
    m["stores"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["name"] == name)
        .unwrap()
}

/// Spawns `cmd` (a helper that prints `line` once it is under way, such as
/// a live writer) and waits for that line.
pub fn spawn_until(cmd: &mut std::process::Command, line: &str) -> std::process::Child {
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut got = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut got,
    )
    .unwrap();
    assert_eq!(got.trim(), line, "the helper did not start");
    child
}

/// Every file under `dir` (relative to it) with its bytes, sorted.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}
