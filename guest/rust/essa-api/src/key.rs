//! [`ClientKey`]: the key of a value in the key-value store.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;

/// The key of a value in the key-value store: a UTF-8 string, cheap to clone.
///
/// Encoded (serde) as a plain string, so it can be a parameter of an
/// `#[essa_wrap]` function.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(Arc<String>);

impl ClientKey {
    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::ops::Deref for ClientKey {
    type Target = Arc<String>;

    fn deref(&self) -> &Arc<String> {
        &self.0
    }
}

impl AsRef<str> for ClientKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Arc<String>> for ClientKey {
    fn from(key: Arc<String>) -> Self {
        Self(key)
    }
}

impl From<String> for ClientKey {
    fn from(key: String) -> Self {
        Self(Arc::new(key))
    }
}

impl From<&str> for ClientKey {
    fn from(key: &str) -> Self {
        Self::from(key.to_owned())
    }
}

impl Serialize for ClientKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ClientKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}
