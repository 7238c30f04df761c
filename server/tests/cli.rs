//! The `safeedit` binary as a user runs it: what it refuses and how it says so.

use std::process::{Command, Output};

fn safeedit(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_safeedit"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("the binary runs")
}

#[test]
fn settings_the_web_refuses_are_refused_on_the_command_line_with_the_message_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let out = out.to_str().unwrap();
    for (flags, needle) in [
        (
            &["--max-new-tokens", "0"][..],
            "max_new_tokens must be 1..=2048, got 0",
        ),
        (&["--steps", "0"][..], "steps must be 1..=100, got 0"),
        (&["--lr=-1"][..], "lr must be positive, got -1"),
    ] {
        let mut args = vec![
            "eval", "--model", "tiny", "--method", "dinm", "--limit", "1", "--no-db", "--out", out,
        ];
        args.extend_from_slice(flags);
        // A backtrace is for panics: a refused setting is one line, even with backtraces on.
        let output = safeedit(&args, &[("RUST_BACKTRACE", "1")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} must fail: {stderr}");
        assert!(
            stderr.contains(&format!("error: {needle}")),
            "{flags:?}: {stderr}"
        );
        assert!(!stderr.contains("acktrace"), "{flags:?}: {stderr}");
        assert!(
            !std::path::Path::new(out).exists(),
            "{flags:?}: nothing is written"
        );
    }
}
