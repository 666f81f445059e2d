//! The vault's Ed25519 key pair: generated once at `mamori init`, private key as PKCS#8 PEM with
//! 0600 permissions, public key as SubjectPublicKeyInfo PEM (what `openssl pkeyutl -pubin`
//! reads). The private key is never printed or logged; only its public half and fingerprint are.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

/// Where `mamori init` puts the key pair inside a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl KeyPaths {
    pub fn in_data_dir(data_dir: &Path) -> KeyPaths {
        let dir = data_dir.join("keys");
        KeyPaths {
            private: dir.join("vault-ed25519.key"),
            public: dir.join("vault-ed25519.pub"),
        }
    }
}

/// A fresh key from the operating system's CSPRNG.
pub fn generate_keypair() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// `SHA256:<hex>` of the DER SubjectPublicKeyInfo — the same bytes as
/// `openssl pkey -pubin -in pub.pem -outform DER | sha256sum`.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let der = key
        .to_public_key_der()
        .expect("an ed25519 public key always encodes");
    format!("SHA256:{}", hex::encode(Sha256::digest(der.as_bytes())))
}

pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an ed25519 public key always encodes")
}

/// Write the key pair. Refuses to replace an existing private key unless `force`: losing it
/// means no more heads can be signed by the key operators were told to trust.
pub fn write_keypair(paths: &KeyPaths, key: &SigningKey, force: bool) -> Result<()> {
    if let Some(dir) = paths.private.parent() {
        create_private_dir(dir)?;
    }
    for p in [&paths.private, &paths.public] {
        if fs::symlink_metadata(p).is_ok() {
            if !force {
                return Err(Error::AlreadyExists {
                    what: "key file",
                    path: p.clone(),
                });
            }
            // Remove rather than truncate so the new file gets fresh permissions and a symlink
            // planted at this path is replaced, not written through.
            fs::remove_file(p).at(p)?;
        }
    }
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| Error::Key {
        path: paths.private.clone(),
        reason: e.to_string(),
    })?;
    write_new(&paths.private, pem.as_bytes(), 0o600)?;
    write_new(
        &paths.public,
        public_key_pem(&key.verifying_key()).as_bytes(),
        0o644,
    )?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).at(dir)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = o.open(path).at(path)?;
    f.write_all(bytes).at(path)?;
    f.sync_all().at(path)
}

/// Load the private key. Like `ssh`, refuses a key file others can read.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let meta = fs::metadata(path).at(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Key {
                path: path.to_path_buf(),
                reason: format!("permissions {mode:04o} are too open; run `chmod 600` on it"),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let pem = fs::read_to_string(path).at(path)?;
    // The decode error is deliberately not echoed: it could quote key material.
    SigningKey::from_pkcs8_pem(&pem).map_err(|_| Error::Key {
        path: path.to_path_buf(),
        reason: "not a PKCS#8 PEM Ed25519 private key".into(),
    })
}

/// Load a public key (SubjectPublicKeyInfo PEM).
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let pem = fs::read_to_string(path).at(path)?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| Error::Key {
        path: path.to_path_buf(),
        reason: format!("not a PEM Ed25519 public key: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypair_round_trip_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let paths = KeyPaths::in_data_dir(dir.path());
        let key = generate_keypair();
        write_keypair(&paths, &key, false).unwrap();
        assert_eq!(
            load_signing_key(&paths.private).unwrap().to_bytes(),
            key.to_bytes()
        );
        assert_eq!(
            load_verifying_key(&paths.public).unwrap(),
            key.verifying_key()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&paths.private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(&paths.private, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                load_signing_key(&paths.private),
                Err(Error::Key { .. })
            ));
        }
        assert!(matches!(
            write_keypair(&paths, &key, false),
            Err(Error::AlreadyExists { .. })
        ));
        write_keypair(&paths, &generate_keypair(), true).unwrap();
    }

    #[test]
    fn fingerprint_is_sha256_of_spki_der() {
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let der = key.to_public_key_der().unwrap();
        // SPKI for Ed25519 is a fixed 12-byte prefix plus the 32-byte key.
        assert_eq!(der.as_bytes().len(), 44);
        assert!(fingerprint(&key).starts_with("SHA256:"));
        assert_eq!(fingerprint(&key).len(), 7 + 64);
    }
}
