//! Bundle signatures: ed25519 over the manifest, which pins every
//! component's sha256 (checked at load), so one signature covers the
//! manifest and every component byte.
//!
//! Files are text: `<manifest>.sig` holds `arbiter-bundle-signature-v1
//! <key id> <signature hex>`; keys are `arbiter-ed25519-secret-key <hex>`
//! and `arbiter-ed25519-public-key <hex>`.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const SIGNATURE_TAG: &str = "arbiter-bundle-signature-v1";
const SECRET_TAG: &str = "arbiter-ed25519-secret-key";
const PUBLIC_TAG: &str = "arbiter-ed25519-public-key";
/// Domain separation: a bundle signature can never be mistaken for another.
const CONTEXT: &[u8] = b"arbiter bundle manifest v1\n";

/// Why a bundle's signature, or a key, is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A key, manifest or signature file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key or signature file is not what it should hold.
    #[error("{path} is not {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it should hold (`an ed25519 public key`).
        what: &'static str,
    },
    /// A signature is required and the manifest has none.
    #[error("bundle {manifest} is not signed (no {manifest}.sig)")]
    Unsigned {
        /// The manifest.
        manifest: PathBuf,
    },
    /// Signed, by a key the server does not trust.
    #[error("bundle {manifest} is signed by key {key_id}, which is not trusted")]
    UntrustedKey {
        /// The manifest.
        manifest: PathBuf,
        /// [`key_id`] of the signing key.
        key_id: String,
    },
    /// The signature does not verify: the manifest changed after signing.
    #[error("bundle {manifest}: the signature does not match the manifest (it was changed after signing)")]
    BadSignature {
        /// The manifest.
        manifest: PathBuf,
    },
    /// The OS gave no randomness for a new key.
    #[error("cannot generate a key: {0}")]
    Random(String),
}

/// A short, stable name of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

fn read(path: &Path) -> Result<String, SignatureError> {
    std::fs::read_to_string(path).map_err(|source| SignatureError::Read { path: path.to_owned(), source })
}

fn parse_hex<const N: usize>(
    text: &str,
    tag: &str,
    path: &Path,
    what: &'static str,
) -> Result<[u8; N], SignatureError> {
    let malformed = || SignatureError::Malformed { path: path.to_owned(), what };
    let hex_text = text.trim().strip_prefix(tag).ok_or_else(malformed)?.trim();
    let bytes = hex::decode(hex_text).map_err(|_| malformed())?;
    bytes.try_into().map_err(|_| malformed())
}

/// A fresh ed25519 signing key from the OS's randomness.
pub fn generate_key() -> Result<SigningKey, SignatureError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| SignatureError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The key's text form, as `arbiter keygen` writes it.
pub fn secret_key_text(key: &SigningKey) -> String {
    format!("{SECRET_TAG} {}\n", hex::encode(key.to_bytes()))
}

/// The public key's text form (the `.pub` file).
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_TAG} {}\n", hex::encode(key.as_bytes()))
}

/// Reads a secret key file `arbiter keygen` wrote.
pub fn read_secret_key(path: &Path) -> Result<SigningKey, SignatureError> {
    let bytes = parse_hex::<32>(&read(path)?, SECRET_TAG, path, "an arbiter ed25519 secret key")?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Reads a public key file.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, SignatureError> {
    let bytes = parse_hex::<32>(&read(path)?, PUBLIC_TAG, path, "an arbiter ed25519 public key")?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| SignatureError::Malformed { path: path.to_owned(), what: "a valid ed25519 public key" })
}

fn payload(manifest: &[u8]) -> Vec<u8> {
    let mut payload = CONTEXT.to_vec();
    payload.extend_from_slice(&Sha256::digest(manifest));
    payload
}

/// Where a manifest's detached signature lives.
pub fn signature_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Signs a manifest; returns the text of its `.sig` file.
pub fn sign_manifest(manifest: &[u8], key: &SigningKey) -> String {
    let signature = key.sign(&payload(manifest));
    format!("{SIGNATURE_TAG} {} {}\n", key_id(&key.verifying_key()), hex::encode(signature.to_bytes()))
}

/// Checks that `manifest` (read from `path`) carries a valid signature by
/// one of `trusted`; returns the signing key's id.
pub fn verify_manifest(path: &Path, manifest: &[u8], trusted: &[VerifyingKey]) -> Result<String, SignatureError> {
    let sig_path = signature_path(path);
    let text = match std::fs::read_to_string(&sig_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignatureError::Unsigned { manifest: path.to_owned() });
        }
        Err(source) => return Err(SignatureError::Read { path: sig_path, source }),
    };
    let malformed = || SignatureError::Malformed { path: sig_path.clone(), what: "an arbiter bundle signature" };
    let mut fields = text.split_whitespace();
    let (Some(SIGNATURE_TAG), Some(key), Some(signature), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed());
    };
    let signature: [u8; 64] = hex::decode(signature).ok().and_then(|b| b.try_into().ok()).ok_or_else(malformed)?;
    let signer = trusted
        .iter()
        .find(|k| key_id(k) == key)
        .ok_or_else(|| SignatureError::UntrustedKey { manifest: path.to_owned(), key_id: key.to_owned() })?;
    signer
        .verify_strict(&payload(manifest), &Signature::from_bytes(&signature))
        .map_err(|_| SignatureError::BadSignature { manifest: path.to_owned() })?;
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_catches_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("bundle.toml");
        std::fs::write(&manifest, "[bundle]\nname = \"x\"\n").unwrap();
        let key = generate_key().unwrap();
        let other = generate_key().unwrap();
        std::fs::write(signature_path(&manifest), sign_manifest(b"[bundle]\nname = \"x\"\n", &key)).unwrap();
        let trusted = [key.verifying_key()];
        assert_eq!(verify_manifest(&manifest, b"[bundle]\nname = \"x\"\n", &trusted).unwrap(), key_id(&trusted[0]));
        assert!(matches!(
            verify_manifest(&manifest, b"[bundle]\nname = \"y\"\n", &trusted),
            Err(SignatureError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_manifest(&manifest, b"[bundle]\nname = \"x\"\n", &[other.verifying_key()]),
            Err(SignatureError::UntrustedKey { .. })
        ));
        std::fs::remove_file(signature_path(&manifest)).unwrap();
        assert!(matches!(verify_manifest(&manifest, b"", &trusted), Err(SignatureError::Unsigned { .. })));
    }

    #[test]
    fn keys_round_trip_through_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_key().unwrap();
        std::fs::write(dir.path().join("k"), secret_key_text(&key)).unwrap();
        std::fs::write(dir.path().join("k.pub"), public_key_text(&key.verifying_key())).unwrap();
        assert_eq!(read_secret_key(&dir.path().join("k")).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(read_public_key(&dir.path().join("k.pub")).unwrap(), key.verifying_key());
        assert!(read_public_key(&dir.path().join("k")).is_err(), "a secret key is not a public key");
    }
}
