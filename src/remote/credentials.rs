//! Where an S3 remote's credentials come from: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; or a
//! web-identity or container credential the engine resolves), else a
//! profile of the AWS shared credentials file (`AWS_PROFILE`, default
//! `default`, in `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`).
//! Never from `bundle.toml`; a missing one is named, a value never shown.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// What is said when no credentials are found at all.
const NO_CREDENTIALS: &str =
    "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials";

/// Keys read from a shared credentials file.
pub struct ProfileKeys {
    /// `aws_access_key_id`.
    pub access_key_id: String,
    /// `aws_secret_access_key`.
    pub secret_access_key: String,
    /// `aws_session_token`, when present.
    pub session_token: Option<String>,
}

/// Where the credentials are.
pub enum Credentials {
    /// In the environment; the engine reads them.
    Environment,
    /// In a profile of the shared credentials file.
    Profile(ProfileKeys),
}

/// Finds the credentials for remote `remote`, or says what is missing.
pub fn find(remote: &str) -> Result<Credentials> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let fail = |reason: String| {
        Err(Error::Usage(format!(
            "remote \"{remote}\": {reason}; credentials come only from the environment or ~/.aws/credentials (see docs/remotes.md)"
        )))
    };
    if set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    {
        return Ok(Credentials::Environment);
    }
    match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        (true, true) => return Ok(Credentials::Environment),
        (true, false) => return fail("AWS_SECRET_ACCESS_KEY is not set".into()),
        (false, true) => return fail("AWS_ACCESS_KEY_ID is not set".into()),
        (false, false) => {}
    }
    let named = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty());
    let profile = named.clone().unwrap_or_else(|| "default".into());
    let Some(file) = credentials_file() else {
        return fail(NO_CREDENTIALS.into());
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(_) if named.is_none() => return fail(NO_CREDENTIALS.into()),
        Err(e) => {
            return fail(format!(
                "AWS_PROFILE is {profile:?} but {} cannot be read ({e})",
                file.display()
            ))
        }
    };
    match profile_keys(&text, &profile) {
        Some(keys) => Ok(Credentials::Profile(keys)),
        None => fail(format!(
            "no credentials: profile {profile:?} in {} has no aws_access_key_id and aws_secret_access_key (and AWS_ACCESS_KEY_ID is not set)",
            file.display()
        )),
    }
}

/// The shared credentials file.
fn credentials_file() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(f));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".aws/credentials"))
}

/// The keys of `[profile]` in an INI text.
fn profile_keys(text: &str, profile: &str) -> Option<ProfileKeys> {
    let mut inside = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !inside {
            continue;
        }
        let value = Some(value.trim().to_string());
        match key.trim() {
            "aws_access_key_id" => id = value,
            "aws_secret_access_key" => secret = value,
            "aws_session_token" => token = value,
            _ => {}
        }
    }
    Some(ProfileKeys {
        access_key_id: id.filter(|v| !v.is_empty())?,
        secret_access_key: secret.filter(|v| !v.is_empty())?,
        session_token: token.filter(|v| !v.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_read_from_its_own_section_only() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n# team\n[bench]\naws_access_key_id=C\naws_secret_access_key = D\naws_session_token = T\n[empty]\naws_access_key_id = E\n";
        let k = profile_keys(text, "bench").unwrap();
        assert_eq!(
            (k.access_key_id.as_str(), k.secret_access_key.as_str()),
            ("C", "D")
        );
        assert_eq!(k.session_token.as_deref(), Some("T"));
        let k = profile_keys(text, "default").unwrap();
        assert_eq!((k.access_key_id.as_str(), k.session_token), ("A", None));
        assert!(profile_keys(text, "empty").is_none());
        assert!(profile_keys(text, "missing").is_none());
    }
}
