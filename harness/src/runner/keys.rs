//! The run's SSH key pair: made fresh for each run and put into `os.sshKeys`, so production
//! images (keys only) are reachable too.
//!
//! The private key never enters the run folder (CI uploads that as an artifact): it lives in a
//! 0700 folder of the harness's own under its state folder, removed when the run ends (kept
//! with `--keep`, for logging in by hand afterwards).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// A key pair on disk.
pub struct KeyPair {
    /// The private key file (OpenSSH format, mode 0600).
    pub private: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA... harness`).
    pub public: String,
    /// The private key's folder, removed on drop unless kept.
    _dir: Option<tempfile::TempDir>,
}

/// Makes an Ed25519 key pair: the private key in a new 0700 folder under `keys_root`
/// (created 0700 if missing; refused if another user owns it), the public key in `run_dir`
/// too. With `keep` the private key outlives the run.
pub fn generate(run_dir: &Path, keys_root: &Path, keep: bool) -> Result<KeyPair> {
    crate::paths::private_dir(
        keys_root,
        "refusing to put the run's private key there (set HARNESS_STATE)",
    )?;
    let dir = tempfile::Builder::new()
        .prefix("run-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(keys_root)
        .infra_ctx(|| format!("cannot create a key folder in {}", keys_root.display()))?;
    let (private, public) = write_pair(dir.path())?;
    std::fs::write(run_dir.join("id_ed25519.pub"), format!("{public}\n"))
        .infra_ctx(|| "cannot write the public key".into())?;
    let dir = if keep {
        let _ = dir.keep();
        None
    } else {
        Some(dir)
    };
    Ok(KeyPair {
        private,
        public,
        _dir: dir,
    })
}

/// Makes an Ed25519 key pair in the folder `dir` (which the caller keeps private):
/// `id_ed25519` (mode 0600) and `id_ed25519.pub`; returns the private key's path and the
/// public key line. A snapshot's key pair is made so (see `runner::snapshots`).
pub fn write_pair(dir: &Path) -> Result<(PathBuf, String)> {
    use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .infra_ctx(|| "cannot make an SSH key".into())?;
    key.set_comment("harness");
    let private = dir.join("id_ed25519");
    let _ = std::fs::remove_file(&private);
    key.write_openssh_file(&private, LineEnding::LF)
        .infra_ctx(|| format!("cannot write {}", private.display()))?;
    let public = key
        .public_key()
        .to_openssh()
        .infra_ctx(|| "cannot encode the SSH public key".into())?;
    std::fs::write(dir.join("id_ed25519.pub"), format!("{public}\n"))
        .infra_ctx(|| "cannot write the public key".into())?;
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_private_key_stays_out_of_the_run_folder_and_goes_with_the_run() {
        let run = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let keys = state.path().join("keys");
        let pair = generate(run.path(), &keys, false).unwrap();
        assert!(!pair.private.starts_with(run.path()));
        assert!(pair.private.is_file());
        let folder = pair.private.parent().unwrap().to_path_buf();
        assert_eq!(std::fs::metadata(&folder).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&keys).unwrap().mode() & 0o777, 0o700);
        let in_run: Vec<_> = std::fs::read_dir(run.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(in_run, ["id_ed25519.pub"]);
        drop(pair);
        assert!(!folder.exists(), "the key outlived its run");
    }

    #[test]
    fn keep_keeps_the_private_key() {
        let run = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let pair = generate(run.path(), &state.path().join("keys"), true).unwrap();
        let private = pair.private.clone();
        drop(pair);
        assert!(private.is_file());
    }

    #[test]
    fn a_key_folder_owned_by_another_user_is_refused() {
        let run = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let keys = state.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&keys, Some(65534), Some(65534)).unwrap();
        } else {
            return crate::testing::missing("root, to give a folder to another user");
        }
        let err = generate(run.path(), &keys, false).err().unwrap();
        assert!(matches!(err, Error::Input(_)), "{err}");
    }
}
