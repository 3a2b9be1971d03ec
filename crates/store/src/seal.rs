//! Secrets at rest: every secret the store keeps is sealed with AES-256-GCM under a master key
//! before it is written, and opened again when it is read, so nothing above the store ever sees
//! a sealed value and the database file never holds a secret in clear.
//!
//! # The sealed form
//!
//! A sealed value is one line of ASCII text:
//!
//! ```text
//! v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>
//! ```
//!
//! * `v1` names this format (AES-256-GCM, 96-bit nonce, 128-bit tag, standard base64 with
//!   padding). A stored value that does not start with `v1:` is plaintext written before
//!   sealing existed; the store reads it as such and seals it on the next start.
//! * The key id is the first 8 hex digits of the SHA-256 of the master key: it says which key
//!   opens the value (so values under an old and a new key can coexist during a rotation)
//!   without telling anything about the key.
//! * The nonce is 96 random bits drawn for every value (never a counter: several processes
//!   may seal under the same key).
//! * The associated data is the value's place (`destinations.secrets`, the row's id): a sealed
//!   value copied into another row or column does not open.
//!
//! Failures name the key id and the column, never the ciphertext or the plaintext.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "v1:";
/// Hex digits of a key id.
const KEY_ID_LEN: usize = 8;
/// Bytes of a master key.
pub const MASTER_KEY_LEN: usize = 32;

/// Names a master key: the first 8 hex digits of its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 256-bit master key. Its `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    bytes: [u8; MASTER_KEY_LEN],
    id: KeyId,
}

/// Why a text is not a master key. Never echoes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a master key must be base64 text")]
    NotBase64,
    #[error("a master key must be 32 bytes (44 characters of base64); this one is {0} bytes")]
    WrongLength(usize),
}

impl MasterKey {
    /// A new random key from the thread's CSPRNG (ChaCha, seeded and reseeded from the OS).
    pub fn generate() -> Self {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let id = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>();
        Self { bytes, id: KeyId(id[..KEY_ID_LEN].to_owned()) }
    }

    /// Parses the base64 (standard or URL-safe, padded or not) of 32 bytes; surrounding
    /// whitespace, such as the newline ending a key file, is ignored.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let decoded = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE.decode(text))
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| KeyError::NotBase64)?;
        let bytes: [u8; MASTER_KEY_LEN] =
            decoded.as_slice().try_into().map_err(|_| KeyError::WrongLength(decoded.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key as standard base64: what a key file and `SWITCHYARD_MASTER_KEY` hold. This is
    /// the secret itself; write it only where the key belongs.
    pub fn export_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// The master keys a store holds: the current one, which seals, and any others that only
/// open (an older key while a rotation is finished).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKeys {
    current: MasterKey,
    others: Vec<MasterKey>,
}

impl MasterKeys {
    pub fn new(current: MasterKey) -> Self {
        Self { current, others: Vec::new() }
    }

    /// One fresh random key: for tests and in-memory databases, whose secrets need not
    /// outlive the process.
    pub fn generated() -> Self {
        Self::new(MasterKey::generate())
    }

    /// Adds a key that opens values but never seals one. A key already held is ignored.
    pub fn with_opening_key(mut self, key: MasterKey) -> Self {
        if !self.ids().any(|id| id == key.id()) {
            self.others.push(key);
        }
        self
    }

    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Every key id held, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        std::iter::once(&self.current).chain(&self.others).map(MasterKey::id)
    }

    pub fn holds(&self, id: &KeyId) -> bool {
        self.ids().any(|held| held == id)
    }
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let others: Vec<&str> = self.others.iter().map(|k| k.id().as_str()).collect();
        f.debug_struct("MasterKeys")
            .field("current", &self.current.id().as_str())
            .field("others", &others)
            .finish()
    }
}

/// Why a stored value does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "sealed under master key {key_id}, which is not loaded (loaded: {loaded}); start with \
         the master key that sealed it (SWITCHYARD_MASTER_KEY or security.master_key_file)"
    )]
    UnknownKey { key_id: String, loaded: String },
    #[error("does not open with master key {key_id}: altered, or moved from another row")]
    Corrupt { key_id: String },
    #[error("starts like a sealed value but is not one")]
    Malformed,
    #[error("too large to seal")]
    TooLarge,
}

/// What a stored value is, judged by its first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredForm {
    Plaintext,
    Sealed(KeyId),
}

impl StoredForm {
    /// Reads the form from the start of a stored value (at least 12 bytes of it, when there).
    pub fn of(value: &[u8]) -> Self {
        let Some(rest) = value.strip_prefix(SEALED_PREFIX.as_bytes()) else {
            return Self::Plaintext;
        };
        match rest.get(..KEY_ID_LEN) {
            Some(id) if id.iter().all(u8::is_ascii_hexdigit) => {
                Self::Sealed(KeyId(String::from_utf8_lossy(id).into_owned()))
            }
            // Starts like a sealed value yet is not one: report it under a key that is never
            // loaded, so it is counted and refused rather than read as plaintext.
            _ => Self::Sealed(KeyId("?".repeat(KEY_ID_LEN))),
        }
    }
}

/// Which stored secrets a reseal covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Only values written in clear (by a version before sealing): done at every start.
    Plaintext,
    /// Every value not sealed under the current key: a master key rotation.
    NotUnderCurrentKey,
}

impl Reseal {
    pub(crate) fn covers(self, form: &StoredForm, current: &KeyId) -> bool {
        match (self, form) {
            (_, StoredForm::Plaintext) => true,
            (Self::Plaintext, StoredForm::Sealed(_)) => false,
            (Self::NotUnderCurrentKey, StoredForm::Sealed(id)) => id != current,
        }
    }
}

/// How the stored secrets are kept: how many in clear, how many under each key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretInventory {
    pub plaintext: u64,
    pub sealed: BTreeMap<KeyId, u64>,
}

impl SecretInventory {
    pub(crate) fn count(&mut self, form: StoredForm) {
        match form {
            StoredForm::Plaintext => self.plaintext += 1,
            StoredForm::Sealed(id) => *self.sealed.entry(id).or_default() += 1,
        }
    }

    /// Key ids that seal some value but are not among `keys`: those values cannot be opened.
    pub fn missing_keys<'a>(&'a self, keys: &MasterKeys) -> Vec<&'a KeyId> {
        self.sealed.keys().filter(|id| !keys.holds(id)).collect()
    }
}

/// Seals and opens values; built once from the store's [`MasterKeys`], cheap to clone.
#[derive(Clone)]
pub(crate) struct Sealer(Arc<Keyring>);

struct Keyring {
    current: (KeyId, LessSafeKey),
    others: BTreeMap<KeyId, LessSafeKey>,
}

fn aead_key(key: &MasterKey) -> LessSafeKey {
    // AES_256_GCM takes exactly MASTER_KEY_LEN bytes, which the type guarantees.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.bytes).expect("a 32-byte AES-256 key"))
}

impl Sealer {
    pub fn new(keys: &MasterKeys) -> Self {
        let current = (keys.current.id().clone(), aead_key(&keys.current));
        let others = keys.others.iter().map(|k| (k.id().clone(), aead_key(k))).collect();
        Self(Arc::new(Keyring { current, others }))
    }

    pub fn current_key_id(&self) -> &KeyId {
        &self.0.current.0
    }

    fn key(&self, id: &str) -> Option<&LessSafeKey> {
        if self.0.current.0.as_str() == id {
            return Some(&self.0.current.1);
        }
        self.0.others.iter().find(|(held, _)| held.as_str() == id).map(|(_, key)| key)
    }

    fn loaded(&self) -> String {
        std::iter::once(&self.0.current.0)
            .chain(self.0.others.keys())
            .map(KeyId::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Seals `plaintext` under the current key, bound to `place` (see [`place`]).
    pub fn seal(&self, place: &[u8], plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut in_out = plaintext.to_vec();
        self.0
            .current
            .1
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(place), &mut in_out)
            .map_err(|_| SealError::TooLarge)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(format!("{SEALED_PREFIX}{}:{}", self.0.current.0, STANDARD.encode(&sealed)))
    }

    /// Opens a value sealed by [`Sealer::seal`] under any key held.
    pub fn open(&self, place: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let rest = sealed.strip_prefix(SEALED_PREFIX.as_bytes()).ok_or(SealError::Malformed)?;
        let rest = std::str::from_utf8(rest).map_err(|_| SealError::Malformed)?;
        let (key_id, encoded) = rest.split_once(':').ok_or(SealError::Malformed)?;
        if key_id.len() != KEY_ID_LEN || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SealError::Malformed);
        }
        let key = self
            .key(key_id)
            .ok_or_else(|| SealError::UnknownKey { key_id: key_id.to_owned(), loaded: self.loaded() })?;
        let mut bytes = STANDARD.decode(encoded).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Malformed);
        }
        let mut in_out = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Malformed)?;
        let corrupt = || SealError::Corrupt { key_id: key_id.to_owned() };
        let plaintext_len =
            key.open_in_place(nonce, Aad::from(place), &mut in_out).map_err(|_| corrupt())?.len();
        in_out.truncate(plaintext_len);
        Ok(in_out)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer(current: {}, loaded: {})", self.0.current.0, self.loaded())
    }
}

/// The associated data binding a sealed value to its place: the column, then each part of the
/// row's key, separated by NUL (which no id contains), so no two places share a binding.
pub(crate) fn place(column: &str, key: &[&str]) -> Vec<u8> {
    let mut aad = column.as_bytes().to_vec();
    for part in key {
        aad.push(0);
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(keys: &MasterKeys) -> Sealer {
        Sealer::new(keys)
    }

    #[test]
    fn values_round_trip_and_never_hold_the_plaintext() {
        let keys = MasterKeys::generated();
        let s = sealer(&keys);
        let at = place("destinations.secrets", &["dst_1"]);
        let sealed = s.seal(&at, b"{\"token\":\"hunter2\"}").unwrap();
        assert!(sealed.starts_with(&format!("v1:{}:", keys.current().id())), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(s.open(&at, sealed.as_bytes()).unwrap(), b"{\"token\":\"hunter2\"}");
        assert_eq!(StoredForm::of(sealed.as_bytes()), StoredForm::Sealed(keys.current().id().clone()));
        assert_eq!(s.open(&at, s.seal(&at, b"").unwrap().as_bytes()).unwrap(), b"");
    }

    #[test]
    fn every_seal_draws_a_new_nonce() {
        let s = sealer(&MasterKeys::generated());
        let at = place("c", &["r"]);
        assert_ne!(s.seal(&at, b"same").unwrap(), s.seal(&at, b"same").unwrap());
    }

    #[test]
    fn a_value_moved_to_another_place_does_not_open() {
        let s = sealer(&MasterKeys::generated());
        let sealed = s.seal(&place("destinations.secrets", &["dst_1"]), b"x").unwrap();
        let err = s.open(&place("destinations.secrets", &["dst_2"]), sealed.as_bytes()).unwrap_err();
        assert!(matches!(err, SealError::Corrupt { .. }), "{err:?}");
        // Parts are separated, so ("a", "bc") and ("ab", "c") differ.
        assert_ne!(place("t", &["a", "bc"]), place("t", &["ab", "c"]));
    }

    #[test]
    fn a_wrong_key_is_named_and_the_ciphertext_is_not_echoed() {
        let old = MasterKeys::generated();
        let sealed = sealer(&old).seal(b"p", b"secret").unwrap();
        let new = MasterKeys::generated();
        let err = sealer(&new).open(b"p", sealed.as_bytes()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(old.current().id().as_str()), "{message}");
        assert!(message.contains(new.current().id().as_str()), "{message}");
        let body = sealed.rsplit(':').next().unwrap();
        assert!(!message.contains(body), "{message}");

        // With the old key held as an opening key, it opens; new values go under the new key.
        let both = MasterKeys::new(new.current().clone()).with_opening_key(old.current().clone());
        let s = sealer(&both);
        assert_eq!(s.open(b"p", sealed.as_bytes()).unwrap(), b"secret");
        assert!(s.seal(b"p", b"x").unwrap().starts_with(&format!("v1:{}:", new.current().id())));
    }

    #[test]
    fn altered_values_are_errors_not_panics() {
        let s = sealer(&MasterKeys::generated());
        let sealed = s.seal(b"p", b"secret").unwrap();
        let id = s.current_key_id().to_string();
        for bad in [
            "v1:".to_owned(),
            format!("v1:{id}"),
            format!("v1:{id}:"),
            format!("v1:{id}:!!!"),
            format!("v1:{id}:AAAA"),
            format!("v1:zz:{}", &sealed[12..]),
            format!("v1:{id}:{}", STANDARD.encode([0u8; 40])),
        ] {
            assert!(s.open(b"p", bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(StoredForm::of(b"{\"a\":1}"), StoredForm::Plaintext);
        assert!(matches!(StoredForm::of(b"v1:zz"), StoredForm::Sealed(_)));
    }

    #[test]
    fn keys_parse_from_base64_and_are_named_by_their_hash() {
        let key = MasterKey::generate();
        let text = key.export_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(MasterKey::from_base64(&format!("  {text}\n")).unwrap(), key);
        assert_eq!(key.id().as_str().len(), 8);
        // SHA-256 of 32 zero bytes starts 66687aad.
        assert_eq!(MasterKey::from_bytes([0; 32]).id().as_str(), "66687aad");
        assert_eq!(MasterKey::from_base64("not base64!"), Err(KeyError::NotBase64));
        assert_eq!(MasterKey::from_base64("c2VjcmV0"), Err(KeyError::WrongLength(6)));
        assert!(!format!("{key:?}").contains(&text));
        assert!(!format!("{:?}", MasterKeys::new(key.clone())).contains(&text));
    }

    #[test]
    fn opening_keys_are_held_once() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        let keys = MasterKeys::new(a.clone())
            .with_opening_key(a.clone())
            .with_opening_key(b.clone())
            .with_opening_key(b);
        assert_eq!(keys.ids().count(), 2);
        assert!(keys.holds(a.id()));
    }
}
