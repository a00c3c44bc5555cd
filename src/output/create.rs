//! `bundle create`: the new bundle's id and folder, and its `--json` document.

use serde::Serialize;

use bundle::config::StoreKind;
use bundle::create::CreateOutcome;
use bundle::manifest::StoreStatus;
use bundle::prune::PruneReport;

/// The `--json` document of `create`.
#[derive(Serialize)]
pub struct CreatedJson<'a> {
    ok: bool,
    id: &'a str,
    path: String,
    created_at: &'a str,
    label: Option<&'a str>,
    bytes: u64,
    warnings: &'a [String],
    removed_leftovers: &'a [String],
    stores: Vec<CreatedStoreJson<'a>>,
    suspicious: bool,
    suspicious_reasons: &'a [String],
    accepted_shrink: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<&'a PruneReport>,
    /// With `--push`: what pushing the new bundle did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<bundle::remote::push::Pushed>,
}

/// One store of [`CreatedJson`].
#[derive(Serialize)]
struct CreatedStoreJson<'a> {
    name: &'a str,
    kind: StoreKind,
    status: StoreStatus,
    files: usize,
    reused: usize,
    bytes: u64,
}

/// The `--json` document of a create (and its prune, with `--prune`).
pub fn json<'a>(outcome: &'a CreateOutcome, pruned: Option<&'a PruneReport>) -> CreatedJson<'a> {
    let m = &outcome.manifest;
    CreatedJson {
        ok: !m.suspicious,
        id: &m.id,
        path: outcome.path.display().to_string(),
        created_at: &m.created_at,
        label: m.label.as_deref(),
        bytes: total_bytes(outcome),
        warnings: &outcome.warnings,
        removed_leftovers: &outcome.removed_leftovers,
        stores: m
            .stores
            .iter()
            .zip(&outcome.tallies)
            .map(|(s, tally)| CreatedStoreJson {
                name: &s.name,
                kind: s.kind,
                status: s.status,
                files: tally.files,
                reused: tally.reused,
                bytes: tally.bytes,
            })
            .collect(),
        suspicious: m.suspicious,
        suspicious_reasons: &m.suspicious_reasons,
        accepted_shrink: &m.accepted_shrink,
        prune: pruned,
        push: None,
    }
}

/// stdout: `<id><TAB><path>`.
pub fn render(outcome: &CreateOutcome) -> String {
    format!("{}\t{}\n", outcome.manifest.id, outcome.path.display())
}

/// The stderr summary line.
pub fn summary(outcome: &CreateOutcome) -> String {
    let m = &outcome.manifest;
    let tallies = &outcome.tallies;
    format!(
        "created bundle {} ({} stores, {}; {} of {} files unchanged and shared with the previous bundle)",
        m.id,
        m.stores.len(),
        super::human_bytes(total_bytes(outcome)),
        tallies.iter().map(|t| t.reused).sum::<usize>(),
        tallies.iter().map(|t| t.files).sum::<usize>(),
    )
}

/// The bytes of every file of the new bundle's stores.
fn total_bytes(outcome: &CreateOutcome) -> u64 {
    outcome
        .tallies
        .iter()
        .fold(0u64, |t, s| t.saturating_add(s.bytes))
}

/// The error message of a suspicious bundle: what it means, what to do.
pub fn suspicious(outcome: &CreateOutcome, pruning_skipped: bool) -> String {
    let m = &outcome.manifest;
    let skipped = match pruning_skipped {
        true => "; nothing was pruned",
        false => "",
    };
    format!(
        "bundle {} is suspicious: a store that had data is gone or much smaller; it was published as evidence{skipped}, and prune keeps each store's last healthy bundle. Check the application's data; if the shrink was intended, run `bundle create --accept-shrink`",
        m.id
    )
}
