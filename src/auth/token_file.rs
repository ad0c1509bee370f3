//! The token file (`--auth-token-file`): bearer tokens, by SHA-256 digest or in plain text, each with the subject
//! it stands for and what that subject may do. Re-read when its content changes, so that tokens can be added,
//! rotated and revoked without a restart.
//!
//! An entry without a token grants a client-certificate subject (mutual TLS): certificates are matched to
//! entries by subject name, whether or not the entry also has a token, so one subject has one set of grants
//! however it authenticates.
//!
//! Owns the format, its validation and the lookup; never decides whether a request is allowed (that is
//! `crate::usecases`), and never keeps a plain token in memory: plain entries are hashed as they are read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;

use super::{Action, Grants};

/// How often the file is read to see whether it changed. Reading a file of a few kilobytes every two seconds
/// costs nothing, and comparing its bytes (not its mtime) also catches a Kubernetes Secret volume's atomic
/// symlink swap and editors that keep the mtime; a revoked token stops working within this time.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The SHA-256 digest of a token.
pub type TokenDigest = [u8; 32];

/// The digest of `token`, the form tokens are compared in.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    tokens: Vec<EntryDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryDoc {
    subject: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    token: Option<String>,
    namespaces: Vec<String>,
    actions: Vec<Action>,
}

/// The tokens of one version of the file.
#[derive(Debug, Default)]
pub struct TokenTable {
    /// Each entry's token digest (`None`: a certificate-only entry) and grants.
    entries: Vec<(Option<TokenDigest>, Arc<Grants>)>,
}

impl TokenTable {
    /// Parses and validates a token file's content; the error names the entry and what is wrong with it.
    pub fn parse(raw: &[u8]) -> Result<TokenTable, String> {
        let doc: FileDoc = serde_yaml::from_slice(raw).map_err(|e| e.to_string())?;
        let mut entries: Vec<(Option<TokenDigest>, Arc<Grants>)> =
            Vec::with_capacity(doc.tokens.len());
        for (i, e) in doc.tokens.into_iter().enumerate() {
            let at = format!("tokens[{i}]");
            if e.subject.trim().is_empty() {
                return Err(format!("{at}: subject must not be empty"));
            }
            let at = format!("{at} (subject {:?})", e.subject);
            let digest = match (&e.sha256, &e.token) {
                (Some(hex_digest), None) => {
                    let bytes = hex::decode(hex_digest.trim())
                        .ok()
                        .filter(|b| b.len() == 32);
                    bytes
                        .and_then(|b| TokenDigest::try_from(b).ok())
                        .map(Some)
                        .ok_or_else(|| format!("{at}: sha256 must be 64 hexadecimal characters"))?
                }
                (None, Some(t)) if !t.is_empty() => Some(digest(t)),
                (None, Some(_)) => return Err(format!("{at}: token must not be empty")),
                // Grants for a client certificate naming this subject, and no token.
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(format!("{at}: needs at most one of sha256 and token"));
                }
            };
            if e.namespaces.is_empty() || e.namespaces.iter().any(|n| n.is_empty()) {
                return Err(format!(
                    "{at}: namespaces must list at least one non-empty pattern"
                ));
            }
            if e.actions.is_empty() {
                return Err(format!("{at}: actions must list at least one action"));
            }
            // Two subjects behind one token would make every audit line ambiguous.
            if digest.is_some() && entries.iter().any(|(d, _)| d == &digest) {
                return Err(format!("{at}: the same token is listed twice"));
            }
            let grants = Grants {
                subject: e.subject,
                namespaces: e.namespaces,
                actions: e.actions,
            };
            // Several tokens of one subject (a rotation) are fine; several sets of grants are not: a
            // certificate of that subject would have no one answer.
            if let Some((j, _)) = entries.iter().enumerate().find(|(_, (_, g))| {
                g.subject == grants.subject
                    && (g.namespaces != grants.namespaces || g.actions != grants.actions)
            }) {
                return Err(format!(
                    "{at}: grants differ from tokens[{j}] of the same subject; list the same namespaces and actions"
                ));
            }
            entries.push((digest, Arc::new(grants)));
        }
        Ok(TokenTable { entries })
    }

    /// The grants of the token with this digest. Every entry is compared, in constant time, so the time taken
    /// says nothing about which entry (if any) matched or how much of a digest did.
    pub fn lookup(&self, presented: &TokenDigest) -> Option<Arc<Grants>> {
        let mut found = None;
        for (d, grants) in &self.entries {
            let Some(d) = d else { continue };
            let same: bool = d.ct_eq(presented).into();
            if same && found.is_none() {
                found = Some(grants.clone());
            }
        }
        found
    }

    /// The grants of the subject named `subject` (a client certificate's name).
    pub fn lookup_subject(&self, subject: &str) -> Option<Arc<Grants>> {
        self.entries
            .iter()
            .find(|(_, g)| g.subject == subject)
            .map(|(_, g)| g.clone())
    }

    /// How many entries the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The token file in force: the last version that parsed.
pub struct TokenFile {
    path: PathBuf,
    table: RwLock<Arc<TokenTable>>,
    /// The bytes the table was built from (or the last bytes that failed), to see when the file changes.
    seen: std::sync::Mutex<Vec<u8>>,
}

impl TokenFile {
    /// Reads the file; an unreadable or malformed file is an error naming it.
    pub fn open(path: &Path) -> anyhow::Result<TokenFile> {
        let raw = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", path.display()))?;
        let table = TokenTable::parse(&raw)
            .map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            table: RwLock::new(Arc::new(table)),
            seen: std::sync::Mutex::new(raw),
        })
    }

    /// The tokens in force.
    pub fn table(&self) -> Arc<TokenTable> {
        // A std lock: held only to clone an Arc, never across an await.
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the file again if it changed: a valid new version replaces the table; a malformed or unreadable
    /// one is logged once and the last good version stays in force.
    pub fn reload(&self) {
        let raw = match std::fs::read(&self.path) {
            Ok(raw) => raw,
            Err(e) => {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                // Log a vanished file once, not every poll: an empty "seen" marks it.
                if !seen.is_empty() {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot read the token file; keeping the previous tokens");
                    seen.clear();
                }
                return;
            }
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == raw {
            return;
        }
        match TokenTable::parse(&raw) {
            Ok(table) => {
                tracing::info!(path = %self.path.display(), tokens = table.len(), "token file reloaded");
                *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "malformed token file; keeping the previous tokens");
            }
        }
        *seen = raw;
    }

    /// Polls the file every [`RELOAD_POLL`] until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut poll = tokio::time::interval(RELOAD_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = poll.tick() => {}
            }
            // Blocking file I/O off the runtime's worker threads.
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
tokens:
  - subject: manager
    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    namespaces: ["team-*"]
    actions: [provision, deprovision, read]
  - subject: dashboard
    token: "dashboard-token"
    namespaces: ["*"]
    actions: [read]
"#;

    #[test]
    fn both_forms_parse_and_are_found_by_digest() {
        let t = TokenTable::parse(FILE.as_bytes()).unwrap();
        assert_eq!(t.len(), 2);
        // 9f86… is the SHA-256 of "test".
        let m = t.lookup(&digest("test")).unwrap();
        assert_eq!(m.subject, "manager");
        assert_eq!(m.namespaces, vec!["team-*"]);
        assert_eq!(
            m.actions,
            vec![Action::Provision, Action::Deprovision, Action::Read]
        );
        let d = t.lookup(&digest("dashboard-token")).unwrap();
        assert_eq!(d.subject, "dashboard");
        assert_eq!(d.actions, vec![Action::Read]);
        assert!(t.lookup(&digest("Test")).is_none());
        assert!(t.lookup(&digest("")).is_none());
    }

    #[test]
    fn certificate_subjects_find_their_entry_by_name() {
        let f = format!(
            "{FILE}  - subject: \"spiffe://kidp/manager\"\n    namespaces: [\"team-*\"]\n    actions: [read]\n"
        );
        let t = TokenTable::parse(f.as_bytes()).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.lookup_subject("dashboard").unwrap().actions,
            vec![Action::Read]
        );
        let s = t.lookup_subject("spiffe://kidp/manager").unwrap();
        assert_eq!(s.namespaces, vec!["team-*"]);
        assert!(t.lookup_subject("Dashboard").is_none());
        // A certificate-only entry has no token to be found by.
        assert!(t.lookup(&digest("")).is_none());
        // Two tokens of one subject with the same grants: a rotation.
        let rotation = "tokens: [{subject: a, token: t1, namespaces: [x], actions: [read]}, {subject: a, token: t2, namespaces: [x], actions: [read]}]";
        assert_eq!(TokenTable::parse(rotation.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let f = FILE.replace("9f86d081", "9F86D081");
        let t = TokenTable::parse(f.as_bytes()).unwrap();
        assert!(t.lookup(&digest("test")).is_some());
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        let cases = [
            ("tokens: [", "did not find expected"),
            (
                "tokens: [{subject: a, token: t, namespaces: [x], actions: [read], colour: blue}]",
                "unknown field `colour`",
            ),
            (
                "tokens: [{subject: a, token: t, namespaces: [x], actions: [write]}]",
                "unknown variant `write`",
            ),
            (
                "tokens: [{subject: a, token: t, sha256: '00', namespaces: [x], actions: [read]}]",
                "tokens[0] (subject \"a\"): needs at most one of sha256 and token",
            ),
            (
                "tokens: [{subject: a, token: t, namespaces: [x], actions: [read]}, {subject: a, namespaces: [y], actions: [read]}]",
                "tokens[1] (subject \"a\"): grants differ from tokens[0] of the same subject",
            ),
            (
                "tokens: [{subject: a, sha256: 'abc', namespaces: [x], actions: [read]}]",
                "sha256 must be 64 hexadecimal characters",
            ),
            (
                "tokens: [{subject: '', token: t, namespaces: [x], actions: [read]}]",
                "tokens[0]: subject must not be empty",
            ),
            (
                "tokens: [{subject: a, token: '', namespaces: [x], actions: [read]}]",
                "token must not be empty",
            ),
            (
                "tokens: [{subject: a, token: t, namespaces: [], actions: [read]}]",
                "namespaces must list at least one",
            ),
            (
                "tokens: [{subject: a, token: t, namespaces: [x], actions: []}]",
                "actions must list at least one",
            ),
            (
                "tokens: [{subject: a, token: t, actions: [read]}]",
                "missing field `namespaces`",
            ),
            (
                "tokens: [{subject: a, token: t, namespaces: [x], actions: [read]}, {subject: b, token: t, namespaces: [x], actions: [read]}]",
                "tokens[1] (subject \"b\"): the same token is listed twice",
            ),
        ];
        for (raw, want) in cases {
            let err = TokenTable::parse(raw.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{raw}: {err}");
        }
    }

    #[test]
    fn an_empty_file_has_no_tokens() {
        assert_eq!(TokenTable::parse(b"tokens: []").unwrap().len(), 0);
        assert_eq!(TokenTable::parse(b"{}").unwrap().len(), 0);
    }

    #[test]
    fn a_malformed_reload_keeps_the_last_good_table() {
        let dir = std::env::temp_dir().join(format!("kidp-token-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.yaml");
        std::fs::write(&path, FILE).unwrap();
        let f = TokenFile::open(&path).unwrap();
        assert!(f.table().lookup(&digest("dashboard-token")).is_some());
        std::fs::write(&path, "tokens: [{subject: x}]").unwrap();
        f.reload();
        assert!(f.table().lookup(&digest("dashboard-token")).is_some());
        std::fs::write(
            &path,
            "tokens: [{subject: new, token: new-token, namespaces: ['*'], actions: [read]}]",
        )
        .unwrap();
        f.reload();
        assert!(f.table().lookup(&digest("dashboard-token")).is_none());
        assert_eq!(
            f.table().lookup(&digest("new-token")).unwrap().subject,
            "new"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
