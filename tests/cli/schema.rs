//! The JSON Schemas in `schema/` accept what we write and reject what we don't.

use std::path::Path;

use serde_json::Value;

use crate::support::{demo_stores, Workspace};

/// The validator of schema file `name` in `schema/`.
pub fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(name);
    let value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::validator_for(&value).unwrap()
}

#[test]
fn real_manifests_validate_against_the_schema() {
    let ws = Workspace::new();
    demo_stores(&ws);
    let bundle = ws.create(&["--dir", "absent=nowhere", "--label", "x"]);
    let manifest = ws.manifest(&bundle);
    let validator = schema("bundle-meta.schema.json");
    let errors: Vec<String> = validator
        .iter_errors(&manifest)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let mut bad = manifest.clone();
    bad["stores"][1]["files"][0]["sha256"] = Value::from("not-hex");
    assert!(!validator.is_valid(&bad));
    assert_eq!(manifest["stores"][1]["name"], "kb");
    let mut bad = manifest.clone();
    bad["format_version"] = Value::from(2);
    assert!(!validator.is_valid(&bad));
}

#[test]
fn the_demo_config_validates_against_the_config_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("fixtures/demo/bundle.toml")).unwrap();
    let config: Value = toml::from_str(&text).unwrap();
    let validator = schema("bundle.toml.schema.json");
    assert!(validator.is_valid(&config));
    assert!(config["retention"]["keep_daily"].is_u64());
    let bad: Value =
        toml::from_str("[[stores]]\nname = \"A\"\nkind = \"tape\"\npath = \"x\"").unwrap();
    assert!(!validator.is_valid(&bad));
    let hooks: Value = toml::from_str(
        "hook_timeout = \"5m\"\n[retention]\nkeep_within = \"7d\"\n[hooks]\npre_create = \"systemctl --user stop app\"",
    )
    .unwrap();
    assert!(validator.is_valid(&hooks));
    let typo: Value = toml::from_str("[hooks]\npre_prune = \"x\"").unwrap();
    assert!(!validator.is_valid(&typo));
}
