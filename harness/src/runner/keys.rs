//! The run's SSH key pair: made fresh for each run and put into `os.sshKeys`, so production
//! images (keys only) are reachable too.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// A key pair on disk.
pub struct KeyPair {
    /// The private key file (OpenSSH format, mode 0600).
    pub private: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA... harness`).
    pub public: String,
}

/// Makes an Ed25519 key pair in `dir`.
pub fn generate(dir: &Path) -> Result<KeyPair> {
    use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .infra_ctx(|| "cannot make an SSH key".into())?;
    key.set_comment("harness");
    let private = dir.join("id_ed25519");
    key.write_openssh_file(&private, LineEnding::LF)
        .infra_ctx(|| format!("cannot write {}", private.display()))?;
    let public = key
        .public_key()
        .to_openssh()
        .infra_ctx(|| "cannot encode the SSH public key".into())?;
    std::fs::write(dir.join("id_ed25519.pub"), format!("{public}\n"))
        .infra_ctx(|| "cannot write the public key".into())?;
    Ok(KeyPair { private, public })
}
