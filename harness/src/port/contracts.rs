//! Which contract each check proves: `suites/contracts.yaml` (sections, static checks, tests),
//! and the section titles of balenaOS's contracts page when it is at hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rows::{Check, Finding, Kind, Link};
use crate::error::{Error, Result};

/// The mapping's file, under the project root.
pub const MAPPING: &str = "suites/contracts.yaml";

/// `suites/contracts.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The contract sections by number, with the titles used when the page is not at hand.
    pub sections: BTreeMap<u32, String>,
    /// The static checks by id (`partitions`, `os-release`).
    #[serde(rename = "static")]
    pub statics: BTreeMap<String, Entry>,
    /// The tests by `suite/test`.
    pub tests: BTreeMap<String, Entry>,
}

/// What one check proves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The section of the contracts page.
    pub section: u32,
    /// What the check looks at, in a line.
    pub title: String,
}

impl Mapping {
    /// Reads and checks `suites/contracts.yaml` under `root`: every entry names a section the
    /// file lists.
    pub fn load(root: &Path) -> Result<Mapping> {
        let path = root.join(MAPPING);
        let mapping: Mapping = crate::config::yaml::read(&path)?;
        let entries = mapping.statics.iter().chain(mapping.tests.iter());
        for (id, e) in entries {
            if !mapping.sections.contains_key(&e.section) {
                return Err(Error::input(format!(
                    "{}: `{id}` names section {}, which `sections` does not list",
                    path.display(),
                    e.section
                )));
            }
        }
        Ok(mapping)
    }
}

impl Mapping {
    /// A static check's finding as a check of the report, with its section.
    pub fn static_check(&self, id: &str, f: Finding) -> (Option<u32>, Check) {
        let entry = self.statics.get(id);
        let check = Check {
            id: format!("static/{id}"),
            kind: Kind::Static,
            title: entry.map_or_else(|| id.to_string(), |e| e.title.clone()),
            status: f.status,
            why: f.why,
            logs: Vec::new(),
        };
        (entry.map(|e| e.section), check)
    }

    /// A test's finding (`key` is `suite/test`) as a check of the report, with its section
    /// (`None` for a test the mapping does not list).
    pub fn test_check(&self, key: &str, f: Finding, logs: Vec<Link>) -> (Option<u32>, Check) {
        let entry = self.tests.get(key);
        let check = Check {
            id: key.to_string(),
            kind: Kind::Test,
            title: entry.map_or_else(|| key.to_string(), |e| e.title.clone()),
            status: f.status,
            why: f.why,
            logs,
        };
        (entry.map(|e| e.section), check)
    }
}

/// The contracts page: `HARNESS_CONTRACTS`, else `../shared/balenaos-contracts.md` beside the
/// project; `None` when there is no such file (it lives outside the repository).
pub fn page_path(root: &Path) -> Option<PathBuf> {
    let path = match std::env::var_os("HARNESS_CONTRACTS") {
        Some(p) => PathBuf::from(p),
        None => root.parent()?.join("shared/balenaos-contracts.md"),
    };
    path.is_file().then_some(path)
}

/// The numbered sections of a contracts page: its `## N. Title` headings.
pub fn page_sections(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let (n, title) = l.strip_prefix("## ")?.split_once(". ")?;
            // Shown as text: Markdown's code and emphasis marks go.
            let title: String = title.chars().filter(|c| !matches!(c, '`' | '*')).collect();
            Some((n.trim().parse().ok()?, title.trim().to_string()))
        })
        .collect()
}

/// The report's sections, in order: the page's (its titles win), then any the mapping lists
/// that the page lacks; the mapping's alone without a page.
pub fn sections(mapping: &Mapping, page: &[(u32, String)]) -> Vec<(u32, String)> {
    let mut out = page.to_vec();
    for (n, title) in &mapping.sections {
        if !out.iter().any(|(m, _)| m == n) {
            out.push((*n, title.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::suite;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Every test of the suites a port-check runs, and of suite/smoke, proves a contract; no
    /// entry names a test that is gone; every static check is mapped, and only those.
    #[test]
    fn every_test_and_static_check_is_mapped() {
        let m = Mapping::load(&root()).unwrap();
        let mut all = Vec::new();
        for name in ["os", "hup", "engine", "smoke"] {
            let s = suite::load(&suite::resolve(&root(), name).unwrap()).unwrap();
            for (test, _) in &s.tests {
                let key = format!("{name}/{test}");
                assert!(m.tests.contains_key(&key), "{key} is not in {MAPPING}");
                all.push(key);
            }
        }
        for key in m.tests.keys() {
            assert!(
                all.contains(key),
                "{MAPPING} maps {key}, which no suite has"
            );
        }
        let statics: Vec<&str> = m.statics.keys().map(String::as_str).collect();
        let mut ids = super::super::statics::IDS.to_vec();
        ids.sort();
        assert_eq!(statics, ids);
    }

    #[test]
    fn page_sections_and_their_order() {
        let page = "# title\n## 1. Disk layout\ntext\n## 2. config.json (`/mnt/boot`)\n\
                    ## Notes\n### 3. not a section\n## 9. Later\n";
        let got = page_sections(page);
        assert_eq!(
            got,
            [
                (1, "Disk layout".to_string()),
                (2, "config.json (/mnt/boot)".to_string()),
                (9, "Later".to_string()),
            ]
        );
        let m = Mapping::load(&root()).unwrap();
        let s = sections(&m, &got);
        assert_eq!(s[1].1, "config.json (/mnt/boot)", "the page's title wins");
        assert_eq!(s[2].0, 9);
        assert_eq!(s[3], (3, "Networking and names".to_string()));
        assert_eq!(sections(&m, &[]).len(), m.sections.len());
    }

    /// The contracts page beside the project, when there is one, has every section the
    /// mapping lists.
    #[test]
    fn the_page_has_the_mapped_sections() {
        let Some(path) = page_path(&root()) else {
            return;
        };
        let page = page_sections(&std::fs::read_to_string(&path).unwrap());
        let m = Mapping::load(&root()).unwrap();
        for n in m.sections.keys() {
            assert!(
                page.iter().any(|(p, _)| p == n),
                "{} has no section {n}",
                path.display()
            );
        }
    }

    #[test]
    fn an_entry_of_an_unlisted_section_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("suites")).unwrap();
        std::fs::write(
            dir.path().join(MAPPING),
            "sections: {1: Disk}\nstatic: {}\ntests:\n  os/x: {section: 4, title: x}\n",
        )
        .unwrap();
        let err = Mapping::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("`os/x` names section 4, which `sections` does not list"),
            "{err}"
        );
    }
}
