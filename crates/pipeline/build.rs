//! Records the git commit the library is built from (`SAFEEDIT_GIT_COMMIT`), so every stored run
//! names the exact code that produced it. Outside a git checkout the value is `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SAFEEDIT_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout); `logs/HEAD` changes on every commit.
    for path in ["../../.git/HEAD", "../../.git/logs/HEAD"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
