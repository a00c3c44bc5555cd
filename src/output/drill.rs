//! `bundle drill`: what was restored, and that it matched.

use bundle::restore::DrillReport;

use super::escape;

/// One line per store, the sandbox, then `ok`.
pub fn render(report: &DrillReport) -> String {
    let mut text = String::new();
    for s in &report.stores {
        text.push_str(&format!(
            "  {} ({}): {} written, {} kept\n",
            escape(&s.name),
            s.kind,
            s.counts.written,
            s.counts.kept
        ));
        if let Some(check) = &s.check {
            text.push_str(&format!("    check: {}\n", escape(check)));
        }
    }
    if let Some(sandbox) = report.sandbox {
        text.push_str(&format!("sandbox: {}\n", sandbox.describe()));
    }
    if report.ok {
        text.push_str(&format!(
            "ok: bundle {} restores cleanly and matches its manifest\n",
            escape(&report.bundle_id)
        ));
    }
    text
}
