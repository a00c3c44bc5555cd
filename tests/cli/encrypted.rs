//! Encrypted remotes: objects encrypted to age public keys, so that a
//! host with only the public key can push, list, prune and verify (without
//! `--read-data`) but never read a bundle back; reading needs the identity.
//! Against the real S3 server (moto) and `file://` remotes; `age` CLI
//! interoperability where the Debian `age` package is installed.

use std::path::{Path, PathBuf};

use crate::remote::{run_with, s3_remote, server, setup, ENV};
use crate::support::{count, tree, Run, Workspace};

/// `bundle key new --out NAME` in the workspace: the identity's path and public key.
fn new_key(ws: &Workspace, name: &str) -> (PathBuf, String) {
    let run = ws.run(&["key", "new", "--out", name]);
    run.code(0);
    let public = run.stdout.trim().to_string();
    assert!(public.starts_with("age1"), "{}", run.stdout);
    (ws.path(name), public)
}

/// The body of an encrypted remote entry for `url` to `public`.
fn age_remote(url_and_more: &str, public: &str) -> String {
    let plain = url_and_more.replace("encryption = \"none\"\n", "");
    format!("{plain}encryption = \"age\"\nrecipients = [\"{public}\"]\n")
}

/// An encrypted `file://` remote in the workspace, and its folder.
fn age_folder(ws: &Workspace, public: &str) -> PathBuf {
    let dir = ws.path("offsite");
    setup(
        ws,
        &age_remote(&format!("url = \"file://{}\"\n", dir.display()), public),
    );
    dir
}

/// `bundle ARGS` with the identity file `key` given in the environment.
fn with_key(ws: &Workspace, key: &Path, args: &[&str]) -> Run {
    let mut env: Vec<(&str, &str)> = ENV.to_vec();
    let key = key.to_str().unwrap();
    env.push(("BUNDLE_IDENTITY_FILE", key));
    run_with(ws, &env, args)
}

/// The only bundle folder of a `file://` remote.
fn only_bundle(dir: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("index.json").exists())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn an_encrypted_round_trip_through_s3_where_the_pushing_host_has_only_the_public_key() {
    let Some(port) = server() else { return };
    let ws = Workspace::new();
    let (key, public) = new_key(&ws, "offsite.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // Never overwritten.
    let again = ws.run(&["key", "new", "--out", "offsite.key"]);
    again.code(3);
    assert!(
        again.stderr.contains("never overwritten"),
        "{}",
        again.stderr
    );

    setup(&ws, &age_remote(&s3_remote(port, "sealed"), &public));
    ws.create(&[]);
    let jsonl = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        tree(dir)
            .into_iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "jsonl"))
            .collect()
    };
    let before = jsonl(&ws.path("data/kb"));
    // The pushing host: no identity anywhere.
    let push = run_with(&ws, &ENV, &["--json", "push"]);
    push.code(0);
    assert_eq!(push.json()[0]["outcome"], "pushed", "{}", push.stdout);
    let list = run_with(&ws, &ENV, &["--json", "list", "--remote", "offsite"]);
    list.code(0);
    let row = &list.json()[0];
    assert_eq!(row["encrypted"], true, "{}", list.stdout);
    assert!(
        row["bytes"].is_null() && row["stores"].as_array().unwrap().is_empty(),
        "{row}"
    );
    let id = row["id"].as_str().unwrap().to_string();
    run_with(&ws, &ENV, &["verify", "--remote", "offsite", &id]).code(0);
    for args in [
        &["verify", "--remote", "offsite", "latest", "--read-data"][..],
        &["pull", "latest", "--dest", "pulled"][..],
    ] {
        let run = run_with(&ws, &ENV, args);
        run.code(2);
        assert!(
            run.stderr.contains("--identity"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert!(!ws.path("pulled").exists(), "nothing was pulled");

    // An unchanged second bundle: copied on the server, still without a key.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ws.create(&[]);
    let push = run_with(&ws, &ENV, &["--json", "push"]);
    push.code(0);
    let doc = push.json();
    assert_eq!(doc[0]["uploaded"], 0, "{}", push.stdout);
    assert!(doc[0]["copied"].as_u64().unwrap() >= 4, "{}", push.stdout);

    // The identity reads everything back.
    with_key(
        &ws,
        &key,
        &["verify", "--remote", "offsite", "latest", "--read-data"],
    )
    .code(0);
    std::fs::remove_dir_all(ws.path("data")).unwrap();
    let dry = with_key(
        &ws,
        &key,
        &[
            "--json",
            "restore",
            "--remote",
            "offsite",
            &id,
            "--mode",
            "replace",
            "--dry-run",
        ],
    );
    dry.code(0);
    let token = dry.json()["confirm_token"].as_str().unwrap().to_string();
    with_key(
        &ws,
        &key,
        &[
            "restore",
            "--remote",
            "offsite",
            &id,
            "--mode",
            "replace",
            "--confirm-token",
            &token,
        ],
    )
    .code(0);
    assert_eq!(count(&ws.path("data/memory.db"), "notes"), 3);
    assert_eq!(jsonl(&ws.path("data/kb")), before);
    let pull = with_key(&ws, &key, &["--json", "pull", &id, "--dest", "pulled"]);
    pull.code(0);
    ws.run(&["verify", pull.json()["path"].as_str().unwrap()])
        .code(0);
}

#[test]
fn nothing_stored_names_a_store_or_a_path_or_hashes_a_plaintext() {
    let ws = Workspace::new();
    let (_, public) = new_key(&ws, "k");
    let dir = age_folder(&ws, &public);
    let bundle = ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    let manifest = std::fs::read_to_string(bundle.join("bundle-meta.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    // (Long enough not to turn up in random ciphertext by chance.)
    let mut secrets: Vec<String> = vec!["memory".into(), "notes".into(), "vectors".into()];
    for store in doc["stores"].as_array().unwrap() {
        for file in store["files"].as_array().unwrap() {
            secrets.push(file["sha256"].as_str().unwrap().to_string());
            secrets.push(file["path"].as_str().unwrap().to_string());
        }
    }
    let remote = only_bundle(&dir);
    for (path, bytes) in tree(&remote) {
        let text = String::from_utf8_lossy(&bytes);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} shows {secret}",
                path.display()
            );
        }
        if path != Path::new("index.json") {
            assert!(
                bytes.starts_with(b"age-encryption.org/v1\n"),
                "{}",
                path.display()
            );
        }
        let name = path.to_string_lossy();
        assert!(!secrets.iter().any(|s| name.contains(s.as_str())), "{name}");
    }
    let index_text = std::fs::read_to_string(remote.join("index.json")).unwrap();
    assert!(!index_text.contains("\"kb"), "{index_text}");
    let index: serde_json::Value = serde_json::from_str(&index_text).unwrap();
    assert_eq!(index["encryption"], "age");
    let errors: Vec<String> = crate::schema::schema("remote-index.schema.json")
        .iter_errors(&index)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The ledger of what was pushed stays local and private.
    let ledger = ws.path("backups/.remote-offsite.ledger");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ledger).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "ledger mode {mode:o}");
    let schema = crate::schema::schema("remote-ledger.schema.json");
    let lines = std::fs::read_to_string(&ledger).unwrap();
    assert!(lines.lines().count() >= 6, "{lines}");
    for line in lines.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = schema.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line}: {errors:#?}");
    }
}

#[test]
fn a_wrong_identity_a_tampered_or_truncated_object_are_named_and_never_restored() {
    let ws = Workspace::new();
    let (key, public) = new_key(&ws, "k");
    let (other, _) = new_key(&ws, "other");
    let dir = age_folder(&ws, &public);
    ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    let remote = only_bundle(&dir);
    let id = remote.file_name().unwrap().to_str().unwrap().to_string();

    let run = with_key(&ws, &other, &["--json", "pull", &id, "--dest", "pulled"]);
    run.code(1);
    assert_eq!(
        run.json()["error"]["kind"],
        "wrong_identity",
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains(&id), "{}", run.stderr);
    assert!(
        !ws.path("pulled").exists()
            || std::fs::read_dir(ws.path("pulled"))
                .unwrap()
                .all(|e| { e.unwrap().file_name().to_string_lossy().starts_with('.') }),
        "nothing was written"
    );

    // Whoever holds the bucket rewrites an object and its index entry: the
    // hashes agree, the authenticated encryption does not.
    let live = tree(&ws.path("data"));
    let index_path = remote.join("index.json");
    let original = std::fs::read(&index_path).unwrap();
    for (how, damage) in [
        (
            "altered",
            Box::new(|b: &mut Vec<u8>| {
                let at = b.len() - 20;
                b[at] ^= 0x01;
            }) as Box<dyn Fn(&mut Vec<u8>)>,
        ),
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 17)),
        ),
        (
            "with its header rewritten",
            Box::new(|b: &mut Vec<u8>| b[20] = b'9'),
        ),
    ] {
        std::fs::write(&index_path, &original).unwrap();
        let object = remote.join("f/1");
        let saved = std::fs::read(&object).unwrap();
        let mut bytes = saved.clone();
        damage(&mut bytes);
        std::fs::write(&object, &bytes).unwrap();
        let mut index: serde_json::Value = serde_json::from_slice(&original).unwrap();
        for entry in index["objects"].as_array_mut().unwrap() {
            if entry["name"] == "f/1" {
                entry["bytes"] = bytes.len().into();
                entry["sha256"] = hex_sha256(&bytes).into();
            }
        }
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

        let verify = with_key(
            &ws,
            &key,
            &["verify", "--remote", "offsite", &id, "--read-data"],
        );
        verify.code(1);
        assert!(verify.stdout.contains("f/1"), "{how}: {}", verify.stdout);
        let dry = with_key(
            &ws,
            &key,
            &[
                "--json",
                "restore",
                "--remote",
                "offsite",
                &id,
                "--mode",
                "replace",
                "--dry-run",
            ],
        );
        assert_ne!(dry.code, 0, "{how}: {}", dry.stdout);
        assert_eq!(tree(&ws.path("data")), live, "{how}: live data untouched");
        std::fs::write(&object, &saved).unwrap();
    }
}

/// sha256 of `bytes`, hex.
fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_passphrase_protected_identity_opens_with_its_passphrase_only() {
    let ws = Workspace::new();
    let (key, public) = new_key(&ws, "k");
    age_folder(&ws, &public);
    ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    // The identity file itself encrypted with a passphrase, as `age -p` does.
    let plain = std::fs::read(&key).unwrap();
    let encryptor = age::Encryptor::with_user_passphrase("correct horse".to_string().into());
    let mut protected = Vec::new();
    let mut writer = encryptor.wrap_output(&mut protected).unwrap();
    std::io::Write::write_all(&mut writer, &plain).unwrap();
    writer.finish().unwrap();
    std::fs::write(ws.path("protected.key"), &protected).unwrap();
    std::fs::set_permissions(
        ws.path("protected.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let key = ws.path("protected.key");
    let key = key.to_str().unwrap();
    let read = |passphrase: Option<&str>| {
        let mut env = vec![("BUNDLE_IDENTITY_FILE", key)];
        env.extend(passphrase.map(|p| ("BUNDLE_IDENTITY_PASSPHRASE", p)));
        run_with(
            &ws,
            &env,
            &["verify", "--remote", "offsite", "latest", "--read-data"],
        )
    };
    let run = read(None);
    run.code(2);
    assert!(
        run.stderr.contains("BUNDLE_IDENTITY_PASSPHRASE"),
        "{}",
        run.stderr
    );
    let run = read(Some("wrong"));
    run.code(2);
    assert!(run.stderr.contains("wrong passphrase"), "{}", run.stderr);
    let run = read(Some("correct horse"));
    run.code(0);
    // Readable by others: it works, with a warning.
    assert!(
        run.stderr.contains("can be read by other users"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("AGE-SECRET-KEY"), "{}", run.stderr);
}

#[test]
fn encryption_settings_are_checked_and_name_the_entry() {
    let ws = Workspace::new();
    let (_, public) = new_key(&ws, "k");
    std::fs::write(
        ws.path("keys.txt"),
        format!("# team\n{public}\nnot-a-key\n"),
    )
    .unwrap();
    for (body, says) in [
        (
            "url = \"file:///tmp/x\"\nencryption = \"age\"\n".to_string(),
            "needs at least one public key",
        ),
        (
            "url = \"file:///tmp/x\"\nencryption = \"age\"\nrecipients = [\"age1nope\"]\n"
                .to_string(),
            "recipients[0] is not an age public key",
        ),
        (
            "url = \"file:///tmp/x\"\nencryption = \"age\"\nrecipients_file = \"keys.txt\"\n"
                .to_string(),
            "keys.txt line 3 is not an age public key",
        ),
        (
            format!(
                "url = \"file:///tmp/x\"\nencryption = \"none\"\nrecipients = [\"{public}\"]\n"
            ),
            "encryption is \"none\" but recipients are given",
        ),
    ] {
        let ws2 = Workspace::new();
        std::fs::copy(ws.path("keys.txt"), ws2.path("keys.txt")).unwrap();
        setup(&ws2, &body);
        let run = run_with(&ws2, &[], &["list", "--remote", "offsite"]);
        run.code(2);
        assert!(
            run.stderr.contains("remote \"offsite\""),
            "{body}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(says), "{body}: {}", run.stderr);
    }
}

#[test]
fn a_keyless_prune_keeps_the_newest_good_bundle_and_forgets_what_it_deleted() {
    let ws = Workspace::new();
    let (_, public) = new_key(&ws, "k");
    let dir = age_folder(&ws, &public);
    for _ in 0..3 {
        ws.create(&[]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    run_with(&ws, &[], &["push"]).code(0);
    let run = run_with(
        &ws,
        &[],
        &[
            "--json",
            "prune",
            "--remote",
            "offsite",
            "--keep-last",
            "1",
            "--apply",
        ],
    );
    run.code(0);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "{}", run.stdout);
    let ledger = std::fs::read_to_string(ws.path("backups/.remote-offsite.ledger")).unwrap();
    let kept = left[0].file_name().to_string_lossy().into_owned();
    // The next push drops the ledger lines of deleted bundles.
    run_with(&ws, &[], &["push", &kept]).code(0);
    let after = std::fs::read_to_string(ws.path("backups/.remote-offsite.ledger")).unwrap();
    assert!(after.lines().count() < ledger.lines().count());
    assert!(after.lines().all(|l| l.contains(&kept)), "{after}");
}

#[test]
fn an_object_decrypts_with_the_age_cli() {
    let has_age = std::process::Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_age {
        eprintln!("\n!!!!!!!! SKIPPED: no `age` CLI (apt-get install age) for the interoperability test !!!!!!!!\n");
        return;
    }
    let ws = Workspace::new();
    let (key, public) = new_key(&ws, "k");
    let dir = age_folder(&ws, &public);
    let bundle = ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    let out = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(only_bundle(&dir).join("m"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = zstd::stream::decode_all(out.stdout.as_slice()).unwrap();
    assert_eq!(
        plain,
        std::fs::read(bundle.join("bundle-meta.json")).unwrap()
    );
}

/// Points the workspace's remote "offsite" at recipient `public` instead.
fn set_recipient(ws: &Workspace, public: &str) {
    let config = std::fs::read_to_string(ws.path("bundle.toml")).unwrap();
    let start = config.find("recipients = [\"").unwrap() + "recipients = [\"".len();
    let end = start + config[start..].find('"').unwrap();
    ws.write(
        "bundle.toml",
        &format!("{}{public}{}", &config[..start], &config[end..]),
    );
}

#[test]
fn changing_recipients_and_reencrypting_old_bundles() {
    let ws = Workspace::new();
    let (old_key, old_public) = new_key(&ws, "old");
    let (new_key_path, new_public) = new_key(&ws, "new");
    let dir = age_folder(&ws, &old_public);
    ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    let first = only_bundle(&dir)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    // New pushes use the new key at once and never reuse an object
    // encrypted to the old one.
    set_recipient(&ws, &new_public);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ws.create(&[]);
    let push = run_with(&ws, &[], &["--json", "push"]);
    push.code(0);
    assert_eq!(push.json()[0]["copied"], 0, "{}", push.stdout);
    assert!(push.json()[0]["uploaded"].as_u64().unwrap() >= 4);

    // Rewriting needs the identity that reads the old bundles.
    let run = run_with(&ws, &[], &["push", "--reencrypt"]);
    run.code(2);
    assert!(run.stderr.contains("--identity"), "{}", run.stderr);
    let run = with_key(&ws, &old_key, &["--json", "push", "--reencrypt"]);
    run.code(0);
    let doc = run.json();
    let rewritten: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "reencrypted")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rewritten, [first.as_str()], "{}", run.stdout);
    // Only the new generation and the index are left.
    let names: Vec<String> = tree(&dir.join(&first))
        .into_iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "index.json" || n.starts_with("g1/")),
        "{names:?}"
    );
    let wrong = with_key(
        &ws,
        &old_key,
        &[
            "--json",
            "verify",
            "--remote",
            "offsite",
            &first,
            "--read-data",
        ],
    );
    wrong.code(1);
    assert_eq!(
        wrong.json()["error"]["kind"],
        "wrong_identity",
        "{}",
        wrong.stdout
    );
    with_key(
        &ws,
        &new_key_path,
        &["verify", "--remote", "offsite", &first, "--read-data"],
    )
    .code(0);
    let pull = with_key(
        &ws,
        &new_key_path,
        &["--json", "pull", &first, "--dest", "pulled"],
    );
    pull.code(0);
    ws.run(&["verify", pull.json()["path"].as_str().unwrap()])
        .code(0);
    // Nothing left to rewrite.
    let again = with_key(&ws, &new_key_path, &["--json", "push", "--reencrypt"]);
    again.code(0);
    assert_eq!(
        again.json().as_array().unwrap().len(),
        0,
        "{}",
        again.stdout
    );
}

#[test]
fn reencrypt_encrypts_what_was_pushed_in_plaintext() {
    let ws = Workspace::new();
    let (key, public) = new_key(&ws, "k");
    let dir = ws.path("offsite");
    setup(
        &ws,
        &format!(
            "url = \"file://{}\"\nencryption = \"none\"\n",
            dir.display()
        ),
    );
    ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    let config = std::fs::read_to_string(ws.path("bundle.toml")).unwrap();
    ws.write(
        "bundle.toml",
        &config.replace(
            "encryption = \"none\"\n",
            &format!("encryption = \"age\"\nrecipients = [\"{public}\"]\n"),
        ),
    );
    with_key(&ws, &key, &["push", "--reencrypt"]).code(0);
    let bundle = only_bundle(&dir);
    for (path, bytes) in tree(&bundle) {
        if path != Path::new("index.json") {
            assert!(
                bytes.starts_with(b"age-encryption.org/v1\n"),
                "{}",
                path.display()
            );
        }
    }
    let list = run_with(&ws, &[], &["--json", "list", "--remote", "offsite"]);
    assert_eq!(list.json()[0]["encrypted"], true, "{}", list.stdout);
    with_key(
        &ws,
        &key,
        &["verify", "--remote", "offsite", "latest", "--read-data"],
    )
    .code(0);
}

#[test]
fn an_interrupted_reencrypt_leaves_one_whole_bundle_and_the_next_run_cleans_up() {
    let ws = Workspace::new();
    let (old_key, old_public) = new_key(&ws, "old");
    let (new_key_path, new_public) = new_key(&ws, "new");
    let dir = age_folder(&ws, &old_public);
    ws.create(&[]);
    run_with(&ws, &[], &["push"]).code(0);
    let bundle = only_bundle(&dir);
    let id = bundle.file_name().unwrap().to_str().unwrap().to_string();
    let before = tree(&bundle);
    set_recipient(&ws, &new_public);

    // Killed before the new index was written: a half-written generation.
    std::fs::create_dir_all(bundle.join("g1/f")).unwrap();
    std::fs::write(bundle.join("g1/m"), b"half written").unwrap();
    std::fs::write(bundle.join("g1/f/0"), b"half written").unwrap();
    // The old bundle is whole and reads with the old key; verify names the strays.
    let verify = with_key(
        &ws,
        &old_key,
        &["verify", "--remote", "offsite", &id, "--read-data"],
    );
    verify.code(1);
    assert!(verify.stdout.contains("g1/m"), "{}", verify.stdout);
    let pull = with_key(&ws, &old_key, &["--json", "pull", &id, "--dest", "pulled"]);
    pull.code(0);
    // The next run removes them and rewrites the bundle.
    with_key(&ws, &old_key, &["push", "--reencrypt"]).code(0);
    with_key(
        &ws,
        &new_key_path,
        &["verify", "--remote", "offsite", &id, "--read-data"],
    )
    .code(0);

    // Killed after the new index, before the old objects went.
    for (rel, bytes) in &before {
        if rel != Path::new("index.json") {
            std::fs::create_dir_all(bundle.join(rel).parent().unwrap()).unwrap();
            std::fs::write(bundle.join(rel), bytes).unwrap();
        }
    }
    with_key(&ws, &new_key_path, &["push", "--reencrypt"]).code(0);
    let names: Vec<String> = tree(&bundle)
        .into_iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "index.json" || n.starts_with("g1/")),
        "{names:?}"
    );
    with_key(
        &ws,
        &new_key_path,
        &["verify", "--remote", "offsite", &id, "--read-data"],
    )
    .code(0);
}
