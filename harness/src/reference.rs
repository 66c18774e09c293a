//! The reference image: built from the recipe in `qemu/`, cached by the recipe's content.
//!
//! The cache key is a SHA-256 over every file of the recipe (path and bytes) and over the
//! balenaEngine binaries the build takes (see [`engine_dir`]), so any change to either builds
//! anew and an unchanged recipe returns at once. A build runs in a
//! `.partial` folder that is renamed into place only when the recipe succeeded, so an
//! interrupted build is never picked up.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Context, Error, Result};

/// What a finished build holds (`build.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Build {
    /// The machine it is for.
    pub machine: String,
    /// The disk image, relative to the build folder.
    pub image: PathBuf,
    /// The OS version of the image.
    pub version: String,
    /// The engine the image runs (balenaEngine and where it came from, or Debian's docker.io).
    #[serde(default)]
    pub engine: String,
    /// The host OS update payload for the next version.
    pub update: Update,
    /// The build folder (filled in on load).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// A host OS update payload.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    /// The payload, relative to the build folder.
    pub file: PathBuf,
    /// The OS version it installs.
    pub version: String,
    /// The same payload with rollback-health masked: the negative check of the health rollback.
    #[serde(default)]
    pub no_health: Option<PathBuf>,
}

impl Build {
    /// The image's absolute path.
    pub fn image_path(&self) -> PathBuf {
        self.dir.join(&self.image)
    }
    /// The update payload's absolute path.
    pub fn update_path(&self) -> PathBuf {
        self.dir.join(&self.update.file)
    }
    /// The reference kernel, used to probe whether KVM really boots.
    pub fn kernel_path(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
}

/// The machines the recipe in `qemu/` builds for (`build.sh OUT MACHINE`).
pub const RECIPES: [&str; 2] = ["qemux86-64", "qemuarm64"];

/// The recipe folder for `recipe` (one for every machine of [`RECIPES`]: `qemu/`).
fn recipe_dir(root: &Path, recipe: &str) -> Result<PathBuf> {
    let dir = root.join("qemu");
    if !RECIPES.contains(&recipe) {
        return Err(Error::input(format!(
            "no reference image recipe `{recipe}` (the recipe in {} builds {})",
            dir.display(),
            RECIPES.join(", ")
        )));
    }
    if !dir.join("build.sh").is_file() {
        return Err(Error::input(format!(
            "no reference image recipe `{recipe}` (expected {})",
            dir.join("build.sh").display()
        )));
    }
    Ok(dir)
}

/// Where the build takes balenaEngine from: `HARNESS_BALENA_BIN` (a folder with
/// `balena-engine` or `balena-engine.xz`) when set, else the project's `../shared/bin` when it
/// has one; `None`: the image runs Debian's docker.io (no delta API).
pub fn engine_dir(root: &Path) -> Result<Option<PathBuf>> {
    let has_engine =
        |d: &Path| d.join("balena-engine").is_file() || d.join("balena-engine.xz").is_file();
    if let Some(dir) = std::env::var_os("HARNESS_BALENA_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !has_engine(&dir) {
            return Err(Error::input(format!(
                "HARNESS_BALENA_BIN={}: no balena-engine or balena-engine.xz there",
                dir.display()
            )));
        }
        return Ok(Some(dir));
    }
    let shared = root.join("..").join("shared").join("bin");
    Ok(has_engine(&shared).then_some(shared))
}

/// The balenaEngine files the recipe takes from its engine folder for `machine` (as
/// `qemu/lib/engine.sh` names them): `balena-engine[.xz]` for x86-64,
/// `balena-engine-arm64[.xz]` for qemuarm64.
fn engine_names(machine: &str) -> [&'static str; 2] {
    match machine {
        "qemuarm64" => ["balena-engine-arm64", "balena-engine-arm64.xz"],
        _ => ["balena-engine", "balena-engine.xz"],
    }
}

/// The cache key of a recipe built for `machine`: SHA-256 over the machine, the recipe's
/// files' relative paths and contents, and the engine binaries it takes from `engine` (their
/// names and bytes).
pub fn recipe_key(dir: &Path, machine: &str, engine: Option<&Path>) -> Result<String> {
    let mut hash = Sha256::new();
    hash.update(b"machine\0");
    hash.update(machine.as_bytes());
    hash.update([0]);
    hash_tree(dir, &mut hash)?;
    if let Some(engine) = engine {
        hash.update(b"\0engine\0");
        for name in engine_names(machine) {
            let f = engine.join(name);
            if f.is_file() {
                hash_file(&f, name, &mut hash)?;
            }
        }
    }
    Ok(hex::encode(hash.finalize())[..16].to_string())
}

fn hash_tree(dir: &Path, hash: &mut Sha256) -> Result<()> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap_or(f);
        hash_file(f, &rel.to_string_lossy(), hash)?;
    }
    Ok(())
}

fn hash_file(f: &Path, name: &str, hash: &mut Sha256) -> Result<()> {
    hash.update(name.as_bytes());
    hash.update([0]);
    let bytes = std::fs::read(f).input_ctx(|| format!("cannot read {}", f.display()))?;
    hash.update((bytes.len() as u64).to_le_bytes());
    hash.update(&bytes);
    Ok(())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).input_ctx(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .input_ctx(|| format!("cannot read {}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The cached build of `recipe`, if one matches the recipe as it is now.
pub fn cached(root: &Path, recipe: &str) -> Result<Option<Build>> {
    let dir = recipe_dir(root, recipe)?;
    let key = recipe_key(&dir, recipe, engine_dir(root)?.as_deref())?;
    let out = crate::paths::cache_dir()
        .join("images")
        .join(format!("{recipe}-{key}"));
    Ok(load(&out).ok().filter(|b| b.machine == recipe))
}

/// Reads `build.json` in `dir`.
pub fn load(dir: &Path) -> Result<Build> {
    let path = dir.join("build.json");
    let text =
        std::fs::read_to_string(&path).input_ctx(|| format!("cannot read {}", path.display()))?;
    let mut build: Build = serde_json::from_str(&text)
        .input_ctx(|| format!("{}: invalid build.json", path.display()))?;
    build.dir = dir.to_path_buf();
    if !build.image_path().is_file() {
        return Err(Error::input(format!(
            "{}: image {} is missing",
            path.display(),
            build.image_path().display()
        )));
    }
    Ok(build)
}

/// Builds `recipe` unless its cached build is current; returns the build.
///
/// `progress` receives each line the recipe prints (its `==> [N/M] ...` steps).
pub fn build(root: &Path, recipe: &str, progress: &mut dyn FnMut(&str)) -> Result<Build> {
    if let Some(build) = cached(root, recipe)? {
        return Ok(build);
    }
    if !rustix::process::geteuid().is_root() {
        return Err(Error::input(
            "building the reference image needs root (debootstrap makes the root filesystem); run it with sudo",
        ));
    }
    let dir = recipe_dir(root, recipe)?;
    let engine = engine_dir(root)?;
    let key = recipe_key(&dir, recipe, engine.as_deref())?;
    let images = crate::paths::cache_dir().join("images");
    let final_dir = images.join(format!("{recipe}-{key}"));
    let partial = images.join(format!("{recipe}-{key}.partial-{}", std::process::id()));
    remove_stale_partials(&images, recipe);
    std::fs::create_dir_all(&partial)
        .infra_ctx(|| format!("cannot create {}", partial.display()))?;

    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("build.sh"))
        .arg(&partial)
        .arg(recipe)
        .env("BALENA_BIN_DIR", engine.as_deref().unwrap_or(Path::new("")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = crate::process::Child::spawn(cmd, "the reference image build")?;
    let stderr = child.take_stderr();
    let errors = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(s) = stderr {
            for line in BufReader::new(s).lines().map_while(|l| l.ok()) {
                lines.push(line);
            }
        }
        lines
    });
    if let Some(out) = child.take_stdout() {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            progress(&line);
        }
    }
    let status = child.wait()?;
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        let why = errors
            .iter()
            .rev()
            .find(|l| l.starts_with("error:"))
            .or(errors.last())
            .cloned()
            .unwrap_or_else(|| format!("exited with {status}"));
        let why = why.trim_start_matches("error: ").to_string();
        // The recipe checks its tools first: a missing tool is the user's to install.
        return Err(if why.contains("missing") || why.contains("not found") {
            Error::input(format!("reference image build: {why}"))
        } else {
            Error::infra(format!("reference image build failed: {why}"))
        });
    }
    // A recipe that ignored the machine argument built another machine's image.
    match load(&partial) {
        Ok(b) if b.machine != recipe => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(Error::infra(format!(
                "reference image build: {} built a {} image, not {recipe} (it takes the machine as its second argument)",
                dir.join("build.sh").display(),
                b.machine
            )));
        }
        _ => {}
    }
    // Another harness may have finished the same build meanwhile: its result is as good.
    if let Ok(done) = load(&final_dir) {
        let _ = std::fs::remove_dir_all(&partial);
        return Ok(done);
    }
    std::fs::rename(&partial, &final_dir).infra_ctx(|| {
        format!(
            "cannot move {} to {}",
            partial.display(),
            final_dir.display()
        )
    })?;
    load(&final_dir)
}

/// Removes `.partial` folders of builds whose process is gone.
fn remove_stale_partials(images: &Path, recipe: &str) {
    let Ok(entries) = std::fs::read_dir(images) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.split_once(".partial-") else {
            continue;
        };
        let alive = pid
            .parse::<i32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if name.starts_with(recipe) && !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_key_changes_with_content_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.sh"), "echo 1").unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/a.sh"), "a").unwrap();
        let k1 = recipe_key(dir.path(), "qemux86-64", None).unwrap();
        assert_eq!(k1, recipe_key(dir.path(), "qemux86-64", None).unwrap());
        std::fs::write(dir.path().join("lib/a.sh"), "b").unwrap();
        assert_ne!(k1, recipe_key(dir.path(), "qemux86-64", None).unwrap());
    }

    #[test]
    fn recipe_key_changes_with_the_engine_binary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.sh"), "echo 1").unwrap();
        let bin = tempfile::tempdir().unwrap();
        std::fs::write(bin.path().join("balena-engine.xz"), "v1").unwrap();
        let plain = recipe_key(dir.path(), "qemux86-64", None).unwrap();
        let k1 = recipe_key(dir.path(), "qemux86-64", Some(bin.path())).unwrap();
        assert_ne!(plain, k1);
        std::fs::write(bin.path().join("balena-engine.xz"), "v2").unwrap();
        assert_ne!(
            k1,
            recipe_key(dir.path(), "qemux86-64", Some(bin.path())).unwrap()
        );
    }

    #[test]
    fn the_arm_key_has_the_arm_engine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.sh"), "echo 1").unwrap();
        let bin = tempfile::tempdir().unwrap();
        std::fs::write(bin.path().join("balena-engine.xz"), "x86").unwrap();
        std::fs::write(bin.path().join("balena-engine-arm64.xz"), "v1").unwrap();
        let key = |m| recipe_key(dir.path(), m, Some(bin.path())).unwrap();
        let (x86, arm) = (key("qemux86-64"), key("qemuarm64"));
        std::fs::write(bin.path().join("balena-engine-arm64.xz"), "v2").unwrap();
        assert_eq!(x86, key("qemux86-64"));
        assert_ne!(arm, key("qemuarm64"));
    }

    #[test]
    fn recipe_key_changes_with_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.sh"), "echo 1").unwrap();
        assert_ne!(
            recipe_key(dir.path(), "qemux86-64", None).unwrap(),
            recipe_key(dir.path(), "qemuarm64", None).unwrap()
        );
    }

    #[test]
    fn only_the_recipe_s_machines_have_a_recipe() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert!(recipe_dir(&root, "qemuarm64").is_ok());
        let e = recipe_dir(&root, "raspberrypi4-64")
            .unwrap_err()
            .to_string();
        assert!(e.contains("builds qemux86-64, qemuarm64"), "{e}");
    }
}
