//! What the registry answers: the read-only part of the distribution API over an in-memory store.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::http::Response;
use super::image::{AppImage, Blob, MANIFEST_V2};
use crate::error::{Error, Result};

/// Images by repository and tag.
pub(crate) struct Store {
    repos: BTreeMap<String, BTreeMap<String, AppImage>>,
}

/// A response and the repository its path named, for the ledger.
pub(crate) struct Routed {
    pub repo: Option<String>,
    pub response: Response,
}

impl Store {
    /// Checks names the way the distribution spec does and refuses a repeated `repo:tag`.
    pub(crate) fn new(images: Vec<(String, String, AppImage)>) -> Result<Store> {
        let mut repos: BTreeMap<String, BTreeMap<String, AppImage>> = BTreeMap::new();
        for (repo, tag, image) in images {
            if !valid_repo(&repo) {
                return Err(Error::input(format!(
                    "registry: invalid repository name {repo:?}"
                )));
            }
            if !valid_tag(&tag) {
                return Err(Error::input(format!("registry: invalid tag {tag:?}")));
            }
            if repos
                .entry(repo.clone())
                .or_default()
                .insert(tag.clone(), image)
                .is_some()
            {
                return Err(Error::input(format!("registry: {repo}:{tag} given twice")));
            }
        }
        Ok(Store { repos })
    }

    /// Answers `method target`. Only `GET` and `HEAD` are served; the query string is ignored.
    pub(crate) fn route(&self, method: &str, target: &str, accept: &[String]) -> Routed {
        let path = target.split('?').next().unwrap_or_default();
        let (repo, kind, reference) = match split_path(path) {
            Some((name, kind, reference)) => (Some(name), kind, reference),
            None => (list_tags(path), "tags", ""),
        };
        let response = if method != "GET" && method != "HEAD" {
            error(
                405,
                "UNSUPPORTED",
                "the registry is read-only: GET and HEAD only",
            )
        } else if path == "/v2/" || path == "/v2" {
            ok("application/json", b"{}".as_slice().into(), vec![])
        } else if let Some(name) = repo {
            match self.repos.get(name) {
                None => error(404, "NAME_UNKNOWN", "repository name not known to registry"),
                Some(tags) if kind == "manifests" => manifest(tags, reference, accept),
                Some(tags) if kind == "tags" => tag_list(name, tags),
                Some(tags) => blob(tags, reference),
            }
        } else {
            error(404, "NOT_FOUND", "no such endpoint")
        };
        Routed {
            repo: repo.map(str::to_string),
            response,
        }
    }
}

impl From<Response> for Routed {
    fn from(response: Response) -> Routed {
        Routed {
            repo: None,
            response,
        }
    }
}

/// `/v2/<name>/(manifests|blobs)/<reference>` → (name, kind, reference); names may hold `/`.
fn split_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["manifests", "blobs"] {
        if let Some((name, reference)) = rest.rsplit_once(&format!("/{kind}/")) {
            if !name.is_empty() && !reference.is_empty() && !reference.contains('/') {
                return Some((name, kind, reference));
            }
        }
    }
    None
}

/// `/v2/<name>/tags/list` → name.
fn list_tags(path: &str) -> Option<&str> {
    path.strip_prefix("/v2/")?.strip_suffix("/tags/list")
}

fn tag_list(name: &str, tags: &BTreeMap<String, AppImage>) -> Response {
    let body = json!({ "name": name, "tags": tags.keys().collect::<Vec<_>>() });
    let body = serde_json::to_vec(&body).expect("json values serialize");
    ok("application/json", body.into(), vec![])
}

fn manifest(tags: &BTreeMap<String, AppImage>, reference: &str, accept: &[String]) -> Response {
    let found = match reference.starts_with("sha256:") {
        true => tags.values().find(|i| i.digest() == reference),
        false => tags.get(reference),
    };
    let Some(image) = found else {
        return error(404, "MANIFEST_UNKNOWN", "manifest unknown");
    };
    let acceptable = accept.is_empty()
        || accept
            .iter()
            .any(|a| a == MANIFEST_V2 || a == "*/*" || a == "application/*");
    if !acceptable {
        return error(
            404,
            "MANIFEST_UNKNOWN",
            "manifest not available in an accepted media type",
        );
    }
    described(&image.manifest)
}

fn blob(tags: &BTreeMap<String, AppImage>, digest: &str) -> Response {
    let found = tags
        .values()
        .flat_map(AppImage::blobs)
        .find(|b| b.digest == digest);
    match found {
        Some(b) => Response {
            content_type: "application/octet-stream",
            ..described(b)
        },
        None => error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
    }
}

fn described(blob: &Blob) -> Response {
    ok(
        blob.media_type,
        blob.data.clone(),
        vec![("Docker-Content-Digest", blob.digest.clone())],
    )
}

fn ok(
    content_type: &'static str,
    body: Arc<[u8]>,
    headers: Vec<(&'static str, String)>,
) -> Response {
    Response {
        status: 200,
        content_type,
        headers,
        body,
    }
}

/// A response in the registry's JSON error format.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "code": code, "message": message, "detail": {} }] });
    Response {
        status,
        content_type: "application/json",
        headers: vec![],
        body: serde_json::to_vec(&body)
            .expect("json values serialize")
            .into(),
    }
}

fn valid_repo(name: &str) -> bool {
    let component = |c: &str| {
        !c.is_empty()
            && c.split(['.', '_', '-']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    };
    name.len() < 256 && name.split('/').all(component)
}

fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok && tag.len() <= 128 && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_nested_names() {
        assert_eq!(
            split_path("/v2/a/b/manifests/v1"),
            Some(("a/b", "manifests", "v1"))
        );
        assert_eq!(
            split_path("/v2/app/blobs/sha256:ab"),
            Some(("app", "blobs", "sha256:ab"))
        );
        assert_eq!(split_path("/v2/app/tags/list"), None);
        assert_eq!(list_tags("/v2/a/b/tags/list"), Some("a/b"));
        assert_eq!(split_path("/v2//manifests/v1"), None);
    }

    #[test]
    fn names_follow_the_distribution_spec() {
        assert!(valid_repo("app") && valid_repo("team/app-1") && valid_repo("a.b_c"));
        assert!(!valid_repo("App") && !valid_repo("") && !valid_repo("a//b") && !valid_repo("-a"));
        assert!(valid_tag("v1") && valid_tag("_x.1-2"));
        assert!(!valid_tag("") && !valid_tag(".v1") && !valid_tag("a:b"));
    }

    #[test]
    fn errors_use_the_registry_format() {
        let r = error(404, "BLOB_UNKNOWN", "blob unknown to registry");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        let store = Store::new(vec![]).unwrap();
        assert_eq!(
            store
                .route("PUT", "/v2/app/blobs/uploads/", &[])
                .response
                .status,
            405
        );
        assert_eq!(
            store
                .route("GET", "/v2/app/manifests/v1", &[])
                .response
                .status,
            404
        );
        assert_eq!(store.route("GET", "/nope", &[]).response.status, 404);
        assert_eq!(store.route("GET", "/v2/?x=1", &[]).response.status, 200);
    }
}
