//! `bundle prune`: one line per bundle, then what to do next.

use super::escape;

/// The human summary of a prune: one line per bundle, then what to do next.
pub fn render(report: &bundle::prune::PruneReport) -> String {
    let mut text = String::new();
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for kept in &report.kept {
        let reasons: Vec<String> = kept
            .reasons
            .iter()
            .map(|r| match r {
                bundle::retention::Reason::LastHealthy => {
                    format!("last-healthy: {}", kept.last_healthy.join(", "))
                }
                r => r.as_str().to_string(),
            })
            .collect();
        text.push_str(&format!(
            "keep     {}  ({})\n",
            escape(&kept.id),
            escape(&reasons.join(", "))
        ));
    }
    for id in &report.deleted {
        text.push_str(&format!("{verb:<8} {}\n", escape(id)));
    }
    let problem = |name: &String| report.problems.get(name).map(String::as_str).unwrap_or("");
    for id in &report.damaged {
        text.push_str(&format!(
            "damaged  {id}: {}  (left in place: run `bundle verify {id}`, and delete it by hand once you no longer need it)\n",
            escape(problem(id)),
            id = escape(id)
        ));
    }
    for name in &report.unparseable {
        text.push_str(&format!(
            "skipped  {}: {}  (not a bundle prune understands; left in place)\n",
            escape(name),
            escape(problem(name))
        ));
    }
    for name in &report.leftovers {
        let done = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        text.push_str(&format!("{done} leftover {}\n", escape(name)));
    }
    if report.dry_run {
        text.push_str(&format!(
            "dry run: {} bundle(s) kept, {} would be deleted; nothing was changed (add --apply to delete)\n",
            report.kept.len(),
            report.deleted.len()
        ));
    } else {
        text.push_str(&format!(
            "{} bundle(s) kept, {} deleted\n",
            report.kept.len(),
            report.deleted.len()
        ));
    }
    text
}
