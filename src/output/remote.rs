//! What `push` and `pull` print.

use bundle::remote::pull::Pulled;
use bundle::remote::push::Pushed;

use super::{escape, human_bytes};

/// One line per bundle pushed.
pub fn render_push(remote: &str, reports: &[Pushed]) -> String {
    if reports.is_empty() {
        return format!(
            "nothing to push: every good local bundle is complete on remote \"{}\"\n",
            escape(remote)
        );
    }
    let mut out = String::new();
    for r in reports {
        let line = match r.outcome.as_str() {
            "already" => format!("{}: already complete on \"{}\"", r.id, escape(remote)),
            "reencrypted" => format!(
                "{}: re-encrypted on \"{}\" to its current recipients ({} objects, {} stored)",
                r.id,
                escape(remote),
                r.uploaded,
                human_bytes(r.bytes_stored)
            ),
            "failed" => format!(
                "{}: NOT pushed: {}",
                r.id,
                escape(r.error.as_deref().unwrap_or(""))
            ),
            _ => format!(
                "{}: pushed to \"{}\" ({} uploaded, {} copied on the server, {} resumed; {} read, {} stored)",
                r.id,
                escape(remote),
                r.uploaded,
                r.copied,
                r.resumed,
                human_bytes(r.bytes_uploaded),
                human_bytes(r.bytes_stored)
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The pulled bundle's id and folder.
pub fn render_pull(id: &str, pulled: &Pulled) -> String {
    match pulled.already {
        true => format!(
            "{id}\t{}\t(already local)\n",
            escape(&pulled.path.display().to_string())
        ),
        false => format!("{id}\t{}\n", escape(&pulled.path.display().to_string())),
    }
}
