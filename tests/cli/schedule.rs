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
            "{when} '{}' '--config' '{cfg}' 'create' '--prune' '--quiet' # bundle-schedule:{name}",
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
