//! `bundle restore`: the plan or what was done.

use super::{escape, escape_path};

/// The human form of a restore plan or result.
pub fn render(report: &bundle::restore::RestoreReport) -> String {
    use bundle::restore::Outcome;
    let applied = matches!(report.outcome, Outcome::Applied | Outcome::Incomplete);
    let verb = if applied { "restored" } else { "plan" };
    let mut text = format!(
        "{verb}: {} bundle {} ({})\n",
        report.mode.as_str(),
        escape(&report.bundle_id),
        escape_path(&report.bundle)
    );
    for s in &report.stores {
        let c = &s.counts;
        text.push_str(&format!(
            "  {} ({}) -> {}: {}; inserted {}, appended {}, written {}, removed {}, kept {}, conflicts {}\n",
            escape(&s.name),
            s.kind,
            escape_path(&s.target),
            s.action,
            c.inserted,
            c.appended,
            c.written,
            c.removed,
            c.kept,
            c.conflicts
        ));
        for note in &s.notes {
            text.push_str(&format!("    note: {}\n", escape(note)));
        }
        for left in &s.left_out {
            text.push_str(&format!("    left out: {}\n", escape(left)));
        }
    }
    if let Some(sandbox) = report.sandbox {
        text.push_str(&format!("sandbox: {}\n", sandbox.describe()));
    }
    if let Some(snapshot) = &report.safety_snapshot {
        text.push_str(&format!(
            "safety snapshot: {} (restore it with --mode replace to undo)\n",
            escape_path(snapshot)
        ));
    }
    if !applied {
        text.push_str(&format!("confirm token: {}\n", report.confirm_token));
    }
    text
}

/// The error of a merge that could not bring everything back.
pub fn incomplete(report: &bundle::restore::RestoreReport) -> String {
    let stores: Vec<String> = report
        .stores
        .iter()
        .filter(|s| !s.left_out.is_empty())
        .map(|s| format!("\"{}\" ({} item(s))", escape(&s.name), s.left_out.len()))
        .collect();
    format!(
        "the merge could not bring back everything the bundle holds and live lacks: {} left out (listed above as \"left out\"); the live data was kept. To get the bundle's version: --mode replace (a safety snapshot is taken first), or restore --into DIR and copy what you need",
        stores.join(", ")
    )
}
