//! `bundle list`: a table of the destination's bundles, and its `--json` rows.

use serde::Serialize;

use bundle::bundle::ListedBundle;

use super::{escape, human_bytes};

/// One `--json` row of `list`.
#[derive(Serialize)]
pub struct ListedJson<'a> {
    id: &'a str,
    path: String,
    created_at: &'a str,
    bytes: u64,
    stores: Vec<&'a str>,
    label: Option<&'a str>,
    reason: Option<&'a str>,
    suspicious: bool,
    suspicious_reasons: &'a [String],
}

/// The `--json` rows.
pub fn json(bundles: &[ListedBundle]) -> Vec<ListedJson<'_>> {
    bundles
        .iter()
        .map(|b| ListedJson {
            id: &b.manifest.id,
            path: b.path.display().to_string(),
            created_at: &b.manifest.created_at,
            bytes: b.manifest.total_bytes(),
            stores: b.manifest.stores.iter().map(|s| s.name.as_str()).collect(),
            label: b.manifest.label.as_deref(),
            reason: b.manifest.reason.as_deref(),
            suspicious: b.manifest.suspicious,
            suspicious_reasons: &b.manifest.suspicious_reasons,
        })
        .collect()
}

/// The table (controls in labels and names escaped).
pub fn render(rows: &[ListedJson<'_>]) -> String {
    let mut text = format!(
        "{:<22} {:<22} {:>10}  {}\n",
        "ID", "CREATED", "SIZE", "STORES"
    );
    for r in rows {
        let mut stores = escape(&r.stores.join(","));
        if let Some(label) = r.label {
            stores.push_str(&format!("  \"{}\"", escape(label)));
        }
        if r.suspicious {
            stores.push_str(&format!(
                "  SUSPICIOUS: {}",
                escape(&r.suspicious_reasons.join("; "))
            ));
        }
        text.push_str(&format!(
            "{:<22} {:<22} {:>10}  {}\n",
            escape(r.id),
            escape(r.created_at),
            human_bytes(r.bytes),
            stores
        ));
    }
    text
}
