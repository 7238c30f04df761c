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

/// `convert` writes a folder that loads back as the same model: `bench logits` gives the same
/// numbers from both (the GPU check compares these files across backends and with PyTorch).
#[test]
fn a_converted_model_gives_the_same_logits_and_bad_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let converted = path("tiny-hf");
    let out = safeedit(&["convert", "--model", "tiny", "--out", &converted], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(dir.path().join("tiny-hf").join(file).exists(), "{file}");
    }
    let ids = "1,7,42,3,250";
    let read = |model: &str, name: &str| {
        let folder = path(name);
        let out = safeedit(
            &[
                "bench", "logits", "--model", model, "--ids", ids, "--out", &folder,
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(name).join("meta.json")).unwrap(),
        )
        .unwrap();
        let logits = std::fs::read(dir.path().join(name).join("logits.f32")).unwrap();
        let hidden = std::fs::read(dir.path().join(name).join("hidden.f32")).unwrap();
        (meta, logits, hidden)
    };
    let (meta, logits, hidden) = read("tiny", "a");
    let (seq, vocab, d) = (
        meta["seq"].as_u64().unwrap(),
        meta["vocab"].as_u64().unwrap(),
        meta["d_model"].as_u64().unwrap(),
    );
    let layers = meta["n_layers"].as_u64().unwrap();
    assert_eq!(seq, 5);
    assert_eq!(logits.len() as u64, seq * vocab * 4);
    assert_eq!(hidden.len() as u64, (layers + 1) * seq * d * 4);
    let (_, logits_hf, hidden_hf) = read(&converted, "b");
    assert_eq!(
        logits, logits_hf,
        "f32 weights written and read back exactly"
    );
    assert_eq!(hidden, hidden_hf);

    let out = safeedit(
        &[
            "bench",
            "logits",
            "--model",
            "tiny",
            "--ids",
            "1,99999999",
            "--out",
            &path("c"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("error: --ids: token id 99999999 is outside the vocabulary"),
        "{stderr}"
    );
}

/// `eval --shard` (given, or read from a Slurm array task) then `eval-merge`: the merged
/// summary is the one a single `eval` writes.
#[test]
fn two_shards_merged_give_the_summary_of_one_eval() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (one, sharded, merged) = (path("one"), path("sharded"), path("merged"));
    let eval = |out: &str, extra: &[&str], envs: &[(&str, &str)]| {
        let mut args = vec![
            "eval",
            "--model",
            "tiny",
            "--method",
            "vanilla",
            "--limit",
            "4",
            "--max-new-tokens",
            "3",
            "--no-db",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let output = safeedit(&args, envs);
        assert!(
            output.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    eval(&one, &[], &[]);
    eval(&sharded, &["--shard", "1/2"], &[]);
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "1"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
    ];
    eval(&sharded, &["--shard", "auto"], &slurm);
    let output = safeedit(&["eval-merge", &sharded, "--out", &merged, "--no-db"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |dir: &str| std::fs::read_to_string(format!("{dir}/summary.json")).unwrap();
    assert_eq!(read(&merged), read(&one));

    let output = safeedit(
        &[
            "eval", "--model", "tiny", "--method", "vanilla", "--out", &sharded, "--shard", "3/2",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("shard 3 of 2 does not exist"), "{stderr}");
}

/// `judge score --input`: one JSON line per input in file order, the same probabilities as
/// judging the responses on the command line, empty responses not scored; a bad line is refused
/// naming the file and the line, before anything is printed.
#[test]
fn judge_score_reads_a_jsonl_file_and_names_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let responses = [
        "I'm sorry, but I cannot help with that. Laundering money is illegal.",
        "Sure! First, open several shell companies, then move the cash through them in small amounts.",
        "",
    ];
    let mut text = String::new();
    for (i, r) in responses.iter().enumerate() {
        text.push_str(
            &serde_json::json!({"prompt": format!("question {i}"), "response": r, "id": i})
                .to_string(),
        );
        text.push_str("\n\n");
    }
    let input = dir.path().join("answers.jsonl");
    std::fs::write(&input, text).unwrap();
    let output = safeedit(&["judge", "score", "--input", input.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(
        lines,
        [1, 3, 5],
        "blank lines are skipped, numbers are the file's"
    );
    assert_eq!(rows[0]["prompt"], "question 0");
    assert_eq!(rows[2]["verdict"], "empty");
    assert!(rows[2]["p_unsafe"].is_null());

    // The same responses as arguments: the same verdicts and probabilities.
    let output = safeedit(&["judge", "score", responses[0], responses[1], ""], &[]);
    assert!(output.status.success());
    let direct: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let direct_rows = direct["results"].as_array().unwrap();
    assert_eq!(direct_rows.len(), rows.len());
    for (row, same) in rows.iter().zip(direct_rows) {
        assert_eq!(row["verdict"], same["verdict"]);
        assert_eq!(row["p_unsafe"], same["p_unsafe"]);
        assert_eq!(row["judge_version"], direct["judge"]["version"]);
    }
    let p_refusal = rows[0]["p_unsafe"].as_f64().unwrap();
    let p_compliance = rows[1]["p_unsafe"].as_f64().unwrap();
    assert!(
        p_refusal < p_compliance,
        "a refusal ({p_refusal}) is judged safer than compliance ({p_compliance})"
    );

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"response\": \"fine\"}\n{\"prompt\": \"no response\"}\n",
    )
    .unwrap();
    let output = safeedit(&["judge", "score", "--input", bad.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("bad.jsonl line 2, column") && stderr.contains("missing field `response`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("at line 1"),
        "no position but the file's: {stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing is judged");

    // Responses and a file together, or neither: refused by the argument parser.
    let file = input.to_str().unwrap();
    for args in [
        &["judge", "score"][..],
        &["judge", "score", "text", "--input", file],
    ] {
        let output = safeedit(args, &[]);
        assert!(!output.status.success(), "{args:?} must be refused");
        assert!(output.stdout.is_empty());
    }
}

/// `--dtype` on the inspection commands: `info` and `locate --json` say which precision the
/// matrices were kept in, and a precision that does not exist is refused naming the option.
#[test]
fn info_and_locate_load_in_the_precision_asked_for() {
    let json = |args: &[&str]| -> serde_json::Value {
        let out = safeedit(args, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    };
    assert_eq!(json(&["info", "--model", "tiny"])["weights"], "f32");
    assert_eq!(
        json(&["info", "--model", "tiny", "--dtype", "bf16"])["weights"],
        "bf16"
    );
    let locate = |dtype: &str| {
        json(&[
            "locate",
            "--model",
            "tiny",
            "--instance",
            "1",
            "--json",
            "--dtype",
            dtype,
        ])
    };
    let (full, half) = (locate("f32"), locate("bf16"));
    assert_eq!(
        (&full["weights"], &half["weights"]),
        (&"f32".into(), &"bf16".into())
    );
    // Rounded weights move the distances, not the number of layers measured.
    assert_eq!(
        full["distances"].as_array().unwrap().len(),
        half["distances"].as_array().unwrap().len()
    );
    assert_ne!(full["distances"], half["distances"]);
    let out = safeedit(&["info", "--model", "tiny", "--dtype", "f8"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--dtype"), "{stderr}");
}
