//! `bundle schedule`: what install wrote, what remove removed, what is installed.

/// What `schedule install` wrote (or, with `--print`, would write).
pub fn installed(done: &bundle::schedule::Installed) -> String {
    let mut text = String::new();
    let verb = if done.changed { "wrote" } else { "would write" };
    for (path, body) in &done.files {
        text.push_str(&format!("# {verb} {}\n{body}\n", path.display()));
    }
    if let Some(line) = &done.cron_line {
        let verb = if done.changed {
            "installed"
        } else {
            "would install"
        };
        text.push_str(&format!("# {verb} this crontab line\n{line}\n"));
    }
    let verb = if done.changed { "ran" } else { "would run" };
    for command in &done.commands {
        text.push_str(&format!("# {verb}: {command}\n"));
    }
    if done.changed {
        text.push_str(&format!("schedule \"{}\" installed\n", done.name));
    }
    text
}

/// What `schedule remove` removed.
pub fn removed(name: &str, removed: &[String]) -> String {
    let mut text = format!("removed schedule \"{name}\":\n");
    for r in removed {
        text.push_str(&format!("  {r}\n"));
    }
    text
}

/// The installed schedules.
pub fn status(found: &[bundle::schedule::ScheduleStatus]) -> String {
    let mut text = String::new();
    for s in found {
        text.push_str(&format!(
            "{} ({}): {}\n  runs: {}\n",
            s.name, s.backend, s.when, s.command
        ));
        if let Some(last) = &s.last_run {
            text.push_str(&format!("  last run: {last}\n"));
        }
        if let Some(next) = &s.next_run {
            text.push_str(&format!("  next run: {next}\n"));
        }
    }
    text
}
