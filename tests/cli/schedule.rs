//! `bundle schedule` against stand-in `systemctl` and `crontab` programs put
//! first on PATH: the exact unit files and crontab written, idempotence, removal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{Run, Workspace};

/// `systemctl` that answers `--user` when `SYSTEMD_UP` exists, logs every call,
/// and reports a last run for `show`.
const SYSTEMCTL: &str = r#"#!/bin/sh
echo "$*" >> "$STANDIN_DIR/systemctl.log"
case "$*" in
  *show-environment*) [ -e "$STANDIN_DIR/SYSTEMD_UP" ] || exit 1 ;;
  *"show bundle-"*".service"*)
    echo "Result=exit-code"; echo "ExecMainStatus=4"
    echo "ExecMainExitTimestamp=Mon 2026-11-23 02:30:07 UTC" ;;
  *"show bundle-"*".timer"*) echo "NextElapseUSecRealtime=Tue 2026-11-24 02:30:00 UTC" ;;
esac
exit 0
"#;

/// `crontab` keeping the table in `$STANDIN_DIR/crontab.table`.
const CRONTAB: &str = r#"#!/bin/sh
table="$STANDIN_DIR/crontab.table"
if [ "$1" = "-l" ]; then
  [ -e "$table" ] || { echo "no crontab for tester" >&2; exit 1; }
  cat "$table"
elif [ "$1" = "-" ]; then
  cat > "$table"
else
  exit 2
fi
"#;

struct Setup {
    ws: Workspace,
    standins: PathBuf,
}

impl Setup {
    fn new(systemd: bool) -> Setup {
        let ws = Workspace::new();
        ws.write("data/notes.jsonl", "{\"id\":1}\n");
        ws.write(
            "app/bundle.toml",
            "destination = \"../backups\"\n[retention]\nkeep_daily = 7\n[[stores]]\nname = \"notes\"\nkind = \"jsonl\"\npath = \"../data/notes.jsonl\"\n",
        );
        ws.write("app/bare.toml", "destination = \"../backups\"\n");
        let standins = ws.path("standins");
        for (name, text) in [("systemctl", SYSTEMCTL), ("crontab", CRONTAB)] {
            let path = ws.write(&format!("standins/{name}"), text);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        if systemd {
            ws.write("standins/SYSTEMD_UP", "");
        }
        Setup { ws, standins }
    }

    fn run(&self, args: &[&str]) -> Run {
        let path = format!(
            "{}:{}",
            self.standins.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.ws
            .cmd()
            .env("PATH", path)
            .env("HOME", self.ws.path("home"))
            .env("XDG_CONFIG_HOME", self.ws.path("xdg"))
            .env("STANDIN_DIR", &self.standins)
            .args(args)
            .output()
            .unwrap()
            .into()
    }

    fn config(&self) -> PathBuf {
        std::fs::canonicalize(self.ws.path("app/bundle.toml")).unwrap()
    }

    fn unit_dir(&self) -> PathBuf {
        self.ws.path("xdg/systemd/user")
    }

    fn units(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.unit_dir())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn systemctl_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.standins.join("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains(" show"))
            .map(str::to_string)
            .collect()
    }

    fn crontab(&self) -> String {
        std::fs::read_to_string(self.standins.join("crontab.table")).unwrap_or_default()
    }
}

fn program() -> String {
    assert_cmd::cargo::cargo_bin!("bundle")
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn systemd_units_are_written_exactly_replaced_by_name_and_removed() {
    let s = Setup::new(true);
    let config = s.config();
    let cfg = config.to_str().unwrap();
    s.run(&[
        "--config", cfg, "schedule", "install", "--name", "notes", "--at", "02:30",
    ])
    .code(0);
    assert_eq!(s.units(), ["bundle-notes.service", "bundle-notes.timer"]);
    let service = read(&s.unit_dir().join("bundle-notes.service"));
    assert_eq!(
        service,
        format!(
            "# Installed by `bundle schedule install --name notes`; manage it with `bundle schedule`.\n\
             [Unit]\n\
             Description=bundle: back up the stores of {cfg}\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart=\"{}\" \"--config\" \"{cfg}\" \"create\" \"--prune\" \"--quiet\"\n\
             Nice=10\n\
             IOSchedulingClass=idle\n",
            program()
        )
    );
    let timer = read(&s.unit_dir().join("bundle-notes.timer"));
    assert_eq!(
        timer,
        "# Installed by `bundle schedule install --name notes`; manage it with `bundle schedule`.\n\
         [Unit]\n\
         Description=bundle: timer for bundle-notes.service\n\
         \n\
         [Timer]\n\
         OnCalendar=*-*-* 02:30:00\n\
         Persistent=true\n\
         Unit=bundle-notes.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n"
    );
    assert_eq!(
        s.systemctl_log(),
        [
            "--user daemon-reload",
            "--user enable --now bundle-notes.timer"
        ]
    );

    // Installing again under the same name replaces; another name coexists.
    s.run(&[
        "--config", cfg, "schedule", "install", "--name", "notes", "--every", "6h",
    ])
    .code(0);
    s.run(&[
        "--config", cfg, "schedule", "install", "--name", "other", "--at", "04:00",
    ])
    .code(0);
    assert_eq!(
        s.units(),
        [
            "bundle-notes.service",
            "bundle-notes.timer",
            "bundle-other.service",
            "bundle-other.timer"
        ]
    );
    let timer = read(&s.unit_dir().join("bundle-notes.timer"));
    assert!(
        timer.contains("OnActiveSec=21600s\nOnUnitActiveSec=21600s\n"),
        "{timer}"
    );
    assert!(!timer.contains("OnCalendar"), "{timer}");

    let status = s.run(&["--json", "schedule", "status"]);
    status.code(0);
    let found = status.json();
    assert_eq!(found.as_array().unwrap().len(), 2);
    assert_eq!(found[0]["name"], "notes");
    assert_eq!(found[0]["backend"], "systemd");
    assert!(
        found[0]["last_run"]
            .as_str()
            .unwrap()
            .contains("exit-code (exit status 4)"),
        "{found}"
    );
    assert_eq!(found[1]["next_run"], "Tue 2026-11-24 02:30:00 UTC");

    s.run(&["schedule", "remove", "--name", "notes"]).code(0);
    assert_eq!(s.units(), ["bundle-other.service", "bundle-other.timer"]);
    assert!(s
        .systemctl_log()
        .contains(&"--user disable --now bundle-notes.timer".to_string()));
    // Removing what is not there changes nothing and says so.
    let again = s.run(&["schedule", "remove", "--name", "notes"]);
    again.code(0);
    assert!(again.stderr.contains("nothing changed"), "{}", again.stderr);
}

#[test]
fn cron_lines_are_tagged_replaced_by_name_and_keep_the_users_own_lines() {
    let s = Setup::new(false);
    std::fs::write(
        s.standins.join("crontab.table"),
        "MAILTO=me@example.org\n15 * * * * /usr/bin/my-own-job\n",
    )
    .unwrap();
    let config = s.config();
    let cfg = config.to_str().unwrap();
    let line = |when: &str, name: &str| {
        format!(
            "{when} '{}' '--config' '{cfg}' 'create' '--prune' '--quiet' >/dev/null # bundle-schedule:{name}",
            program()
        )
    };
    s.run(&[
        "--config", cfg, "schedule", "install", "--name", "notes", "--at", "02:30",
    ])
    .code(0);
    assert_eq!(
        s.crontab(),
        format!(
            "MAILTO=me@example.org\n15 * * * * /usr/bin/my-own-job\n{}\n",
            line("30 2 * * *", "notes")
        )
    );
    s.run(&[
        "--config", cfg, "schedule", "install", "--name", "notes", "--every", "15m",
    ])
    .code(0);
    s.run(&[
        "--config", cfg, "schedule", "install", "--name", "other", "--at", "23:05",
    ])
    .code(0);
    assert_eq!(
        s.crontab(),
        format!(
            "MAILTO=me@example.org\n15 * * * * /usr/bin/my-own-job\n{}\n{}\n",
            line("*/15 * * * *", "notes"),
            line("5 23 * * *", "other")
        )
    );
    assert!(
        s.units().is_empty(),
        "no systemd units without a user systemd"
    );

    let status = s.run(&["schedule", "status"]);
    status.code(0);
    assert!(
        status.stdout.contains("notes (cron): */15 * * * *"),
        "{}",
        status.stdout
    );

    s.run(&["schedule", "remove", "--name", "notes"]).code(0);
    assert_eq!(
        s.crontab(),
        format!(
            "MAILTO=me@example.org\n15 * * * * /usr/bin/my-own-job\n{}\n",
            line("5 23 * * *", "other")
        )
    );
    // An interval cron cannot express is refused, and nothing changes.
    let before = s.crontab();
    s.run(&["--config", cfg, "schedule", "install", "--every", "7m"])
        .code(2);
    assert_eq!(s.crontab(), before);
}

#[test]
fn print_shows_the_install_and_changes_nothing() {
    let s = Setup::new(true);
    let config = s.config();
    let cfg = config.to_str().unwrap();
    let run = s.run(&[
        "--config", cfg, "schedule", "install", "--at", "01:00", "--print",
    ]);
    run.code(0);
    assert!(
        run.stdout.contains("OnCalendar=*-*-* 01:00:00"),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("would run: systemctl --user enable --now bundle-default.timer"));
    assert!(s.units().is_empty());
    assert!(s.systemctl_log().is_empty(), "{:?}", s.systemctl_log());
}

#[test]
fn install_refuses_a_config_without_retention_or_a_schedule_without_a_time() {
    let s = Setup::new(true);
    let bare = std::fs::canonicalize(s.ws.path("app/bare.toml")).unwrap();
    let run = s.run(&[
        "--config",
        bare.to_str().unwrap(),
        "schedule",
        "install",
        "--at",
        "02:00",
    ]);
    run.code(2);
    assert!(run.stderr.contains("[retention]"), "{}", run.stderr);
    let config = s.config();
    s.run(&["--config", config.to_str().unwrap(), "schedule", "install"])
        .code(2);
    s.run(&[
        "--config",
        config.to_str().unwrap(),
        "schedule",
        "install",
        "--at",
        "25:00",
    ])
    .code(2);
    s.run(&[
        "--config",
        config.to_str().unwrap(),
        "schedule",
        "install",
        "--name",
        "Bad Name",
        "--at",
        "02:00",
    ])
    .code(2);
    assert!(s.units().is_empty());
}

/// What cron does to a command before `sh -c` runs it (Vixie cron's
/// `do_command`): `\%` becomes `%`, the first other `%` ends the command.
fn cron_command(line: &str) -> String {
    let fields: Vec<&str> = line.splitn(6, ' ').collect();
    let command = fields[5];
    let command = command
        .rsplit_once(" # bundle-schedule:")
        .map(|(c, _)| c)
        .unwrap_or(command);
    let mut out = String::new();
    let mut escaped = false;
    for ch in command.chars() {
        if escaped {
            if ch == '%' {
                out.pop();
            }
            out.push(ch);
            escaped = false;
            continue;
        }
        if ch == '\\' {
            escaped = true;
            out.push(ch);
            continue;
        }
        if ch == '%' {
            break;
        }
        out.push(ch);
    }
    out
}

/// What systemd does to an `ExecStart=` value: split into words, double
/// quotes with C escapes, `%%` → `%`, `$$` → `$` (anything else with `%` or
/// `$` would be expanded, so it is reported).
fn systemd_argv(value: &str) -> Vec<String> {
    let mut argv = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let quoted = c == '"';
        if quoted {
            chars.next();
        }
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted => break,
                ' ' if !quoted => break,
                '\\' => word.push(chars.next().expect("escape at end")),
                '%' => {
                    assert_eq!(chars.next(), Some('%'), "unescaped specifier in {value}");
                    word.push('%');
                }
                '$' => {
                    assert_eq!(chars.next(), Some('$'), "unescaped variable in {value}");
                    word.push('$');
                }
                c => word.push(c),
            }
        }
        argv.push(word);
    }
    argv
}

#[test]
fn odd_paths_reach_cron_and_systemd_intact_and_newlines_are_refused() {
    let s = Setup::new(false);
    // A copy of the binary and a config in folders named to break quoting.
    let odd = "odd $HOME ${USER} %n \\%x 'q' \"d\" \\ back";
    let bin = s.ws.path(&format!("{odd}/bundle"));
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(program(), &bin).unwrap();
    let config = s.ws.path(&format!("{odd}/bundle.toml"));
    std::fs::write(
        &config,
        format!(
            "destination = \"{}\"\n[retention]\nkeep_last = 3\n[[stores]]\nname = \"notes\"\nkind = \"jsonl\"\npath = \"{}\"\n",
            s.ws.path("odd-backups").display(),
            s.ws.path("data/notes.jsonl").display()
        ),
    )
    .unwrap();
    let install = |systemd: bool| -> Run {
        let path = format!(
            "{}:{}",
            s.standins.display(),
            std::env::var("PATH").unwrap()
        );
        if systemd {
            s.ws.write("standins/SYSTEMD_UP", "");
        } else {
            let _ = std::fs::remove_file(s.standins.join("SYSTEMD_UP"));
        }
        std::process::Command::new(&bin)
            .env_clear()
            .env("PATH", path)
            .env("HOME", s.ws.path("home"))
            .env("XDG_CONFIG_HOME", s.ws.path("xdg"))
            .env("STANDIN_DIR", &s.standins)
            .args([
                "--config",
                config.to_str().unwrap(),
                "schedule",
                "install",
                "--name",
                "odd",
                "--at",
                "03:00",
            ])
            .output()
            .unwrap()
            .into()
    };
    install(false).code(0);
    let line = s
        .crontab()
        .lines()
        .find(|l| l.contains("bundle-schedule:odd"))
        .unwrap()
        .to_string();
    assert_eq!(s.crontab().lines().count(), 1, "{}", s.crontab());
    let command = cron_command(&line);
    let run: Run = std::process::Command::new("sh")
        .args(["-c", &command])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap()
        .into();
    run.code(0);
    assert_eq!(
        std::fs::read_dir(s.ws.path("odd-backups"))
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        1
    );

    install(true).code(0);
    let service = read(&s.unit_dir().join("bundle-odd.service"));
    let exec: Vec<&str> = service
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(exec.len(), 1, "{service}");
    assert_eq!(
        service.lines().filter(|l| l.starts_with('[')).count(),
        2,
        "{service}"
    );
    let description = service
        .lines()
        .find(|l| l.starts_with("Description="))
        .unwrap();
    assert!(
        !description.replace("%%", "").contains('%'),
        "raw specifier: {description}"
    );
    let argv = systemd_argv(exec[0].trim_start_matches("ExecStart="));
    assert_eq!(argv[0], bin.to_str().unwrap());
    assert_eq!(argv[2], config.to_str().unwrap());
    let run: Run = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .output()
        .unwrap()
        .into();
    run.code(0);

    // A newline in a path could add jobs or directives: refused.
    let bad =
        s.ws.path("bad\nExecStartPre=/bin/touch /tmp/pwned\n* * * * * touch /tmp/pwned");
    std::fs::create_dir_all(&bad).unwrap();
    let bad_config = bad.join("bundle.toml");
    std::fs::copy(&config, &bad_config).unwrap();
    let refused = s.run(&[
        "--config",
        bad_config.to_str().unwrap(),
        "schedule",
        "install",
        "--name",
        "bad",
        "--at",
        "03:00",
    ]);
    refused.code(2);
    assert!(
        refused.stderr.contains("control character"),
        "{}",
        refused.stderr
    );
    assert!(!s.unit_dir().join("bundle-bad.service").exists());
}

#[test]
fn without_systemd_or_cron_schedule_says_so_plainly() {
    let s = Setup::new(false);
    std::fs::remove_file(s.standins.join("crontab")).unwrap();
    let cfg = s.config();
    let run = |args: &[&str]| -> Run {
        s.ws.cmd()
            .env("PATH", &s.standins)
            .env("STANDIN_DIR", &s.standins)
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let status = run(&["schedule", "status"]);
    status.code(0);
    assert!(
        status
            .stderr
            .contains("no scheduler: neither systemd user services"),
        "{}",
        status.stderr
    );
    let install = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "schedule",
        "install",
        "--at",
        "02:30",
    ]);
    install.code(3);
    assert!(install.stderr.contains("nor cron"), "{}", install.stderr);
}

#[test]
fn a_missing_crontab_is_told_by_the_exit_status_not_the_words() {
    let s = Setup::new(false);
    // A cron that words "no crontab" its own way (another language, say).
    s.ws.write(
        "standins/crontab",
        &CRONTAB.replace("no crontab for tester", "keine crontab für tester"),
    );
    let run = s.run(&["schedule", "status"]);
    run.code(0);
    assert!(
        run.stderr.contains("no bundle schedules installed"),
        "{}",
        run.stderr
    );
}
