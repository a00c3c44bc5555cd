//! `bundle list`: a table of the destination's bundles, and its `--json` rows.

use serde::Serialize;

use bundle::bundle::ListedBundle;
use bundle::manifest::Manifest;

use super::{escape, human_bytes};

/// One `--json` row of `list`.
#[derive(Serialize)]
pub struct ListedJson<'a> {
    id: &'a str,
    path: String,
    created_at: &'a str,
    bytes: Option<u64>,
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
        .map(|b| row(&b.manifest, b.path.display().to_string(), b.bytes))
        .collect()
}

/// The row of the bundle `manifest` describes, found at `path`, holding
/// `bytes` in its files.
fn row(manifest: &Manifest, path: String, bytes: u64) -> ListedJson<'_> {
    ListedJson {
        id: &manifest.id,
        path,
        created_at: &manifest.created_at,
        bytes: Some(bytes),
        stores: manifest.stores.iter().map(|s| s.name.as_str()).collect(),
        label: manifest.label.as_deref(),
        reason: manifest.reason.as_deref(),
        suspicious: manifest.suspicious,
        suspicious_reasons: &manifest.suspicious_reasons,
    }
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
            human_bytes(r.bytes.unwrap_or(0)),
            stores
        ));
    }
    text
}

/// One `--json` row of `list --remote`: a local row's fields (`path` is
/// `remote:id`), the bytes stored there, whether the bundle is local too,
/// and whether it is encrypted. An encrypted bundle listed without its key
/// shows only what its index says: `bytes` is null and `stores` empty.
#[derive(Serialize)]
pub struct RemoteListedJson<'a> {
    #[serde(flatten)]
    row: ListedJson<'a>,
    stored_bytes: u64,
    local: bool,
    encrypted: bool,
    #[serde(skip)]
    sealed: bool,
}

/// The `--json` rows of a remote's listing.
pub fn remote_json<'a>(
    remote: &'a [bundle::remote::RemoteBundle],
    local: &[ListedBundle],
    name: &str,
) -> Vec<RemoteListedJson<'a>> {
    remote
        .iter()
        .map(|b| {
            let path = format!("{name}:{}", b.index.bundle_id);
            let row = match &b.opened {
                Some(opened) => row(&opened.manifest, path, opened.manifest.total_bytes()),
                None => ListedJson {
                    id: &b.index.bundle_id,
                    path,
                    created_at: &b.index.created_at,
                    bytes: None,
                    stores: Vec::new(),
                    label: None,
                    reason: None,
                    suspicious: b.index.standing.as_deref() == Some("suspicious"),
                    suspicious_reasons: &[],
                },
            };
            RemoteListedJson {
                row,
                stored_bytes: b.index.objects.iter().map(|o| o.bytes).sum(),
                local: local.iter().any(|l| l.manifest.id == b.index.bundle_id),
                encrypted: b.index.encrypted(),
                sealed: b.opened.is_none(),
            }
        })
        .collect()
}

/// The table of a remote's bundles.
pub fn render_remote(rows: &[RemoteListedJson<'_>]) -> String {
    let mut text = format!(
        "{:<22} {:<22} {:>10} {:>10}  {:<5}  {}\n",
        "ID", "CREATED", "SIZE", "STORED", "LOCAL", "STORES"
    );
    for r in rows {
        let mut stores = match r.sealed {
            true => "(encrypted: needs --identity)".to_string(),
            false => escape(&r.row.stores.join(",")),
        };
        if let Some(label) = r.row.label {
            stores.push_str(&format!("  \"{}\"", escape(label)));
        }
        text.push_str(&format!(
            "{:<22} {:<22} {:>10} {:>10}  {:<5}  {}\n",
            escape(r.row.id),
            escape(r.row.created_at),
            r.row.bytes.map_or_else(|| "?".into(), human_bytes),
            human_bytes(r.stored_bytes),
            if r.local { "yes" } else { "no" },
            stores
        ));
    }
    text
}
