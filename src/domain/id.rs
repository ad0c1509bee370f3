//! Deployment ids: `deploy-` followed by 32 lowercase hex characters (128 random bits).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const PREFIX: &str = "deploy-";
const HEX_LEN: usize = 32;

/// The stable name of one deployment for its whole life: in the 202, every callback, the intent record and
/// the `kidp.io/deployment-id` label on every object.
///
/// Only [`DeploymentId::generate`] and [`DeploymentId::parse`] make one, so holding a `DeploymentId` means the
/// text has the right shape (and, at 7 + 32 = 39 characters, is a valid label value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentId(String);

impl DeploymentId {
    /// A fresh random id.
    ///
    /// 128 bits from the thread-local CSPRNG: ids are never coordinated between broker replicas, so they must
    /// be unguessable and collision-free by size alone.
    pub fn generate() -> Self {
        let bits: u128 = rand::random();
        DeploymentId(format!("{PREFIX}{bits:032x}"))
    }

    /// Accepts exactly `deploy-` + 32 lowercase hex characters. Uppercase hex is refused rather than folded,
    /// because the id is also a label value and a selector must match it byte for byte.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(PREFIX)?;
        let ok = hex.len() == HEX_LEN
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| DeploymentId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DeploymentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The error of parsing a malformed deployment id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDeploymentId;

impl fmt::Display for InvalidDeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a deployment id looks like deploy-<32 hex characters>")
    }
}

impl std::error::Error for InvalidDeploymentId {}

impl FromStr for DeploymentId {
    type Err = InvalidDeploymentId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or(InvalidDeploymentId)
    }
}

impl Serialize for DeploymentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DeploymentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(InvalidDeploymentId))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_the_documented_shape_and_parse_back() {
        let id = DeploymentId::generate();
        assert_eq!(id.as_str().len(), 39);
        assert!(id.as_str().starts_with("deploy-"));
        assert_eq!(DeploymentId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.to_string(), id.as_str());
    }

    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<_> =
            (0..1000).map(|_| DeploymentId::generate()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn parse_accepts_the_seed_example() {
        let id = DeploymentId::parse("deploy-fc8fc917314e2b8b698427458cd35342").unwrap();
        assert_eq!(id.as_str(), "deploy-fc8fc917314e2b8b698427458cd35342");
    }

    #[test]
    fn parse_rejects_every_other_shape() {
        for bad in [
            "",
            "deploy-",
            "deploy-abc123",
            "deploy-FC8FC917314E2B8B698427458CD35342",
            "deploy-fc8fc917314e2b8b698427458cd3534",
            "deploy-fc8fc917314e2b8b698427458cd353420",
            "deploy-fc8fc917314e2b8b698427458cd3534g",
            "Deploy-fc8fc917314e2b8b698427458cd35342",
            "fc8fc917314e2b8b698427458cd35342",
            " deploy-fc8fc917314e2b8b698427458cd35342",
        ] {
            assert_eq!(DeploymentId::parse(bad), None, "{bad:?}");
        }
        assert_eq!("deploy-x".parse::<DeploymentId>(), Err(InvalidDeploymentId));
    }

    #[test]
    fn serde_is_a_validated_string() {
        let id = DeploymentId::parse("deploy-0123456789abcdef0123456789abcdef").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, r#""deploy-0123456789abcdef0123456789abcdef""#);
        assert_eq!(serde_json::from_str::<DeploymentId>(&json).unwrap(), id);
        let err = serde_json::from_str::<DeploymentId>(r#""deploy-abc""#).unwrap_err();
        assert!(err.to_string().contains("deploy-<32 hex characters>"));
    }
}
