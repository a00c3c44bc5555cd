//! `bundle restore`: the plan or what was done.

use super::{escape, escape_path};

/// The human form of a restore plan or result.
pub fn render(report: &bundle::restore::RestoreReport) -> String {
    use bundle::restore::Outcome;
    let verb = match report.outcome {
        Outcome::Applied => "restored",
        _ => "plan",
    };
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
    if report.outcome != Outcome::Applied {
        text.push_str(&format!("confirm token: {}\n", report.confirm_token));
    }
    text
}
