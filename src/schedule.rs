//! `bundle schedule`: run `bundle --config <config> create --prune --quiet` on
//! a timer, as a systemd user service + timer when a user systemd answers,
//! else as a crontab line tagged with the schedule's name.
//!
//! Installing under a name that exists replaces it (never duplicates); several
//! names coexist, one per config. The unit texts and crontab line are pure
//! functions of the [`Schedule`], so `--print` shows exactly what is installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil;

/// Prefix of unit names and of the crontab tag.
const PREFIX: &str = "bundle-";

/// The comment that tags a crontab line as ours: `# bundle-schedule:<name>`.
const CRON_TAG: &str = "# bundle-schedule:";

/// When a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every day at this local time.
    At {
        /// 0–23.
        hour: u8,
        /// 0–59.
        minute: u8,
    },
    /// At this interval.
    Every(Duration),
}

impl When {
    /// Parses `--at HH:MM`.
    pub fn parse_at(text: &str) -> Result<When> {
        let bad = || {
            Error::Usage(format!(
                "--at \"{text}\" is not a time of day; write it as HH:MM, e.g. 02:30"
            ))
        };
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 || m.len() != 2 {
            return Err(bad());
        }
        Ok(When::At { hour, minute })
    }

    /// Parses `--every DURATION` (at least a minute, whole minutes).
    pub fn parse_every(text: &str) -> Result<When> {
        let every = crate::config::parse_duration(text)
            .map_err(|e| Error::Usage(format!("--every: {e}")))?;
        if every < Duration::from_secs(60) || every.as_secs() % 60 != 0 || every.subsec_nanos() != 0
        {
            return Err(Error::Usage(format!(
                "--every \"{text}\": use whole minutes, at least 1m"
            )));
        }
        Ok(When::Every(every))
    }
}

/// A schedule to install.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its name, `[a-z0-9_-]+`.
    pub name: String,
    /// When it runs.
    pub when: When,
    /// The `bundle` executable (absolute).
    pub program: PathBuf,
    /// The config file it runs with (absolute).
    pub config: PathBuf,
}

impl Schedule {
    /// Refuses paths that no quoting can write safely into a unit file or a
    /// crontab line: control characters (a newline would start a new line,
    /// and with it a new job or directive), and names that are not UTF-8.
    pub fn check(&self) -> Result<()> {
        for (what, path) in [("program", &self.program), ("config file", &self.config)] {
            let Some(text) = path.to_str() else {
                return Err(Error::Usage(format!(
                    "the {what} path {} is not valid UTF-8 and cannot be written into a timer; move it to a plain path",
                    path.display()
                )));
            };
            if text.chars().any(char::is_control) {
                return Err(Error::Usage(format!(
                    "the {what} path {:?} holds a newline or another control character and cannot be written safely into a timer; move it to a plain path",
                    text
                )));
            }
        }
        Ok(())
    }

    /// The command the timer runs.
    pub fn command(&self) -> Vec<String> {
        vec![
            self.program.to_string_lossy().into_owned(),
            "--config".into(),
            self.config.to_string_lossy().into_owned(),
            "create".into(),
            "--prune".into(),
            "--quiet".into(),
        ]
    }

    /// The systemd service and timer unit texts.
    pub fn systemd_units(&self) -> (String, String) {
        let exec: Vec<String> = self.command().iter().map(|a| systemd_quote(a)).collect();
        let service = format!(
            "# Installed by `bundle schedule install --name {name}`; manage it with `bundle schedule`.\n\
             [Unit]\n\
             Description=bundle: back up the stores of {config}\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart={exec}\n\
             Nice=10\n\
             IOSchedulingClass=idle\n",
            name = self.name,
            config = systemd_specifiers(&self.config.display().to_string()),
            exec = exec.join(" "),
        );
        let trigger = match self.when {
            When::At { hour, minute } => {
                format!("OnCalendar=*-*-* {hour:02}:{minute:02}:00\nPersistent=true\n")
            }
            When::Every(d) => format!("OnActiveSec={s}s\nOnUnitActiveSec={s}s\n", s = d.as_secs()),
        };
        let timer = format!(
            "# Installed by `bundle schedule install --name {name}`; manage it with `bundle schedule`.\n\
             [Unit]\n\
             Description=bundle: timer for {unit}.service\n\
             \n\
             [Timer]\n\
             {trigger}\
             Unit={unit}.service\n\
             \n\
             [Install]\n\
             WantedBy=timers.target\n",
            name = self.name,
            unit = unit_name(&self.name),
        );
        (service, timer)
    }

    /// The crontab line, tagged with the name.
    pub fn cron_line(&self) -> Result<String> {
        let when = match self.when {
            When::At { hour, minute } => format!("{minute} {hour} * * *"),
            When::Every(d) => cron_interval(d)?,
        };
        let command = self
            .command()
            .iter()
            .map(|a| cron_quote(a))
            .collect::<Result<Vec<String>>>()?;
        // stdout (the new bundle's id and path) would make cron mail every
        // night; only errors on stderr should.
        Ok(format!(
            "{when} {} {CRON_QUIET} {CRON_TAG}{}",
            command.join(" "),
            self.name
        ))
    }
}

/// The schedule `bundle --config CONFIG schedule install` would install:
/// refuses a missing config, one without a `[retention]` policy (the
/// scheduled `create --prune` would fail every time) or a destination, and
/// a schedule without a time.
pub fn prepare(
    name: &str,
    config: Option<&Path>,
    at: Option<&str>,
    every: Option<&str>,
) -> Result<Schedule> {
    let config = config.ok_or_else(|| {
        Error::Usage(
            "schedule install needs a config: pass --config PATH (the timer runs `bundle --config PATH create --prune --quiet`)"
                .into(),
        )
    })?;
    // A missing or broken config is a config error (exit 2), as everywhere.
    crate::config::Config::load(config)?;
    let config_file =
        std::fs::canonicalize(config).map_err(|e| Error::io("could not find config", config, e))?;
    let loaded = crate::config::Config::load(&config_file)?;
    if loaded.retention.has_no_rules() {
        return Err(Error::Usage(format!(
            "{} has no [retention] policy, so the scheduled `create --prune` would fail every time; add one (for example keep_daily = 7) and install again",
            config_file.display()
        )));
    }
    if loaded.destination.is_none() {
        return Err(Error::Usage(format!(
            "{} has no destination for bundles: set `destination = \"backups\"` in it and install again",
            config_file.display()
        )));
    }
    let when = match (at, every) {
        (Some(at), _) => When::parse_at(at)?,
        (None, Some(every)) => When::parse_every(every)?,
        (None, None) => return Err(Error::Usage("give --at HH:MM or --every DURATION".into())),
    };
    let program = std::env::current_exe()
        .map_err(|e| Error::io("could not find", Path::new("the bundle executable"), e))?;
    Ok(Schedule {
        name: name.to_string(),
        when,
        program,
        config: config_file,
    })
}

/// Where schedules live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "backend")]
pub enum Backend {
    /// systemd user units in this folder.
    Systemd {
        /// The user unit folder (`$XDG_CONFIG_HOME/systemd/user`).
        unit_dir: PathBuf,
    },
    /// The user's crontab.
    Cron,
    /// Neither answers: nothing can be scheduled here.
    Unavailable,
}

/// What install, remove and status say when there is no scheduler.
pub const NO_SCHEDULER: &str = "neither systemd user services (`systemctl --user`) nor cron (the `crontab` command) is available on this machine, so bundle cannot schedule anything here; run `bundle --config <config> create --prune --quiet` from the scheduler you have";

/// Picks systemd when `systemctl --user` answers, else cron.
pub fn detect_backend() -> Result<Backend> {
    let answers = Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !answers {
        let cron = Command::new("crontab")
            .arg("-l")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        return Ok(match cron {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Backend::Unavailable,
            _ => Backend::Cron,
        });
    }
    let config_home = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".config"))
            .ok_or_else(|| {
                Error::Usage(
                    "neither XDG_CONFIG_HOME nor HOME is set: cannot find the systemd user unit folder"
                        .into(),
                )
            })?,
    };
    Ok(Backend::Systemd {
        unit_dir: config_home.join("systemd").join("user"),
    })
}

/// What install did (or, printing, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// The schedule's name.
    pub name: String,
    /// Where it went.
    #[serde(flatten)]
    pub backend: Backend,
    /// Files written, with their text.
    pub files: Vec<(PathBuf, String)>,
    /// The crontab line, for cron.
    pub cron_line: Option<String>,
    /// Commands run (or that would be run).
    pub commands: Vec<String>,
    /// Whether anything was changed (false with `--print`).
    pub changed: bool,
}

/// Installs (or with `print_only`, describes) `schedule`, replacing any of the same name.
pub fn install(schedule: &Schedule, backend: &Backend, print_only: bool) -> Result<Installed> {
    schedule.check()?;
    crate::config::validate_store_name(&schedule.name)
        .map_err(|e| Error::Usage(e.replace("store name", "schedule name")))?;
    let mut done = Installed {
        name: schedule.name.clone(),
        backend: backend.clone(),
        files: Vec::new(),
        cron_line: None,
        commands: Vec::new(),
        changed: !print_only,
    };
    match backend {
        Backend::Unavailable => return Err(Error::Refused(NO_SCHEDULER.into())),
        Backend::Systemd { unit_dir } => {
            let unit = unit_name(&schedule.name);
            let (service, timer) = schedule.systemd_units();
            done.files = vec![
                (unit_dir.join(format!("{unit}.service")), service),
                (unit_dir.join(format!("{unit}.timer")), timer),
            ];
            let commands: [&[&str]; 2] = [
                &["--user", "daemon-reload"],
                &["--user", "enable", "--now", &format!("{unit}.timer")],
            ];
            done.commands = commands
                .iter()
                .map(|a| format!("systemctl {}", a.join(" ")))
                .collect();
            if !print_only {
                fsutil::create_dir_all(unit_dir)?;
                for (path, text) in &done.files {
                    fsutil::replace_file(path, |f| f.write_all(text.as_bytes()))?;
                }
                for args in commands {
                    systemctl(args)?;
                }
            }
        }
        Backend::Cron => {
            let line = schedule.cron_line()?;
            done.commands = vec!["crontab -".into()];
            if !print_only {
                let current = read_crontab()?;
                let mut lines = without_tag(&current, &schedule.name);
                lines.push(line.clone());
                write_crontab(&lines)?;
            }
            done.cron_line = Some(line);
        }
    }
    Ok(done)
}

/// Removes the schedule `name`; returns what was removed (empty: nothing was installed).
pub fn remove(name: &str, backend: &Backend) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    match backend {
        Backend::Unavailable => return Err(Error::Refused(NO_SCHEDULER.into())),
        Backend::Systemd { unit_dir } => {
            let unit = unit_name(name);
            let timer = unit_dir.join(format!("{unit}.timer"));
            let service = unit_dir.join(format!("{unit}.service"));
            if timer.exists() {
                systemctl(&["--user", "disable", "--now", &format!("{unit}.timer")])?;
            }
            for path in [timer, service] {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed.push(path.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("could not remove", &path, e)),
                }
            }
            if !removed.is_empty() {
                systemctl(&["--user", "daemon-reload"])?;
            }
        }
        Backend::Cron => {
            let current = read_crontab()?;
            let kept = without_tag(&current, name);
            if kept.len() != current.lines().count() {
                removed.extend(
                    current
                        .lines()
                        .filter(|l| tag_of(l) == Some(name))
                        .map(str::to_string),
                );
                write_crontab(&kept)?;
            }
        }
    }
    Ok(removed)
}

/// One installed schedule, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    /// The schedule's name.
    pub name: String,
    /// `systemd` or `cron`.
    pub backend: &'static str,
    /// When it runs (the timer's trigger lines, or the cron fields).
    pub when: String,
    /// The command it runs.
    pub command: String,
    /// systemd only: the last run's result (`success`, `exit-code`, …) and details.
    pub last_run: Option<String>,
    /// systemd only: when the timer fires next.
    pub next_run: Option<String>,
}

/// Lists the installed schedules of `backend`.
pub fn status(backend: &Backend) -> Result<Vec<ScheduleStatus>> {
    match backend {
        Backend::Systemd { unit_dir } => systemd_status(unit_dir),
        Backend::Cron => cron_status(),
        Backend::Unavailable => Ok(Vec::new()),
    }
}

/// The schedules installed as systemd user units in `unit_dir`.
fn systemd_status(unit_dir: &Path) -> Result<Vec<ScheduleStatus>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(unit_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Error::io("could not read", unit_dir, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|f| {
            f.strip_prefix(PREFIX)?
                .strip_suffix(".timer")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    for name in names {
        let unit = unit_name(&name);
        let read = |suffix: &str| {
            std::fs::read_to_string(unit_dir.join(format!("{unit}.{suffix}"))).unwrap_or_default()
        };
        let (timer, service) = (read("timer"), read("service"));
        let lines_with = |text: &str, keys: &[&str]| -> String {
            text.lines()
                .filter(|l| keys.iter().any(|k| l.starts_with(k)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let next = systemctl_show(&format!("{unit}.timer"))?
            .get("NextElapseUSecRealtime")
            .filter(|v| !v.is_empty())
            .cloned();
        found.push(ScheduleStatus {
            name,
            backend: "systemd",
            when: lines_with(&timer, &["OnCalendar=", "OnUnitActiveSec="]),
            command: lines_with(&service, &["ExecStart="])
                .trim_start_matches("ExecStart=")
                .to_string(),
            last_run: last_run(&unit)?,
            next_run: next,
        });
    }
    Ok(found)
}

/// How the service `unit` last ended, as systemd reports it.
fn last_run(unit: &str) -> Result<Option<String>> {
    let shown = systemctl_show(&format!("{unit}.service"))?;
    Ok(
        match shown.get("ExecMainExitTimestamp").map(String::as_str) {
            None | Some("") | Some("n/a") => Some("never run".to_string()),
            Some(at) => Some(format!(
                "{} (exit status {}) at {at}",
                shown.get("Result").map(String::as_str).unwrap_or("unknown"),
                shown
                    .get("ExecMainStatus")
                    .map(String::as_str)
                    .unwrap_or("?"),
            )),
        },
    )
}

/// The schedules installed as tagged lines of the user's crontab.
fn cron_status() -> Result<Vec<ScheduleStatus>> {
    let mut found = Vec::new();
    for line in read_crontab()?.lines() {
        let Some(name) = tag_of(line) else { continue };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let command = line
            .splitn(6, char::is_whitespace)
            .nth(5)
            .unwrap_or("")
            .split(CRON_TAG)
            .next()
            .unwrap_or("")
            .trim()
            .trim_end_matches(CRON_QUIET)
            .trim()
            .to_string();
        found.push(ScheduleStatus {
            name: name.to_string(),
            backend: "cron",
            when: fields.iter().take(5).copied().collect::<Vec<_>>().join(" "),
            command,
            last_run: None,
            next_run: None,
        });
    }
    Ok(found)
}

/// `bundle-<name>`.
fn unit_name(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The name a crontab line is tagged with, if it is one of ours.
fn tag_of(line: &str) -> Option<&str> {
    let (_, name) = line.rsplit_once(CRON_TAG)?;
    Some(name.trim())
}

/// The crontab's lines without those tagged `name`.
fn without_tag(crontab: &str, name: &str) -> Vec<String> {
    crontab
        .lines()
        .filter(|l| tag_of(l) != Some(name))
        .map(str::to_string)
        .collect()
}

/// The five cron fields for an interval, when cron can express it exactly.
/// What a cron line appends to the command: its stdout is not mail.
const CRON_QUIET: &str = ">/dev/null";

fn cron_interval(every: Duration) -> Result<String> {
    let minutes = every.as_secs() / 60;
    let fields = match minutes {
        1 => Some("* * * * *".to_string()),
        m if m < 60 && 60 % m == 0 => Some(format!("*/{m} * * * *")),
        m if m % 60 == 0 && m / 60 < 24 && 24 % (m / 60) == 0 => {
            Some(format!("0 */{} * * *", m / 60))
        }
        m if m == 24 * 60 => Some("0 0 * * *".to_string()),
        _ => None,
    };
    fields.ok_or_else(|| {
        Error::Usage(format!(
            "cron cannot run every {minutes} minutes exactly: use an interval that divides an hour or a day (e.g. 15m, 6h, 1d), or --at HH:MM"
        ))
    })
}

/// Quotes an argument for `sh` (always quoted, so a crontab reads the same
/// for every path). A NUL cannot be passed to a program at all.
fn shell_quote(arg: &str) -> Result<String> {
    let quoted = shlex::try_quote(arg)
        .map_err(|e| Error::Usage(format!("cannot schedule the argument {arg:?}: {e}")))?;
    Ok(match quoted {
        std::borrow::Cow::Borrowed(plain) => format!("'{plain}'"),
        std::borrow::Cow::Owned(quoted) => quoted,
    })
}

/// Quotes an argument for the command of a crontab line: each run between
/// `%`s quoted for `sh`, joined by `\%` outside the quotes (cron turns an
/// unescaped `%` into a newline and `\%` into `%`, which `sh` then reads
/// literally).
fn cron_quote(arg: &str) -> Result<String> {
    if arg.contains(['\n', '\r']) {
        return Err(Error::Usage(format!(
            "cannot schedule {arg:?} with cron: a crontab line cannot hold a line break; move the config to a path without one"
        )));
    }
    let pieces = arg
        .split('%')
        .map(shell_quote)
        .collect::<Result<Vec<String>>>()?;
    Ok(pieces.join("\\%"))
}

/// Quotes an argument for a systemd `ExecStart=` line: double quotes with C
/// escapes, `%` (a specifier) as `%%` and `$` (a variable) as `$$`.
fn systemd_quote(arg: &str) -> String {
    let escaped = arg
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "$$");
    format!("\"{}\"", systemd_specifiers(&escaped))
}

/// Escapes systemd's `%` specifiers.
fn systemd_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// Runs `systemctl ARGS`, failing with its stderr.
fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("could not run", Path::new("systemctl"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "`systemctl {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// `systemctl --user show UNIT` as key/value pairs (empty when it cannot answer).
fn systemctl_show(unit: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let out = Command::new("systemctl")
        .args([
            "--user",
            "show",
            unit,
            "--property=Result,ExecMainStatus,ExecMainExitTimestamp,NextElapseUSecRealtime",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("could not run", Path::new("systemctl"), e))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The user's crontab (empty when there is none).
fn read_crontab() -> Result<String> {
    let out = Command::new("crontab")
        .arg("-l")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("could not run", Path::new("crontab"), e))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // Every cron says "no crontab" by exiting 1 with nothing on stdout, in
    // its own words (and language) on stderr: the status decides, not the
    // text. A real failure (not allowed to use cron, say) shows when the
    // crontab is written.
    if out.status.code() == Some(1) && out.stdout.is_empty() {
        return Ok(String::new());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Error::Refused(format!(
        "`crontab -l` failed ({}): {}",
        out.status,
        stderr.trim()
    )))
}

/// Replaces the user's crontab with `lines`.
fn write_crontab(lines: &[String]) -> Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    let mut child = Command::new("crontab")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("could not run", Path::new("crontab"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("could not write to", Path::new("crontab"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("could not run", Path::new("crontab"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "`crontab -` refused the new crontab: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nightly() -> Schedule {
        Schedule {
            name: "notes".into(),
            when: When::parse_at("02:30").unwrap(),
            program: "/opt/bin/bundle".into(),
            config: "/home/me/100% notes/bundle.toml".into(),
        }
    }

    #[test]
    fn times_and_intervals_parse_strictly() {
        assert_eq!(
            When::parse_at("2:05").unwrap(),
            When::At { hour: 2, minute: 5 }
        );
        for bad in ["24:00", "12:60", "12", "ab:cd", "12:5"] {
            assert!(When::parse_at(bad).is_err(), "{bad}");
        }
        assert_eq!(
            When::parse_every("6h").unwrap(),
            When::Every(Duration::from_secs(6 * 3600))
        );
        assert!(When::parse_every("30s").is_err());
        assert!(When::parse_every("90s").is_err());
    }

    #[test]
    fn unit_and_cron_texts_quote_paths_and_escape_percent() {
        let (service, timer) = nightly().systemd_units();
        assert!(service.contains(
            "ExecStart=\"/opt/bin/bundle\" \"--config\" \"/home/me/100%% notes/bundle.toml\" \"create\" \"--prune\" \"--quiet\"\n"
        ), "{service}");
        assert!(timer.contains("OnCalendar=*-*-* 02:30:00\nPersistent=true\n"));
        assert!(timer.contains("Unit=bundle-notes.service\n"));
        assert_eq!(
            nightly().cron_line().unwrap(),
            "30 2 * * * '/opt/bin/bundle' '--config' '/home/me/100'\\%' notes/bundle.toml' 'create' '--prune' '--quiet' >/dev/null # bundle-schedule:notes"
        );
    }

    /// What cron does to a command before `sh` sees it: `\%` becomes `%`,
    /// any other `%` ends the command (the rest is stdin).
    fn as_cron_passes_it(command: &str) -> String {
        let mut out = String::new();
        let mut chars = command.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('\\', Some('%')) => {
                    out.push('%');
                    chars.next();
                }
                ('%', _) => panic!("an unescaped % in {command}"),
                (c, _) => out.push(c),
            }
        }
        out
    }

    #[test]
    fn cron_quoting_round_trips_through_cron_and_sh() {
        let nasty = [
            "/home/me/100% notes/bundle.toml",
            "a\\%b",
            "it's \"quoted\" $HOME `x` \\ %% \\%",
            "ends with \\",
            "tab\tand more",
            "",
        ];
        for arg in nasty {
            let command =
                format!("printf '%s' {}", cron_quote(arg).unwrap()).replace("'%s'", "'\\%s'");
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(as_cron_passes_it(&command))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), arg, "{command}");
        }
        assert!(cron_quote("line\nbreak").is_err());
    }

    #[test]
    fn cron_intervals_must_divide_an_hour_or_a_day() {
        let fields = |s: u64| cron_interval(Duration::from_secs(s));
        assert_eq!(fields(60).unwrap(), "* * * * *");
        assert_eq!(fields(15 * 60).unwrap(), "*/15 * * * *");
        assert_eq!(fields(6 * 3600).unwrap(), "0 */6 * * *");
        assert_eq!(fields(86400).unwrap(), "0 0 * * *");
        assert!(fields(7 * 60).is_err());
        assert!(fields(5 * 3600).is_err());
        assert!(fields(2 * 86400).is_err());
    }

    #[test]
    fn only_lines_tagged_with_the_name_are_replaced() {
        let crontab =
            "MAILTO=me\n0 1 * * * x # bundle-schedule:other\n0 2 * * * y # bundle-schedule:notes\n";
        assert_eq!(
            without_tag(crontab, "notes"),
            ["MAILTO=me", "0 1 * * * x # bundle-schedule:other"]
        );
    }
}
