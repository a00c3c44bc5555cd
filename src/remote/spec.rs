//! A `[[remotes]]` entry of `bundle.toml`: where bundles go offsite and how
//! they are stored there. Credentials are never part of it: they come from
//! the environment (see [`crate::remote::engine`]).

use serde::Deserialize;

use crate::retention::Policy;

/// How objects are stored on a remote. Written out on purpose, so that
/// nobody ends up with plaintext in a bucket by default.
#[derive(Debug, Clone)]
pub enum Encryption {
    /// Compressed plaintext.
    None,
    /// Compressed, then encrypted to these age X25519 public keys.
    Age(Vec<age::x25519::Recipient>),
}

/// zstd level used when a remote does not say.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// One remote as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSpec {
    /// Its name, `[a-z0-9_-]+`, as given to `--remote`.
    pub name: String,
    /// Where: `s3://bucket/prefix` or `file:///path`.
    pub url: String,
    /// Any S3-compatible server instead of AWS (`http://` allowed, with a warning).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The bucket's region (else `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Required: `"none"` or `"age"` (see [`Encryption`]).
    #[serde(default)]
    pub encryption: Option<String>,
    /// With `encryption = "age"`: the public keys (`age1…`) objects are encrypted to.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// With `encryption = "age"`: a file of more public keys, one per line
    /// (`#` comments allowed), relative to the config file.
    #[serde(default)]
    pub recipients_file: Option<std::path::PathBuf>,
    /// zstd level of the stored objects (1–19; default [`DEFAULT_ZSTD_LEVEL`]).
    #[serde(default)]
    pub zstd_level: Option<i32>,
    /// This remote's own retention for `bundle prune --remote`, when it differs.
    #[serde(default)]
    pub retention: Option<Policy>,
}

impl RemoteSpec {
    /// Checks the entry (its name is checked by the config); the reason names it.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        self.encryption()
            .map_err(|e| format!("remote \"{name}\": {e}"))?;
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("s3") | Some("file") => {}
            Some(other) => {
                return Err(format!(
                    "remote \"{name}\": URL scheme {other}:// is not supported by this build (use s3:// or file://)"
                ))
            }
            None => {
                return Err(format!(
                    "remote \"{name}\": url {:?} is not a URL (s3://bucket/prefix or file:///path)",
                    self.url
                ))
            }
        }
        if let Some(level) = self.zstd_level {
            if !(1..=19).contains(&level) {
                return Err(format!("remote \"{name}\": zstd_level must be 1 to 19"));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "remote \"{name}\": endpoint must start with http:// or https://"
                ));
            }
        }
        Ok(())
    }

    /// The encryption it asks for, with its recipients read and checked.
    pub fn encryption(&self) -> Result<Encryption, String> {
        let has_recipients = !self.recipients.is_empty() || self.recipients_file.is_some();
        match self.encryption.as_deref() {
            Some("none") if has_recipients => Err(
                "encryption is \"none\" but recipients are given; say encryption = \"age\" to encrypt to them, or remove them".into(),
            ),
            Some("none") => Ok(Encryption::None),
            Some("age") => self.age_recipients().map(Encryption::Age),
            None => Err("`encryption` must be written out: \"age\" (with `recipients`) to encrypt, or \"none\" for compressed plaintext in the bucket".into()),
            Some(other) => Err(format!(
                "encryption {other:?} is not supported; use \"age\" (with `recipients`) or \"none\""
            )),
        }
    }

    /// The age recipients of `recipients` and `recipients_file`, at least one.
    fn age_recipients(&self) -> Result<Vec<age::x25519::Recipient>, String> {
        let mut lines: Vec<(String, String)> = self
            .recipients
            .iter()
            .enumerate()
            .map(|(n, r)| (format!("recipients[{n}]"), r.clone()))
            .collect();
        if let Some(file) = &self.recipients_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read recipients_file {}: {e}", file.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if !line.is_empty() && !line.starts_with('#') {
                    let at = format!("{} line {}", file.display(), n + 1);
                    lines.push((at, line.to_string()));
                }
            }
        }
        if lines.is_empty() {
            return Err("encryption = \"age\" needs at least one public key in `recipients` or `recipients_file` (make one with `bundle key new --out FILE`)".into());
        }
        lines
            .iter()
            .map(|(at, key)| {
                key.parse::<age::x25519::Recipient>()
                    .map_err(|_| format!("{at} is not an age public key (age1…): {key:?}"))
            })
            .collect()
    }

    /// Its zstd level.
    pub fn zstd_level(&self) -> i32 {
        self.zstd_level.unwrap_or(DEFAULT_ZSTD_LEVEL)
    }

    /// What the user should know about it (a plain-http endpoint).
    pub fn warnings(&self) -> Vec<String> {
        match &self.endpoint {
            Some(e) if e.starts_with("http://") => vec![format!(
                "remote \"{}\": endpoint {e} is plain http: bundle contents cross the network unencrypted",
                self.name
            )],
            _ => Vec::new(),
        }
    }
}
