//! `arbiter deploy` and `arbiter rollback`: a running server's admin API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// The server's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Key of a credential with the role the call needs (admin; approve
    /// suffices to halt).
    #[arg(long, env = "ARBITER_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

impl ServerArgs {
    pub(crate) fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        admin_call(&self.server, &self.token, hyper::Method::POST, path, Some(body))
    }
}

/// Load a bundle on a running server (compiled and validated off to the side, then swapped in).
///
/// The server loads manifests only from its bundle directory (`arbiter
/// serve --bundle-dir`, by default the directory of its `--bundle`): give
/// the manifest in your copy of that directory, and the server is sent its
/// path relative to the directory.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The manifest, in a local copy of the server's bundle directory.
    manifest: PathBuf,
    /// That local copy [default: the manifest's directory, so the server is
    /// sent the file name].
    #[arg(long)]
    bundle_dir: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Re-activate a previously active bundle on a running server.
#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// Bundle version to go back to [default: the previous one].
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Calls a running server's admin API with a bearer token; a non-2xx
/// answer is an error carrying the server's code and message.
pub(crate) fn admin_call(
    server: &str,
    token: &str,
    method: hyper::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", server.trim_end_matches('/')))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default()))?;
        let response = client.request(request).await.with_context(|| format!("calling {server}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = &value["error"];
            let code = error["code"].as_str().unwrap_or("error");
            bail!("{status} {code}: {}", error["message"].as_str().unwrap_or("no details"));
        }
        Ok(value)
    })
}

fn report(swapped: &Value) {
    let active = &swapped["active"];
    println!(
        "active: {} {} ({}); swap {:.1} µs, load {:.1} ms",
        active["name"].as_str().unwrap_or("?"),
        active["version"].as_str().unwrap_or("?"),
        active["manifest"].as_str().unwrap_or("?"),
        swapped["swap_us"].as_f64().unwrap_or(0.0),
        swapped["load_ms"].as_f64().unwrap_or(0.0)
    );
}

/// `manifest`'s path relative to `bundle_dir`, as the server names it.
fn relative_manifest(manifest: &Path, bundle_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let name = manifest.file_name().with_context(|| format!("{} names no file", manifest.display()))?;
    let Some(bundle_dir) = bundle_dir else { return Ok(PathBuf::from(name)) };
    let canonical = |path: &Path| path.canonicalize().with_context(|| format!("cannot open {}", path.display()));
    let dir = canonical(bundle_dir)?;
    // The directory is resolved, the file name kept: a symlinked manifest is
    // the server's to follow.
    let parent = manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let path = canonical(parent)?.join(name);
    match path.strip_prefix(&dir) {
        Ok(relative) => Ok(relative.to_owned()),
        Err(_) => bail!("{} is not inside --bundle-dir {}", manifest.display(), bundle_dir.display()),
    }
}

pub fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let manifest = relative_manifest(&args.manifest, args.bundle_dir.as_deref())?;
    report(&args.server.post("/v1/admin/bundles", json!({"manifest": manifest}))?);
    Ok(ExitCode::SUCCESS)
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    report(&args.server.post("/v1/admin/rollback", json!({"to": args.to}))?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_sent_the_manifest_relative_to_the_bundle_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bundles");
        std::fs::create_dir_all(dir.join("releases/v2")).unwrap();
        std::fs::create_dir_all(root.path().join("elsewhere")).unwrap();
        let v2 = dir.join("releases/v2/bundle.toml");
        assert_eq!(relative_manifest(&v2, None).unwrap(), Path::new("bundle.toml"));
        assert_eq!(relative_manifest(Path::new("bundle.toml"), None).unwrap(), Path::new("bundle.toml"));
        assert_eq!(relative_manifest(&v2, Some(&dir)).unwrap(), Path::new("releases/v2/bundle.toml"));
        let dotted = dir.join("releases/../releases/v2/bundle.toml");
        assert_eq!(relative_manifest(&dotted, Some(&dir)).unwrap(), Path::new("releases/v2/bundle.toml"));
        let outside = root.path().join("elsewhere/bundle.toml");
        let err = relative_manifest(&outside, Some(&dir)).unwrap_err().to_string();
        assert!(err.contains("is not inside --bundle-dir"), "{err}");
        assert!(relative_manifest(Path::new("/"), None).is_err(), "a path without a file name");
    }
}
