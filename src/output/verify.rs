//! `bundle verify`: one line per problem, or `ok`.

use bundle::verify::VerifyReport;

use super::{escape, escape_path, human_bytes};

/// The problems, the damaged stores, then (when no problem) the `ok` line.
pub fn render(report: &VerifyReport) -> String {
    let mut text = String::new();
    for p in &report.problems {
        let place = match (&p.store, &p.path) {
            (_, Some(path)) => format!("{}: ", escape(path)),
            (Some(store), None) => format!("store \"{}\": ", escape(store)),
            (None, None) => String::new(),
        };
        text.push_str(&format!("problem: {place}{}\n", escape(&p.problem)));
    }
    for d in &report.damaged {
        text.push_str(&format!(
            "damaged: {}; kept as raw bytes, whole but not checked\n",
            escape(d)
        ));
    }
    for reason in &report.suspicious_reasons {
        text.push_str(&format!(
            "suspicious: {}; the bundle is whole, but a store was gone or much smaller when it was made\n",
            escape(reason)
        ));
    }
    if report.ok {
        text.push_str(&format!(
            "ok: {} verified ({} files, {})\n",
            escape_path(&report.bundle),
            report.files_checked,
            human_bytes(report.bytes_checked)
        ));
    }
    text
}

/// The stderr line of a failed verification.
pub fn failed(report: &VerifyReport) -> String {
    format!(
        "bundle {} failed verification: {} problem(s); do not restore from it",
        escape_path(&report.bundle),
        report.problems.len()
    )
}
