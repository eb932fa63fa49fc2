//! `arbiter keygen`, `arbiter sign`, `arbiter verify`: ed25519 bundle signatures.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::signature::{
    generate_key, public_key_text, read_public_key, read_secret_key, secret_key_text, sign_manifest, signature_path,
    verify_manifest,
};
use arbiter_engine::{ComponentInfo, Manifest, digest_of};

/// Generate an ed25519 key pair: <out> (secret, mode 0600) and <out>.pub.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    #[arg(long)]
    out: PathBuf,
}

/// Sign a bundle manifest (and so every component digest it pins): writes <manifest>.sig.
#[derive(clap::Args, Debug)]
pub struct SignArgs {
    /// Secret key file from `arbiter keygen`.
    #[arg(long)]
    key: PathBuf,
    manifest: PathBuf,
}

/// Verify a bundle: its signature by one of the given public keys, and every component's digest.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Trusted public key files.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    manifest: PathBuf,
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = generate_key()?;
    let public = args.out.with_extension(match args.out.extension() {
        Some(ext) => format!("{}.pub", ext.to_string_lossy()),
        None => "pub".to_owned(),
    });
    write_secret(&args.out, &secret_key_text(&key))?;
    std::fs::write(&public, public_key_text(&key.verifying_key()))
        .with_context(|| format!("writing {}", public.display()))?;
    println!("secret key {} (keep it out of the repository)", args.out.display());
    println!("public key {}  id {}", public.display(), arbiter_engine::signature::key_id(&key.verifying_key()));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn write_secret(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

pub fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let key = read_secret_key(&args.key)?;
    let manifest = std::fs::read(&args.manifest).with_context(|| format!("reading {}", args.manifest.display()))?;
    let sig = signature_path(&args.manifest);
    std::fs::write(&sig, sign_manifest(&manifest, &key)).with_context(|| format!("writing {}", sig.display()))?;
    println!("signed {} -> {}", args.manifest.display(), sig.display());
    Ok(ExitCode::SUCCESS)
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = args.keys.iter().map(|k| read_public_key(k)).collect::<Result<Vec<_>, _>>()?;
    let bytes = std::fs::read(&args.manifest).with_context(|| format!("reading {}", args.manifest.display()))?;
    let signer = match verify_manifest(&args.manifest, &bytes, &keys) {
        Ok(signer) => signer,
        Err(e) => {
            println!("INVALID: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let manifest = Manifest::from_toml(&String::from_utf8_lossy(&bytes), &args.manifest)?;
    let base = args.manifest.parent().map(PathBuf::from).unwrap_or_default();
    let mut bad = Vec::new();
    for policy in &manifest.policies {
        let path = base.join(&policy.component);
        match std::fs::read(&path) {
            Ok(bytes) => {
                if digest_of(&bytes).trim_start_matches("sha256:") != policy.sha256 {
                    bad.push(format!("{}: {} does not match the pinned sha256", policy.name, path.display()));
                } else if let Err(e) = ComponentInfo::read(&bytes) {
                    bad.push(format!("{}: {} is not a policy component: {e}", policy.name, path.display()));
                }
            }
            Err(e) => bad.push(format!("{}: cannot read {}: {e}", policy.name, path.display())),
        }
    }
    if bad.is_empty() {
        println!(
            "OK: {} signed by key {signer}; {} components match",
            args.manifest.display(),
            manifest.policies.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("INVALID: {}", bad.join("; "));
        Ok(ExitCode::FAILURE)
    }
}
