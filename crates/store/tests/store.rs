//! The runs database on a real SQLite file and on a real Postgres 15 server (a throwaway one,
//! started by the test): every table round-trips its records, an upsert replaces, jobs keep their
//! state, a reopened database keeps everything, and a damaged record is an error naming it.

use safeedit_core::Method;
use safeedit_core::eval::{InputResult, InstanceResult, summarize};
use safeedit_core::flag::{FlagRequest, flag_for};
use safeedit_core::job::JobSpec;
use safeedit_core::judge::{JudgeInfo, Verdict};
use safeedit_core::run::{
    Comparison, EditOutcome, EditOverrides, EditRequest, EvalRecord, InstanceFacts, JobEvent,
    JobStatus, RunRecord, StepLosses,
};
use safeedit_store::throwaway::ThrowawayPostgres;
use safeedit_store::{Store, StoreError, now_rfc3339, random_slug};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Where a scenario's database lives: a SQLite file in `dir`, or a Postgres URL.
struct Db {
    url: Option<String>,
    dir: tempfile::TempDir,
}

impl Db {
    fn sqlite() -> Self {
        Self {
            url: None,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Opens the store (a new connection pool each time, as a new server process would).
    async fn open(&self) -> Store {
        Store::open(self.url.as_deref(), self.dir.path())
            .await
            .unwrap()
    }

    /// A connection behind the store's back.
    async fn raw(&self) -> sqlx::AnyPool {
        let url = self.url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.dir.path().join("runs.sqlite").display())
        });
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&url).await.unwrap()
    }
}

fn request(id: u64) -> EditRequest {
    EditRequest {
        split: "test".into(),
        id,
        method: Method::Dinm,
        overrides: EditOverrides::default(),
    }
}

/// A run whose edit turned DS from unsafe to safe.
fn run(slug: &str, created_at: &str, layer: usize) -> RunRecord {
    RunRecord {
        slug: slug.into(),
        kind: "dinm-edit".into(),
        created_at: created_at.into(),
        request: request(7),
        instance: InstanceFacts {
            category: "offensiveness".into(),
            attack: "AIM".into(),
            question: "q?".into(),
        },
        config: serde_json::json!({"kl_factor": 0.1}),
        seed: 0,
        model: "tiny".into(),
        model_path: "tiny".into(),
        model_checksum: "none".into(),
        backend: "flex (CPU)".into(),
        judge: JudgeInfo {
            id: "minilm-logreg".into(),
            version: "v".into(),
            description: "d".into(),
        },
        version: "0.1.0".into(),
        git_commit: "abc".into(),
        outcome: EditOutcome {
            layer,
            tensor: format!("model.layers.{layer}.mlp.down_proj.weight"),
            distances: Some(vec![1.0, 2.0]),
            steps: vec![StepLosses {
                step: 0,
                loss: 1.0,
                edit: 9.0,
                constraint: 0.1,
            }],
            stopped_early: false,
            delta_norm: 0.5,
            comparisons: vec![Comparison {
                kind: "DS".into(),
                input: "x".into(),
                vanilla: "sure".into(),
                vanilla_verdict: Verdict::Unsafe,
                edited: "no".into(),
                edited_verdict: Verdict::Safe,
            }],
            seconds: [1.0, 2.0, 3.0],
        },
    }
}

fn instance(id: u64) -> InstanceResult {
    InstanceResult {
        id,
        category: "offensiveness".into(),
        attack: "AIM".into(),
        method: "vanilla".into(),
        inputs: vec![InputResult {
            kind: "DS".into(),
            input: "x".into(),
            response: "no".into(),
            verdict: Verdict::Safe,
            stop: "eos".into(),
            generated_tokens: 1,
        }],
        fluency: 3.0,
        edit: None,
        seconds: 1.0,
        timings: None,
    }
}

fn eval(slug: &str, instances: &[InstanceResult]) -> EvalRecord {
    EvalRecord {
        slug: slug.into(),
        created_at: now_rfc3339(),
        updated_at: now_rfc3339(),
        method: "vanilla".into(),
        data: "test-sample".into(),
        model: "tiny".into(),
        instances: instances.len(),
        run: serde_json::json!({"method": "vanilla"}),
        metrics: summarize(instances),
    }
}

#[test]
fn runs_and_evaluations_round_trip_and_upserts_replace() {
    runtime().block_on(runs_and_evaluations_round_trip_and_upserts_replace_on(
        &Db::sqlite(),
    ));
}

async fn runs_and_evaluations_round_trip_and_upserts_replace_on(db: &Db) {
    let store = db.open().await;
    if db.url.is_none() {
        assert!(db.dir.path().join("runs.sqlite").is_file());
    }
    let (old, new) = (
        run("aaaa", "2026-01-01T00:00:00.000Z", 3),
        run("bbbb", "2026-02-01T00:00:00.000Z", 5),
    );
    store.insert_run("test", &old).await.unwrap();
    store.insert_run("editing", &new).await.unwrap();
    assert_eq!(store.run("aaaa").await.unwrap(), Some(old.clone()));
    assert_eq!(store.run("nope").await.unwrap(), None);
    // A job run again stores its run under the same slug: the first stays, nothing twice.
    store
        .insert_run("test", &run("aaaa", "2026-03-01T00:00:00.000Z", 7))
        .await
        .unwrap();
    assert_eq!(store.run("aaaa").await.unwrap(), Some(old.clone()));
    let listed = store.list_runs(10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.slug.as_str()).collect::<Vec<_>>(),
        ["bbbb", "aaaa"],
        "newest first"
    );
    assert_eq!(listed[0].split, "editing");
    assert_eq!(listed[1].layer, 3);
    assert_eq!(listed[1].ds, (0.0, 100.0), "DS before and after the edit");
    assert_eq!(store.list_runs(1).await.unwrap().len(), 1);
    let of = |split: &'static str, id: u64| {
        let store = &store;
        async move {
            store
                .runs_of_instance(split, id)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.slug)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(of("test", old.request.id).await, ["aaaa"]);
    assert!(of("test", 999).await.is_empty());

    let slug = random_slug(10);
    store
        .upsert_eval(
            &eval(&slug, &[instance(1), instance(2)]),
            &[instance(1), instance(2)],
        )
        .await
        .unwrap();
    // A resumed run stores the same slug again with more instances.
    let three = [instance(1), instance(2), instance(3)];
    store
        .upsert_eval(&eval(&slug, &three), &three)
        .await
        .unwrap();
    assert_eq!(store.eval(&slug).await.unwrap().unwrap().instances, 3);
    assert_eq!(store.eval_instances(&slug).await.unwrap(), three);
    assert_eq!(
        store.list_evals().await.unwrap().len(),
        1,
        "replaced, not added"
    );
    let other = random_slug(10);
    store
        .upsert_eval(&eval(&other, &[instance(3)]), &[instance(3)])
        .await
        .unwrap();
    let slugs = |list: Vec<EvalRecord>| list.into_iter().map(|e| e.slug).collect::<Vec<_>>();
    assert_eq!(
        slugs(store.evals_with_instance(1).await.unwrap()),
        [slug.as_str()]
    );
    let with_3 = slugs(store.evals_with_instance(3).await.unwrap());
    assert_eq!(with_3.len(), 2, "{with_3:?}");
    assert!(store.evals_with_instance(9).await.unwrap().is_empty());

    // Verdict flags: one per instance and input, replaced when set again, kept when the
    // evaluation is stored again, and removed on request.
    let flag = |instance: u64, note: &str| {
        flag_for(
            &three,
            FlagRequest {
                instance,
                kind: "DS".into(),
                note: note.into(),
            },
            now_rfc3339(),
        )
        .unwrap()
    };
    store.set_verdict_flag(&slug, &flag(3, "")).await.unwrap();
    store
        .set_verdict_flag(&slug, &flag(1, "first"))
        .await
        .unwrap();
    store
        .set_verdict_flag(&slug, &flag(1, "second"))
        .await
        .unwrap();
    store
        .upsert_eval(&eval(&slug, &three), &three)
        .await
        .unwrap();
    let flags = store.verdict_flags(&slug).await.unwrap();
    assert_eq!(
        flags
            .iter()
            .map(|f| (f.instance, f.note.as_str(), f.human))
            .collect::<Vec<_>>(),
        [(1, "second", Verdict::Unsafe), (3, "", Verdict::Unsafe)]
    );
    assert!(store.verdict_flags(&other).await.unwrap().is_empty());
    assert!(store.clear_verdict_flag(&slug, 3, "DS").await.unwrap());
    assert!(!store.clear_verdict_flag(&slug, 3, "DS").await.unwrap());
    assert_eq!(store.verdict_flags(&slug).await.unwrap().len(), 1);
    // Every evaluation's flags, with their slugs (the Judge page's list).
    store.set_verdict_flag(&other, &flag(3, "")).await.unwrap();
    let mut expected = vec![(slug.clone(), 1), (other.clone(), 3)];
    expected.sort();
    assert_eq!(
        store
            .all_verdict_flags()
            .await
            .unwrap()
            .into_iter()
            .map(|(s, f)| (s, f.instance))
            .collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn jobs_keep_their_state_and_a_reopened_database_keeps_everything() {
    runtime()
        .block_on(jobs_keep_their_state_and_a_reopened_database_keeps_everything_on(&Db::sqlite()));
}

async fn jobs_keep_their_state_and_a_reopened_database_keeps_everything_on(db: &Db) {
    let store = db.open().await;
    store
        .insert_job("j1", &now_rfc3339(), &JobSpec::Edit(request(1)), "m")
        .await
        .unwrap();
    store
        .insert_job("j2", &now_rfc3339(), &JobSpec::Edit(request(2)), "m")
        .await
        .unwrap();
    store
        .set_job("j1", JobStatus::Done, Some("/evals/abc"), None)
        .await
        .unwrap();
    store
        .set_job("j2", JobStatus::Running, None, None)
        .await
        .unwrap();
    store
        .insert_run("test", &run("cccc", &now_rfc3339(), 1))
        .await
        .unwrap();
    drop(store);

    // The next server process: same file, migrations already applied.
    let store = db.open().await;
    let unfinished = store.unfinished_jobs("m").await.unwrap();
    assert_eq!(
        unfinished,
        vec![("j2".to_string(), JobSpec::Edit(request(2)))]
    );
    assert_eq!(store.fail_interrupted_jobs().await.unwrap(), 1);
    assert!(store.unfinished_jobs("m").await.unwrap().is_empty());
    let done = store.job("j1").await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!(done.result.as_deref(), Some("/evals/abc"));
    assert_eq!(done.request, JobSpec::Edit(request(1)));
    let failed = store.job("j2").await.unwrap().unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(failed.message.unwrap().contains("server stopped"));
    assert!(store.job("j3").await.unwrap().is_none());
    assert!(store.run("cccc").await.unwrap().is_some());
}

#[test]
fn job_events_keep_their_order_and_cancel_flags_are_seen() {
    runtime().block_on(job_events_keep_their_order_and_cancel_flags_are_seen_on(
        &Db::sqlite(),
    ));
}

/// What a server and a worker process share about a job: its numbered events (written by one,
/// read by the other), the cancel flag, and the queue's counts.
async fn job_events_keep_their_order_and_cancel_flags_are_seen_on(db: &Db) {
    let store = db.open().await;
    for id in ["e1", "e2"] {
        store
            .insert_job(id, &now_rfc3339(), &JobSpec::Edit(request(1)), "m")
            .await
            .unwrap();
    }
    let events = [
        JobEvent::Queued { ahead: 0 },
        JobEvent::Started {
            worker: "gpu-3:4242".into(),
        },
        JobEvent::Step { step: 1, loss: 0.5 },
    ];
    for (seq, event) in events.iter().enumerate() {
        store.append_job_event("e1", seq, event).await.unwrap();
    }
    // A repeated write of a number leaves the first.
    store
        .append_job_event("e1", 2, &JobEvent::Cancelled)
        .await
        .unwrap();
    // Another job's events stay apart; one past a gap is not read until the gap is filled.
    store
        .append_job_event("e2", 0, &JobEvent::Queued { ahead: 1 })
        .await
        .unwrap();
    store
        .append_job_event("e2", 2, &JobEvent::Cancelled)
        .await
        .unwrap();
    assert_eq!(store.job_events("e1", 0).await.unwrap(), events.to_vec());
    assert_eq!(
        store.job_events("e1", 1).await.unwrap(),
        events[1..].to_vec()
    );
    assert!(store.job_events("e1", 3).await.unwrap().is_empty());
    assert_eq!(store.job_events("e2", 0).await.unwrap().len(), 1);
    assert!(store.job_events("nope", 0).await.unwrap().is_empty());

    let both = ["e1".to_string(), "e2".to_string()];
    assert!(store.cancel_requested(&both).await.unwrap().is_empty());
    store.request_job_cancel("e2").await.unwrap();
    assert_eq!(store.cancel_requested(&both).await.unwrap(), vec!["e2"]);

    assert_eq!(store.count_jobs(JobStatus::Queued, "m").await.unwrap(), 2);
    store
        .set_job("e1", JobStatus::Running, None, None)
        .await
        .unwrap();
    assert_eq!(store.count_jobs(JobStatus::Queued, "m").await.unwrap(), 1);
    assert_eq!(store.count_jobs(JobStatus::Running, "m").await.unwrap(), 1);
    // Another model's app on the same database: its jobs are its own.
    store
        .insert_job("other", &now_rfc3339(), &JobSpec::Edit(request(3)), "m2")
        .await
        .unwrap();
    assert_eq!(store.count_jobs(JobStatus::Queued, "m").await.unwrap(), 1);
    assert_eq!(store.count_jobs(JobStatus::Queued, "m2").await.unwrap(), 1);
    let ids = |jobs: Vec<(String, JobSpec)>| jobs.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(store.unfinished_jobs("m2").await.unwrap()), ["other"]);
    assert!(!ids(store.unfinished_jobs("m").await.unwrap()).contains(&"other".to_string()));
}

#[test]
fn a_damaged_record_is_an_error_naming_it() {
    runtime().block_on(a_damaged_record_is_an_error_naming_it_on(&Db::sqlite()));
}

async fn a_damaged_record_is_an_error_naming_it_on(db: &Db) {
    let store = db.open().await;
    store
        .insert_run("test", &run("dddd", &now_rfc3339(), 1))
        .await
        .unwrap();
    drop(store);
    // Edited by hand behind the app's back.
    let pool = db.raw().await;
    sqlx::query("UPDATE runs SET record = '{\"slug\": 1}' WHERE slug = 'dddd'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = db.open().await;
    let err = store.run("dddd").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().starts_with("run dddd: stored record:"),
        "{err}"
    );
}

#[test]
fn an_unreachable_database_names_its_url() {
    let rt = runtime();
    let err = rt
        .block_on(Store::open(
            Some("sqlite:///nonexistent-dir/x/runs.sqlite?mode=ro"),
            "/unused".as_ref(),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("nonexistent-dir"), "{err}");
}

#[test]
fn a_database_that_cannot_be_reached_is_named_without_its_password() {
    use safeedit_store::redact_url;

    assert_eq!(
        redact_url("postgres://lab:s3cret@db.example:5432/safeedit?sslmode=require"),
        "postgres://lab:***@db.example:5432/safeedit?sslmode=require"
    );
    assert_eq!(
        redact_url("postgres://db.example/safeedit?user=lab&password=s3cret"),
        "postgres://db.example/safeedit?user=lab&password=***"
    );
    assert_eq!(
        redact_url("sqlite:///tmp/runs.sqlite"),
        "sqlite:///tmp/runs.sqlite"
    );
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A URL that cannot be used (here: a port that is not a number) fails at once.
    let opened = rt.block_on(Store::open(
        Some("postgres://lab:s3cret@127.0.0.1:port/safeedit"),
        dir.path(),
    ));
    let Err(err) = opened else {
        panic!("the URL is refused")
    };
    let err = err.to_string();
    assert!(!err.contains("s3cret"), "{err}");
    assert!(
        err.contains("postgres://lab:***@127.0.0.1:port/safeedit"),
        "{err}"
    );
}

#[test]
fn unlisted_runs_are_remembered_and_listed_again() {
    runtime().block_on(unlisted_runs_are_remembered_and_listed_again_on(
        &Db::sqlite(),
    ));
}

async fn unlisted_runs_are_remembered_and_listed_again_on(db: &Db) {
    let store = db.open().await;
    assert!(store.unlisted().await.unwrap().is_empty());
    store.set_unlisted("abc", true).await.unwrap();
    store.set_unlisted("abc", true).await.unwrap();
    store.set_unlisted("def", true).await.unwrap();
    store.set_unlisted("def", false).await.unwrap();
    let unlisted = store.unlisted().await.unwrap();
    assert_eq!(unlisted.into_iter().collect::<Vec<_>>(), ["abc"]);
    drop(store);
    let reopened = db.open().await;
    assert!(reopened.unlisted().await.unwrap().contains("abc"));
}

/// Every scenario above on a real Postgres 15 server, started here in a temporary folder (Unix
/// socket only) and stopped at the end; each scenario gets its own database. Without Postgres
/// this fails and says why.
#[test]
fn every_scenario_on_a_real_postgres_server() {
    let server = ThrowawayPostgres::start().expect("a throwaway Postgres server starts");
    let rt = runtime();
    let db = |name: &str| Db {
        url: Some(server.database(name).unwrap()),
        dir: tempfile::tempdir().unwrap(),
    };
    let runs = db("runs");
    let version: String = rt.block_on(async {
        sqlx::query_scalar("SELECT version()")
            .fetch_one(&runs.raw().await)
            .await
            .unwrap()
    });
    assert!(version.starts_with("PostgreSQL"), "{version}");
    rt.block_on(runs_and_evaluations_round_trip_and_upserts_replace_on(
        &runs,
    ));
    rt.block_on(jobs_keep_their_state_and_a_reopened_database_keeps_everything_on(&db("jobs")));
    rt.block_on(a_damaged_record_is_an_error_naming_it_on(&db("damaged")));
    rt.block_on(job_events_keep_their_order_and_cancel_flags_are_seen_on(
        &db("events"),
    ));
    rt.block_on(unlisted_runs_are_remembered_and_listed_again_on(&db(
        "unlisted",
    )));
    // Everything went to the server: no SQLite file beside it.
    assert!(!runs.dir.path().join("runs.sqlite").exists());
}

/// A database on another machine is reached over TLS with the server's certificate checked
/// (`sslmode=verify-full` against the lab's certificate authority); a server that accepts TLS
/// connections only refuses one without, and the error names the URL.
#[test]
fn a_remote_postgres_is_reached_over_tls_with_its_certificate_checked() {
    let server = ThrowawayPostgres::start_tls().expect("a throwaway Postgres server with TLS");
    server.database("remote").unwrap();
    let rt = runtime();
    let db = Db {
        url: server.tls_url("remote", "verify-full"),
        dir: tempfile::tempdir().unwrap(),
    };
    rt.block_on(runs_and_evaluations_round_trip_and_upserts_replace_on(&db));
    let encrypted: bool = rt.block_on(async {
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&db.raw().await)
            .await
            .unwrap()
    });
    assert!(encrypted, "the session is encrypted");

    let plain = server.tls_url("remote", "disable").unwrap();
    let err = rt
        .block_on(Store::open(Some(&plain), db.dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sslmode=disable"), "{err}");
    assert!(err.contains("no encryption"), "{err}");
}
