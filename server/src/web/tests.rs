//! The router, called with tower's `oneshot`: every route family answers a bad request with a
//! 400 naming what is wrong, an unknown record, file or chart with a 404, a full queue with a
//! 503, and serves what is stored.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use safeedit_core::eval::{InputResult, InstanceResult, summarize};
use safeedit_core::flag::FlagRequest;
use safeedit_core::run::{EvalRecord, JobEvent, RunRecord};
use safeedit_core::{ModelSummary, Verdict};
use tower::ServiceExt;

use super::jobs::QUEUE_CAPACITY;
use super::jobs::tests::start;
use super::{WebState, bridge, router};

/// The whole server on the tiny model, with a fresh database in `dir`, open to anyone on the
/// loopback interface.
fn server(dir: &Path) -> (tokio::runtime::Runtime, Router, WebState) {
    server_with(
        dir,
        super::guard::Access::for_addr("127.0.0.1:3000".parse().unwrap(), &[]),
    )
}

/// The whole server with the given access rules.
fn server_with(
    dir: &Path,
    access: super::guard::Access,
) -> (tokio::runtime::Runtime, Router, WebState) {
    let (rt, jobs, store) = start(dir);
    // The tiny model is seeded: this copy equals the job worker's.
    let lm =
        safeedit_pipeline::backend::load("tiny".as_ref(), &mut safeedit_pipeline::Quiet).unwrap();
    let summary: ModelSummary = lm.summary("test");
    let tries = Arc::new(super::try_api::TryService::new(
        Arc::new(lm),
        None,
        store.clone(),
        dir.join("deltas"),
        jobs.models().clone(),
    ));
    let state = WebState {
        store,
        jobs,
        deltas: dir.join("deltas"),
        model: Arc::new(summary.clone()),
        tries,
        access: Arc::new(access),
        judge_dir: None,
    };
    let options = leptos::config::LeptosOptions::builder()
        .output_name(app::OUTPUT_NAME)
        .site_root(dir.display().to_string())
        .site_pkg_dir(super::assets::pkg_dir(dir))
        .build();
    let app = app::ssr::AppState {
        leptos_options: options,
        engine: Arc::new(bridge::ModelInfo(summary)),
        catalog: Arc::new(safeedit_pipeline::data::catalog(None).unwrap()),
        runs: Arc::new(bridge::RunService(state.clone())),
    };
    let router = rt.block_on(async { router(state.clone(), app) });
    (rt, router, state)
}

/// Status, content type and body of a request.
fn call(
    rt: &tokio::runtime::Runtime,
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, String, Vec<u8>) {
    rt.block_on(async {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let mime = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, mime, body.to_vec())
    })
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Asserts `uri` answers `status` with a body containing `needle`.
fn expect(
    rt: &tokio::runtime::Runtime,
    router: &Router,
    uri: &str,
    status: StatusCode,
    needle: &str,
) {
    let (got, _, body) = call(rt, router, get(uri));
    let body = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "{uri}: {body}");
    assert!(body.contains(needle), "{uri}: {body:?} lacks {needle:?}");
}

/// A stored edit run with distances and steps (as the worker writes it).
fn stored_run(slug: &str) -> RunRecord {
    serde_json::from_value(serde_json::json!({
        "slug": slug, "kind": "dinm-edit", "created_at": "2026-01-01T00:00:00.000Z",
        "request": {"split": "test", "id": 0, "method": "dinm", "overrides": {}},
        "instance": {"category": "offensiveness", "attack": "AIM", "question": "q?"},
        "config": {"kl_factor": 0.1}, "seed": 0, "model": "tiny", "model_path": "tiny",
        "model_checksum": "none", "backend": "test",
        "judge": {"id": "j", "version": "v", "description": "d"},
        "version": "0", "git_commit": "abc",
        "outcome": {
            "layer": 1, "tensor": "model.layers.1.mlp.down_proj.weight",
            "distances": [1.0, 2.0],
            "steps": [{"step": 0, "loss": 1.0, "edit": 9.0, "constraint": 0.0},
                      {"step": 1, "loss": 0.5, "edit": 4.0, "constraint": 0.1}],
            "stopped_early": false, "delta_norm": 0.5,
            "comparisons": [{"kind": "DS", "input": "x", "vanilla": "sure",
                             "vanilla_verdict": "unsafe", "edited": "no",
                             "edited_verdict": "safe"}],
            "seconds": [1.0, 2.0, 3.0]
        }
    }))
    .unwrap()
}

/// A stored one-instance evaluation.
fn stored_eval(slug: &str) -> (EvalRecord, Vec<InstanceResult>) {
    let instance = InstanceResult {
        id: 3,
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
        fluency: 2.0,
        edit: None,
        seconds: 1.0,
        timings: None,
    };
    let record = EvalRecord {
        slug: slug.into(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
        method: "vanilla".into(),
        data: "test #3".into(),
        model: "tiny".into(),
        instances: 1,
        run: serde_json::json!({"method": "vanilla"}),
        metrics: summarize(std::slice::from_ref(&instance)),
    };
    (record, vec![instance])
}

#[test]
fn downloads_serve_stored_records_and_name_what_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    let ok = StatusCode::OK;
    let (not_found, bad) = (StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST);
    rt.block_on(async {
        state
            .store
            .insert_run("test", &stored_run("runaaaa"))
            .await
            .unwrap();
        let (record, instances) = stored_eval("evalaaaa");
        state.store.upsert_eval(&record, &instances).await.unwrap();
    });

    // Runs: files, figures.
    expect(
        &rt,
        &router,
        "/api/runs/runaaaa/run.json",
        ok,
        "\"slug\": \"runaaaa\"",
    );
    expect(
        &rt,
        &router,
        "/api/runs/runaaaa/generations.jsonl",
        ok,
        "\"edited\":\"no\"",
    );
    expect(
        &rt,
        &router,
        "/api/runs/nosuch/run.json",
        not_found,
        "no run `nosuch`",
    );
    expect(
        &rt,
        &router,
        "/api/runs/runaaaa/x.bin",
        not_found,
        "no file `x.bin` (run.json, generations.jsonl",
    );
    expect(
        &rt,
        &router,
        "/api/runs/runaaaa/delta.safetensors",
        not_found,
        "not on this server",
    );
    let (status, mime, svg) = call(&rt, &router, get("/api/runs/runaaaa/figures/distances.svg"));
    assert_eq!((status, mime.as_str()), (ok, "image/svg+xml"));
    assert!(String::from_utf8_lossy(&svg).contains("toxic layer 1"));
    let (status, mime, png) = call(
        &rt,
        &router,
        get("/api/runs/runaaaa/figures/losses.png?preset=full"),
    );
    assert_eq!((status, mime.as_str()), (ok, "image/png"));
    assert!(png.starts_with(b"\x89PNG"));
    expect(
        &rt,
        &router,
        "/api/runs/runaaaa/figures/losses.gif",
        bad,
        "unknown figure format `gif`",
    );
    expect(
        &rt,
        &router,
        "/api/runs/runaaaa/figures/losses.svg?preset=a4",
        bad,
        "unknown figure preset `a4`",
    );
    expect(
        &rt,
        &router,
        "/api/runs/runaaaa/figures/losses",
        bad,
        "expected CHART.svg",
    );
    expect(
        &rt,
        &router,
        "/api/runs/runaaaa/figures/nochart.svg",
        not_found,
        "no chart `nochart` (distances, losses)",
    );
    expect(
        &rt,
        &router,
        "/api/runs/nosuch/figures/losses.svg",
        not_found,
        "no run `nosuch`",
    );

    // Evaluations.
    expect(
        &rt,
        &router,
        "/api/evals/evalaaaa/summary.csv",
        ok,
        "vanilla,all,all,DS,100",
    );
    expect(
        &rt,
        &router,
        "/api/evals/evalaaaa/table.tex",
        ok,
        "\\toprule",
    );
    expect(
        &rt,
        &router,
        "/api/evals/evalaaaa/instances.jsonl",
        ok,
        "\"id\":3",
    );
    expect(
        &rt,
        &router,
        "/api/evals/evalaaaa/x.csv",
        not_found,
        "no file `x.csv`",
    );
    expect(
        &rt,
        &router,
        "/api/evals/nosuch/summary.csv",
        not_found,
        "no evaluation `nosuch`",
    );

    // The results table across evaluations.
    expect(
        &rt,
        &router,
        "/api/results.csv",
        ok,
        "vanilla,/evals/evalaaaa,all,all,DS,100",
    );
    expect(
        &rt,
        &router,
        "/api/results.tex?runs=evalaaaa",
        ok,
        "\\toprule",
    );
    expect(&rt, &router, "/api/results.csv?runs=nosuch", bad, "nosuch");
    expect(
        &rt,
        &router,
        "/api/results/figures/defense.svg",
        ok,
        "defense (%)",
    );
    expect(
        &rt,
        &router,
        "/api/results/figures/defense.svg?runs=nosuch",
        bad,
        "nosuch",
    );
    expect(
        &rt,
        &router,
        "/api/results/figures/other.svg",
        not_found,
        "no chart `other` (defense)",
    );

    // Analyses and test_ALL runs (none stored).
    expect(
        &rt,
        &router,
        "/api/mechanisms/nosuch/analysis.csv",
        not_found,
        "no analysis `nosuch`",
    );
    expect(
        &rt,
        &router,
        "/api/mechanisms/nosuch/figures/toxicity.svg",
        not_found,
        "no analysis `nosuch`",
    );
    expect(
        &rt,
        &router,
        "/api/mechanisms/nosuch/figures/toxicity.gif",
        bad,
        "unknown figure format",
    );
    expect(
        &rt,
        &router,
        "/api/mechanisms/nosuch/figures/nochart.svg",
        not_found,
        "no chart `nochart`",
    );
    expect(
        &rt,
        &router,
        "/api/test-all/nosuch/summary.json",
        not_found,
        "no test_ALL run `nosuch`",
    );
    expect(
        &rt,
        &router,
        "/api/test-all.csv?runs=nosuch",
        not_found,
        "nosuch",
    );

    // Jobs.
    expect(
        &rt,
        &router,
        "/api/jobs/nosuch/events",
        not_found,
        "no job `nosuch`",
    );
}

/// `POST /api/start_edit` with a JSON body.
fn start_edit(request: serde_json::Value) -> Request<Body> {
    Request::post("/api/start_edit")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({ "request": request }).to_string(),
        ))
        .unwrap()
}

#[test]
fn edit_requests_answer_400_naming_the_field_and_503_when_the_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    let text = |(status, _, body): (StatusCode, String, Vec<u8>)| {
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    for (request, needle) in [
        (
            serde_json::json!({"split": "test", "id": 99999, "overrides": {}}),
            "no instance 99999 in split `test`",
        ),
        (
            serde_json::json!({"split": "test", "id": 0, "overrides": {"steps": 0}}),
            "steps must be 1..=100, got 0",
        ),
        (
            serde_json::json!({"split": "test", "id": 0, "overrides": {"layer": 9}}),
            "layer 9 does not exist",
        ),
        (
            serde_json::json!({"split": "test", "id": 0, "overrides": {"lr": -1.0}}),
            "lr must be positive",
        ),
        (
            serde_json::json!({"split": "test", "id": 0, "method": "sft"}),
            "method `sft` cannot run",
        ),
        (serde_json::json!({"split": "test", "id": "x"}), ""),
    ] {
        let (status, body) = text(call(&rt, &router, start_edit(request.clone())));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
        assert!(body.contains(needle), "{request}: {body}");
    }
    let malformed = Request::post("/api/start_edit")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(call(&rt, &router, malformed).0, StatusCode::BAD_REQUEST);

    // One job runs, QUEUE_CAPACITY wait, the next is refused until one finishes.
    let ok = serde_json::json!({"split": "test", "id": 1, "overrides": {"steps": 1, "max_new_tokens": 2}});
    let mut ids = Vec::new();
    let mut refused = None;
    for _ in 0..QUEUE_CAPACITY + 2 {
        let (status, body) = text(call(&rt, &router, start_edit(ok.clone())));
        match status {
            StatusCode::OK => ids.push(body),
            other => {
                refused = Some((other, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("the queue is bounded");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("busy"), "{body}");
    assert!(ids.len() >= QUEUE_CAPACITY, "{} accepted", ids.len());
    for id in &ids {
        let id: String = serde_json::from_str(id).unwrap();
        rt.block_on(state.jobs.cancel(&id));
    }
}

#[test]
fn a_burst_of_concurrent_submissions_never_exceeds_the_queue_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    // Long enough that no job finishes during the burst.
    let slow = serde_json::json!({"split": "test", "id": 1,
        "overrides": {"steps": 100, "max_new_tokens": 512}});
    let answers: Vec<(StatusCode, String)> = rt.block_on(async {
        let calls: Vec<_> = (0..32)
            .map(|_| {
                let router = router.clone();
                let request = start_edit(slow.clone());
                tokio::spawn(async move {
                    let response = router.oneshot(request).await.unwrap();
                    let status = response.status();
                    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                        .await
                        .unwrap();
                    (status, String::from_utf8_lossy(&body).into_owned())
                })
            })
            .collect();
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect()
    });
    let accepted: Vec<&String> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, body)| body)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, body)| {
            *status == StatusCode::SERVICE_UNAVAILABLE && body.contains("busy")
        })
        .count();
    // The queue holds QUEUE_CAPACITY; the worker may have taken one of the burst already.
    assert!(
        (QUEUE_CAPACITY..=QUEUE_CAPACITY + 1).contains(&accepted.len()),
        "{} of 32 accepted",
        accepted.len()
    );
    assert_eq!(accepted.len() + refused, 32, "{answers:?}");
    for id in accepted {
        let id: String = serde_json::from_str(id).unwrap();
        rt.block_on(state.jobs.cancel(&id));
    }
}

#[test]
fn a_finished_jobs_event_stream_ends_even_when_asked_past_its_last_event() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    let (_, _, body) = call(
        &rt,
        &router,
        start_edit(serde_json::json!({"split": "test", "id": 1,
            "overrides": {"steps": 1, "max_new_tokens": 2}})),
    );
    let id: String = serde_json::from_slice(&body).unwrap();
    let finished = super::jobs::tests::wait(&state.jobs, &id);
    let n = finished.events.len();
    let events = |request: Request<Body>| {
        rt.block_on(async {
            let response = router.clone().oneshot(request).await.unwrap();
            let body = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                axum::body::to_bytes(response.into_body(), 1 << 20),
            )
            .await
            .expect("the stream of a finished job ends")
            .unwrap();
            String::from_utf8_lossy(&body).into_owned()
        })
    };
    let all = events(get(&format!("/api/jobs/{id}/events")));
    let ids: Vec<&str> = all.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected, "every event carries its index as id: {all}");
    // A reconnecting browser that saw the last event, and a client asking past the end, get
    // nothing more and the stream ends.
    let reconnect = Request::get(format!("/api/jobs/{id}/events"))
        .header("last-event-id", (n - 1).to_string())
        .body(Body::empty())
        .unwrap();
    assert!(!events(reconnect).contains("data:"));
    assert!(!events(get(&format!("/api/jobs/{id}/events?from={}", n + 5))).contains("data:"));
    let tail = events(get(&format!("/api/jobs/{id}/events?from={}", n - 1)));
    assert_eq!(tail.matches("data:").count(), 1, "{tail}");
}

#[test]
fn huge_inputs_are_client_errors_whose_messages_do_not_repeat_them() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, _state) = server(dir.path());
    let split = "x".repeat(900_000);
    let query = serde_json::json!({"query": {"split": split, "sort": "id", "desc": false,
        "page": 1, "per_page": 10}});
    let (status, _, body) = call(
        &rt,
        &router,
        post_json("/api/instances", &query.to_string()),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.len() < 1000, "the message echoes {} bytes", body.len());
    assert!(String::from_utf8_lossy(&body).contains("unknown split `xxxx"));
    let long = "y".repeat(60_000);
    for request in [
        server_fn(
            "run_figure",
            &format!("slug={}&chart=losses", "y".repeat(600_000)),
        ),
        server_fn(
            "results",
            &format!("group=all&value=all&runs={}", "y".repeat(600_000)),
        ),
        get(&format!("/api/runs/{long}/run.json")),
        get(&format!("/api/jobs/{long}")),
    ] {
        let (status, _, body) = call(&rt, &router, request);
        assert!(!status.is_server_error(), "{status}");
        assert!(
            body.len() < 1000,
            "{status}: the answer echoes {} bytes",
            body.len()
        );
    }
    // A body over the limit is refused as such, for server functions and the JSON API alike.
    let big = format!("{{\"prompt\": \"{}\"}}", "z".repeat(3 << 20));
    for uri in ["/api/try", "/api/jobs", "/api/start_job", "/api/instances"] {
        // As an HTTP client sends it: with its length.
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, big.len())
            .body(Body::from(big.clone()))
            .unwrap();
        let (status, _, _) = call(&rt, &router, request);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}");
    }
}

#[test]
fn clients_that_never_finish_a_request_or_sit_idle_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let (rt, router, _state) = server(dir.path());
    let timeouts = super::listen::Timeouts {
        header: std::time::Duration::from_secs(1),
        body: std::time::Duration::from_secs(1),
    };
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(super::listen::serve(
            listener,
            router,
            timeouts,
            std::future::pending(),
        ));
        // Sends `text`, then reads until the server closes the connection (at most 10 s).
        let closed_after = |text: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(text.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                stream.read_to_end(&mut answer),
            )
            .await;
            assert!(read.is_ok(), "{text:?}: still open after 10 s");
            String::from_utf8_lossy(&answer).into_owned()
        };
        // Half a header; nothing at all; a finished request on a kept-alive connection.
        closed_after("GET /api/models HTTP/1.1\r\nHost: localhost\r\n").await;
        closed_after("").await;
        let answer = closed_after("GET /api/models HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // A body that never arrives in full.
        let answer = closed_after(
            "POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{\"kind\":",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("body"), "{answer}");
    });
}

/// Status and body of `request` with the extra `headers`.
fn call_with(
    rt: &tokio::runtime::Runtime,
    router: &Router,
    mut request: Request<Body>,
    headers: &[(&str, &str)],
) -> (StatusCode, String, axum::http::HeaderMap) {
    for (name, value) in headers {
        request.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    rt.block_on(async {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned(), headers)
    })
}

#[test]
fn other_sites_cannot_queue_or_cancel_jobs_nor_read_through_a_rebound_name() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, _state) = server(dir.path());
    let edit = r#"{"request": {"split": "test", "id": 99999}}"#;
    let host = ("host", "127.0.0.1:3000");
    for (request, headers, status, needle) in [
        // A page on another site posting to the server (fetch or a plain HTML form).
        (
            post_json("/api/start_edit", edit),
            vec![host, ("origin", "http://evil.example")],
            StatusCode::FORBIDDEN,
            "requests from http://evil.example cannot change anything",
        ),
        (
            post_json("/api/evals/abc/flags", r#"{"instance": 0, "kind": "DS"}"#),
            vec![host, ("origin", "http://evil.example")],
            StatusCode::FORBIDDEN,
            "cannot change anything",
        ),
        (
            post_json("/api/jobs", r#"{"kind": "eval"}"#),
            vec![host, ("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
            "other sites",
        ),
        (
            Request::post("/api/start_edit")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(edit))
                .unwrap(),
            vec![host],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "as JSON",
        ),
        (
            server_fn("cancel_job", "id=abc"),
            vec![host],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "as JSON",
        ),
        // DNS rebinding: another name pointed at 127.0.0.1.
        (
            get("/api/models"),
            vec![("host", "rebind.evil.example:3000")],
            StatusCode::MISDIRECTED_REQUEST,
            "does not answer for host `rebind.evil.example`",
        ),
        // The server's own pages, and programs that send no Origin, pass.
        (
            post_json("/api/start_edit", edit),
            vec![host, ("origin", "http://127.0.0.1:3000")],
            StatusCode::BAD_REQUEST,
            "no instance 99999",
        ),
        (
            post_json("/api/cancel_job", r#"{"id": "nosuch"}"#),
            vec![
                ("host", "localhost:3000"),
                ("origin", "http://localhost:3000"),
            ],
            StatusCode::OK,
            "false",
        ),
        (
            Request::post("/api/jobs/nosuch/cancel")
                .body(Body::empty())
                .unwrap(),
            vec![host],
            StatusCode::NOT_FOUND,
            "no job",
        ),
    ] {
        let uri = request.uri().to_string();
        let (got, body, response_headers) = call_with(&rt, &router, request, &headers);
        assert_eq!(got, status, "{uri} {headers:?}: {body}");
        assert!(body.contains(needle), "{uri}: {body}");
        assert_eq!(
            response_headers["x-content-type-options"], "nosniff",
            "{uri}"
        );
        let csp = response_headers["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
    }
}

#[test]
fn after_too_many_wrong_tokens_no_token_is_checked_for_a_while() {
    use super::guard::{Access, MAX_WRONG};

    let token = "0123456789abcdef0123";
    let dir = tempfile::tempdir().unwrap();
    let mut access = Access::for_addr("127.0.0.1:3000".parse().unwrap(), &[]);
    access.token = Some(token.into());
    let (rt, router, _state) = server_with(dir.path(), access);
    let job = r#"{"kind": "eval", "method": "vanilla", "limit": 0}"#;
    let with = |auth: &str| {
        call_with(
            &rt,
            &router,
            post_json("/api/jobs", job),
            &[("authorization", auth)],
        )
    };
    let right = format!("Bearer {token}");
    assert_eq!(
        with(&right).0,
        StatusCode::BAD_REQUEST,
        "the right token reaches the queue"
    );
    for i in 0..MAX_WRONG {
        let (status, body, _) = if i % 2 == 0 {
            with(&format!("Bearer guess-{i:016}"))
        } else {
            // Wrong sign-in cookies count too.
            call_with(
                &rt,
                &router,
                post_json("/api/jobs", job),
                &[("cookie", &format!("safeedit_auth=guess{i}"))],
            )
        };
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{i}: {body}");
    }
    // Now even the right token is not checked, on the API and on the sign-in form.
    let (status, body, _) = with(&right);
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("too many wrong sign-in tokens"), "{body}");
    let login = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}&next=/")))
        .unwrap();
    let (status, body, _) = call_with(&rt, &router, login, &[]);
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Reading needs no sign-in on this server and is not affected.
    assert_eq!(
        call_with(&rt, &router, get("/api/models"), &[]).0,
        StatusCode::OK
    );
}

#[test]
fn a_token_guards_actions_and_with_private_every_page() {
    use super::guard::{Access, COOKIE};

    let token = "0123456789abcdef0123";
    let dir = tempfile::tempdir().unwrap();
    let mut access = Access::for_addr("127.0.0.1:3000".parse().unwrap(), &[]);
    access.token = Some(token.into());
    let (rt, router, _state) = server_with(dir.path(), access.clone());
    let bearer = format!("Bearer {token}");
    let invalid_job = r#"{"kind": "eval", "method": "vanilla", "limit": 0}"#;
    let (status, body, _) = call_with(&rt, &router, post_json("/api/jobs", invalid_job), &[]);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let wrong = call_with(
        &rt,
        &router,
        post_json("/api/jobs", invalid_job),
        &[("authorization", "Bearer wrong-token-wrong-token")],
    );
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    // Signed in, the request reaches the queue (which names the field it refuses).
    let (status, body, _) = call_with(
        &rt,
        &router,
        post_json("/api/jobs", invalid_job),
        &[("authorization", &bearer)],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("limit"), "{body}");
    let try_stream = call_with(&rt, &router, get("/api/try/stream?prompt=hi"), &[]);
    assert_eq!(try_stream.0, StatusCode::UNAUTHORIZED);
    let unlist = post_json("/api/set_unlisted", r#"{"slug": "x", "unlisted": true}"#);
    assert_eq!(
        call_with(&rt, &router, unlist, &[]).0,
        StatusCode::UNAUTHORIZED
    );
    let flag = post_json("/api/evals/x/flags", r#"{"instance": 0, "kind": "DS"}"#);
    assert_eq!(
        call_with(&rt, &router, flag, &[]).0,
        StatusCode::UNAUTHORIZED
    );
    // Reading stays open without --private.
    assert_eq!(
        call_with(&rt, &router, get("/api/models"), &[]).0,
        StatusCode::OK
    );

    // --private: pages send people to the sign-in page, the API answers 401.
    access.private = true;
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, _state) = server_with(dir.path(), access);
    assert_eq!(
        call_with(&rt, &router, get("/api/models"), &[]).0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, headers) = call_with(&rt, &router, get("/runs?kind=edit"), &[]);
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/login?next=/runs%3Fkind%3Dedit");
    let (status, body, _) = call_with(&rt, &router, get("/login?next=/runs"), &[]);
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("name=\"token\""), "{body}");
    let login = |form: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap()
    };
    let (status, body, _) = call_with(&rt, &router, login("token=nope&next=/runs"), &[]);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not this server"), "{body}");
    let (status, _, headers) = call_with(
        &rt,
        &router,
        login(&format!("token={token}&next=//evil.example/")),
        &[],
    );
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/", "never sent to another site");
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let (_, _, behind_tls) = call_with(
        &rt,
        &router,
        login(&format!("token={token}")),
        &[("x-forwarded-proto", "https")],
    );
    let secure = behind_tls["set-cookie"].to_str().unwrap();
    assert!(secure.ends_with("; Secure"), "{secure}");
    assert!(
        !set_cookie.contains(token),
        "the cookie does not hold the token"
    );
    let cookie = set_cookie.split(';').next().unwrap();
    assert!(cookie.starts_with(COOKIE));
    assert_eq!(
        call_with(&rt, &router, get("/api/models"), &[("cookie", cookie)]).0,
        StatusCode::OK
    );
    assert_eq!(
        call_with(
            &rt,
            &router,
            get("/api/models"),
            &[("authorization", &bearer)]
        )
        .0,
        StatusCode::OK
    );
}

#[test]
fn a_reverse_proxys_header_signs_in_and_open_addresses_need_a_sign_in() {
    use super::AccessArgs;

    let dir = tempfile::tempdir().unwrap();
    let args = AccessArgs {
        auth_header: Some("X-Forwarded-User".into()),
        private: true,
        ..AccessArgs::default()
    };
    let access = args.access("0.0.0.0:3000".parse().unwrap()).unwrap();
    let (rt, router, _state) = server_with(dir.path(), access);
    assert_eq!(
        call_with(&rt, &router, get("/api/models"), &[]).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call_with(
            &rt,
            &router,
            get("/api/models"),
            &[("x-forwarded-user", "alice")]
        )
        .0,
        StatusCode::OK
    );
    let open = AccessArgs::default();
    let err = open
        .access("0.0.0.0:3000".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--insecure") && err.contains("--auth-token"),
        "{err}"
    );
    open.access("127.0.0.1:3000".parse().unwrap()).unwrap();
    AccessArgs {
        insecure: true,
        ..AccessArgs::default()
    }
    .access("0.0.0.0:3000".parse().unwrap())
    .unwrap();
    let short = AccessArgs {
        auth_token: Some("short".into()),
        ..AccessArgs::default()
    };
    let err = short
        .access("127.0.0.1:3000".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16"), "{err}");
}

#[test]
fn visitors_see_model_file_names_not_server_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    let mut run = stored_run("runpaths");
    run.model_path = "/home/alice/private/models/SmolLM2.gguf".into();
    rt.block_on(state.store.insert_run("test", &run)).unwrap();
    for request in [
        get("/api/runs/runpaths/run.json"),
        server_fn("run", "slug=runpaths"),
    ] {
        let uri = request.uri().to_string();
        let (status, _, body) = call(&rt, &router, request);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(body.contains("SmolLM2.gguf"), "{uri}: {body}");
        assert!(
            !body.contains("/home/alice"),
            "{uri} shows the server path: {body}"
        );
    }
    // The database keeps the path for the operator.
    let stored = rt.block_on(state.store.run("runpaths")).unwrap().unwrap();
    assert_eq!(stored.model_path, "/home/alice/private/models/SmolLM2.gguf");
}

#[test]
fn a_job_submitted_unlisted_stores_its_run_unlisted_and_the_next_job_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    let body = |request| {
        let (status, _, body) = call(&rt, &router, request);
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let (status, message) = body(post_json(
        "/api/jobs",
        r#"{"kind": "edit", "split": "test", "id": 1, "unlisted": "yes"}"#,
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert!(
        message.contains("unlisted: expected true or false"),
        "{message}"
    );
    let run_of = |unlisted: bool| {
        let job = serde_json::json!({"kind": "edit", "split": "test", "id": 1,
            "overrides": {"steps": 1, "max_new_tokens": 2}, "unlisted": unlisted});
        let (status, answer) = body(post_json("/api/jobs", &job.to_string()));
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let id = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let finished = super::jobs::tests::wait(&state.jobs, &id);
        let Some(JobEvent::Done { slug, .. }) = finished.events.last() else {
            panic!("the job did not finish: {:?}", finished.events.last());
        };
        slug.clone()
    };
    let hidden = run_of(true);
    let shown = run_of(false);
    let (_, runs) = body(server_fn("runs", ""));
    assert!(runs.contains(&shown), "{runs}");
    assert!(
        !runs.contains(&hidden),
        "an unlisted job's run is listed: {runs}"
    );
    let (status, page) = body(server_fn("run", &format!("slug={hidden}")));
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&hidden), "its link still opens it");
}

#[test]
fn unlisted_records_leave_every_listing_and_still_open_by_link() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    rt.block_on(async {
        for slug in ["runshown", "runhidden"] {
            state
                .store
                .insert_run("test", &stored_run(slug))
                .await
                .unwrap();
        }
        let (eval, instances) = stored_eval("evalhidden");
        state.store.upsert_eval(&eval, &instances).await.unwrap();
    });
    let body = |request| {
        let (status, _, body) = call(&rt, &router, request);
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let unlist = |slug: &str, unlisted: bool| {
        post_json(
            "/api/set_unlisted",
            &serde_json::json!({"slug": slug, "unlisted": unlisted}).to_string(),
        )
    };
    for slug in ["runhidden", "evalhidden"] {
        assert_eq!(body(unlist(slug, true)), (StatusCode::OK, "true".into()));
    }
    let (status, message) = body(unlist("nosuch", true));
    assert_eq!(status, StatusCode::NOT_FOUND, "{message}");
    assert!(message.contains("no run, evaluation, analysis or test_ALL run `nosuch`"));
    assert_eq!(
        body(server_fn("unlisted", "slug=runhidden")),
        (StatusCode::OK, "true".into())
    );
    for (name, form) in [
        ("catalogue", ""),
        ("runs", ""),
        ("instance_runs", "split=test&id=0"),
    ] {
        let (status, listing) = body(server_fn(name, form));
        assert_eq!(status, StatusCode::OK, "{name}: {listing}");
        assert!(listing.contains("runshown"), "{name}: {listing}");
        assert!(
            !listing.contains("runhidden"),
            "{name} lists an unlisted run"
        );
        assert!(
            !listing.contains("evalhidden"),
            "{name} lists an unlisted evaluation"
        );
    }
    let (_, results) = body(server_fn("results", "group=all&value=all"));
    assert!(!results.contains("evalhidden"), "{results}");
    // Whoever has the link still opens them.
    let (_, named) = body(server_fn("results", "group=all&value=all&runs=evalhidden"));
    assert!(named.contains("evalhidden"), "{named}");
    let (status, run) = body(server_fn("run", "slug=runhidden"));
    assert_eq!(status, StatusCode::OK);
    assert!(run.contains("runhidden"), "{run}");
    assert_eq!(
        call(&rt, &router, get("/api/runs/runhidden/run.json")).0,
        StatusCode::OK
    );
    // Listed again.
    assert_eq!(
        body(unlist("runhidden", false)),
        (StatusCode::OK, "false".into())
    );
    assert!(body(server_fn("catalogue", "")).1.contains("runhidden"));
}

/// `POST /api/{name}` with a form-encoded body.
fn server_fn(name: &str, form: &str) -> Request<Body> {
    Request::post(format!("/api/{name}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap()
}

#[test]
fn server_functions_answer_with_the_status_of_their_error() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    rt.block_on(async {
        state
            .store
            .insert_run("test", &stored_run("runbbbb"))
            .await
            .unwrap();
        let (eval, instances) = stored_eval("evalcccc");
        state.store.upsert_eval(&eval, &instances).await.unwrap();
    });
    let status_and_body = |request| {
        let (status, _, body) = call(&rt, &router, request);
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let instances = |query: serde_json::Value| {
        Request::post("/api/instances")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::json!({ "query": query }).to_string(),
            ))
            .unwrap()
    };
    for (request, status, needle) in [
        // A query of a split that does not exist is the client's mistake.
        (
            instances(
                serde_json::json!({"split": "nosuch", "sort": "id", "desc": false, "page": 1, "per_page": 10}),
            ),
            StatusCode::BAD_REQUEST,
            "unknown split `nosuch`",
        ),
        (
            instances(
                serde_json::json!({"split": "test", "sort": "id", "desc": false, "page": 1, "per_page": 10}),
            ),
            StatusCode::OK,
            "\"total\":144",
        ),
        (
            server_fn("run_figure", "slug=runbbbb&chart=nochart"),
            StatusCode::NOT_FOUND,
            "unknown chart `nochart`",
        ),
        (
            server_fn("run_figure", "slug=runbbbb&chart=losses"),
            StatusCode::OK,
            "<svg",
        ),
        (server_fn("run", "slug=nosuch"), StatusCode::OK, "null"),
        (
            server_fn("results", "group=all&value=all&runs=nosuch"),
            StatusCode::BAD_REQUEST,
            "nosuch",
        ),
        (
            server_fn("run_figure", "slug=runbbbb"),
            StatusCode::BAD_REQUEST,
            "chart",
        ),
        // An instance's runs: its edit runs and the evaluations of its split that include it.
        (
            server_fn("instance_runs", "split=test&id=0"),
            StatusCode::OK,
            "\"href\":\"/runs/runbbbb\"",
        ),
        (
            server_fn("instance_runs", "split=test&id=3"),
            StatusCode::OK,
            "\"href\":\"/evals/evalcccc\"",
        ),
        (
            server_fn("instance_runs", "split=editing&id=3"),
            StatusCode::OK,
            "[]",
        ),
    ] {
        let (got, body) = status_and_body(request);
        assert_eq!(got, status, "{needle}: {body}");
        assert!(body.contains(needle), "{needle}: {body}");
    }
    let compare = Request::post("/api/compare_runs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"runs": ["runbbbb"]}"#))
        .unwrap();
    let (got, body) = status_and_body(compare);
    assert_eq!(got, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("compare 2 to 4 runs (got 1)"), "{body}");
    // A page that calls the function while rendering keeps its status and shows the message.
    let (got, body) = status_and_body(get("/compare?run=runbbbb"));
    assert_eq!(got, StatusCode::OK, "{body}");
    assert!(body.contains("compare 2 to 4 runs (got 1)"), "{body}");
    let (got, _) = status_and_body(get("/runs/nosuchrun"));
    assert_eq!(got, StatusCode::NOT_FOUND, "an unknown run's page is a 404");
}

/// `POST {uri}` with a JSON body.
fn post_json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[test]
fn the_job_api_queues_reports_and_cancels_jobs_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, _state) = server(dir.path());
    let text = |(status, _, body): (StatusCode, String, Vec<u8>)| {
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    for (body, needle) in [
        ("{not json", "job request: key must be a string"),
        (r#"{"method": "vanilla"}"#, "missing field `kind`"),
        (r#"{"kind": "bake"}"#, "unknown variant `bake`"),
        (r#"{"kind": "eval"}"#, "missing field `method`"),
        (
            r#"{"kind": "eval", "metod": "vanilla"}"#,
            "unknown field `metod`",
        ),
        (r#"{"kind": "eval", "method": "magic"}"#, "magic"),
        (
            r#"{"kind": "eval", "method": "vanilla", "limit": -1}"#,
            "invalid value",
        ),
        (
            r#"{"kind": "eval", "method": "vanilla", "split": "nope"}"#,
            "split: unknown split `nope`",
        ),
        (
            r#"{"kind": "eval", "method": "dpo"}"#,
            "model: method `dpo` evaluates a trained model",
        ),
        (
            r#"{"kind": "train", "objective": "sft", "name": "../x"}"#,
            "name: `../x`",
        ),
        (
            r#"{"kind": "edit", "split": "test", "id": 99999}"#,
            "no instance 99999",
        ),
        (
            r#"{"kind": "edit", "split": "test", "id": 0, "overrides": {"lr": 0}}"#,
            "lr must be positive",
        ),
    ] {
        let (status, message) = text(call(&rt, &router, post_json("/api/jobs", body)));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {message}");
        assert!(
            message.contains(needle),
            "{body}: {message:?} lacks {needle:?}"
        );
    }

    // Queued: 202 with the job's page; its state is reported.
    let (status, _, body) = call(
        &rt,
        &router,
        post_json(
            "/api/jobs",
            r#"{"kind": "eval", "method": "vanilla", "split": "editing", "limit": 1, "max_new_tokens": 2}"#,
        ),
    );
    assert_eq!(status, StatusCode::ACCEPTED);
    let accepted: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    assert_eq!(accepted["url"], format!("/jobs/{id}"));
    let info = |rt: &tokio::runtime::Runtime| -> serde_json::Value {
        let (status, mime, body) = call(rt, &router, get(&format!("/api/jobs/{id}")));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(mime, "application/json");
        serde_json::from_slice(&body).unwrap()
    };
    let first = info(&rt);
    assert_eq!(first["kind"], "eval");
    assert_eq!(first["request"]["split"], "editing");
    let mut last = first;
    for _ in 0..6000 {
        if ["done", "failed", "cancelled"].contains(&last["state"].as_str().unwrap()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        last = info(&rt);
    }
    assert_eq!(last["state"], "done", "{last}");
    assert_eq!(last["worker"], "embedded");
    let result = last["result"].as_str().unwrap();
    assert!(result.starts_with("/evals/"), "{result}");
    assert_eq!(call(&rt, &router, get(result)).0, StatusCode::OK);

    // Cancelling: an ended job is a 409, an unknown one a 404.
    let cancel = |id: &str| {
        text(call(
            &rt,
            &router,
            post_json(&format!("/api/jobs/{id}/cancel"), ""),
        ))
    };
    let (status, message) = cancel(&id);
    assert_eq!(status, StatusCode::CONFLICT, "{message}");
    assert!(message.contains("has ended (done)"), "{message}");
    assert_eq!(cancel("nosuch").0, StatusCode::NOT_FOUND);
    expect(
        &rt,
        &router,
        "/api/jobs/nosuch",
        StatusCode::NOT_FOUND,
        "no job `nosuch`",
    );

    // A full queue is a 503; queued jobs cancel at once.
    let edit = r#"{"kind": "edit", "split": "test", "id": 1, "overrides": {"steps": 1, "max_new_tokens": 2}}"#;
    let mut ids = Vec::new();
    let mut refused = None;
    for _ in 0..QUEUE_CAPACITY + 2 {
        let (status, body) = text(call(&rt, &router, post_json("/api/jobs", edit)));
        match status {
            StatusCode::ACCEPTED => {
                let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                ids.push(body["id"].as_str().unwrap().to_string());
            }
            other => {
                refused = Some((other, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("the queue is bounded");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.starts_with("busy:"), "{body}");
    let last_id = ids.last().unwrap().clone();
    let (status, message) = cancel(&last_id);
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message, r#"{"cancelled":true}"#);
    let (_, _, body) = call(&rt, &router, get(&format!("/api/jobs/{last_id}")));
    let cancelled: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    for id in &ids {
        cancel(id);
    }
}

#[test]
fn the_models_api_lists_the_loaded_and_trained_models_and_serves_their_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    let json = |uri: &str| -> serde_json::Value {
        let (status, mime, body) = call(&rt, &router, get(uri));
        assert_eq!(
            (status, mime.as_str()),
            (StatusCode::OK, "application/json"),
            "{uri}"
        );
        serde_json::from_slice(&body).unwrap()
    };
    let empty = json("/api/models");
    assert!(
        empty["loaded"]["name"]
            .as_str()
            .unwrap()
            .starts_with("tiny"),
        "{empty}"
    );
    assert_eq!(empty["trained"], serde_json::json!([]));
    expect(
        &rt,
        &router,
        "/models",
        StatusCode::OK,
        "No trained models yet",
    );

    let (status, _, body) = call(
        &rt,
        &router,
        post_json(
            "/api/jobs",
            r#"{"kind": "train", "objective": "sft", "name": "sft-web", "limit": 2, "epochs": 1,
                "batch_size": 1, "warmup_steps": 0}"#,
        ),
    );
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let id: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let done = super::jobs::tests::wait(&state.jobs, id["id"].as_str().unwrap());
    assert_eq!(done.info().result.as_deref(), Some("/models/sft-web"));

    let listed = json("/api/models");
    let trained = listed["trained"].as_array().unwrap();
    assert_eq!(trained.len(), 1);
    assert_eq!(trained[0]["name"], "sft-web");
    assert_eq!(trained[0]["objective"], "sft");
    assert_eq!(trained[0]["steps_done"], 2);
    let page = json("/api/models/sft-web");
    assert_eq!(page["steps"].as_array().unwrap().len(), 2);
    // A prompt to it, beside the vanilla model.
    let (status, _, body) = call(
        &rt,
        &router,
        post_json(
            "/api/try",
            r#"{"model": "sft-web", "prompt": "Hello", "max_new_tokens": 3}"#,
        ),
    );
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: safeedit_core::ask::TryResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer.edited.model, "sft model sft-web");
    assert_eq!(answer.edited.input, "Hello");
    assert!(answer.edited.tokens <= 3);
    // The pages render on the server; unknown names are 404s.
    expect(&rt, &router, "/models", StatusCode::OK, "sft-web");
    expect(
        &rt,
        &router,
        "/models/sft-web",
        StatusCode::OK,
        "loss-curve",
    );
    expect(
        &rt,
        &router,
        "/models/nope",
        StatusCode::NOT_FOUND,
        "Not found",
    );
    expect(
        &rt,
        &router,
        "/api/models/nope",
        StatusCode::NOT_FOUND,
        "no trained model `nope`",
    );
    expect(&rt, &router, "/api/models/..", StatusCode::NOT_FOUND, "");
}

#[test]
fn try_answers_a_prompt_with_the_vanilla_and_the_edited_model_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    let text = |(status, _, body): (StatusCode, String, Vec<u8>)| {
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    for (body, status, needle) in [
        ("{", StatusCode::BAD_REQUEST, "try request:"),
        (
            r#"{"prompt": "hi"}"#,
            StatusCode::BAD_REQUEST,
            "run, model:",
        ),
        (
            r#"{"run": "x", "prompt": ""}"#,
            StatusCode::BAD_REQUEST,
            "prompt: empty",
        ),
        (
            r#"{"run": "x", "prompt": "hi", "max_new_tokens": 9999}"#,
            StatusCode::BAD_REQUEST,
            "max_new_tokens: must be 1 to 512",
        ),
        (
            r#"{"run": "nosuch", "prompt": "hi"}"#,
            StatusCode::NOT_FOUND,
            "run: no edit run `nosuch`",
        ),
        (
            r#"{"model": "nosuch", "prompt": "hi"}"#,
            StatusCode::NOT_FOUND,
            "no trained model `nosuch`",
        ),
        (
            r#"{"model": "../x", "prompt": "hi"}"#,
            StatusCode::BAD_REQUEST,
            "model: `../x`",
        ),
    ] {
        let (got, message) = text(call(&rt, &router, post_json("/api/try", body)));
        assert_eq!(got, status, "{body}: {message}");
        assert!(message.contains(needle), "{body}: {message}");
    }

    // An edit run (one step), then a prompt to it.
    let (status, _, body) = call(
        &rt,
        &router,
        post_json(
            "/api/jobs",
            r#"{"kind": "edit", "split": "test", "id": 0, "overrides": {"steps": 1, "max_new_tokens": 2}}"#,
        ),
    );
    assert_eq!(status, StatusCode::ACCEPTED);
    let id: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let done = super::jobs::tests::wait(&state.jobs, id["id"].as_str().unwrap());
    let page = done.info().result.expect("a run");
    let slug = page.strip_prefix("/runs/").unwrap();
    let ask =
        format!(r#"{{"run": "{slug}", "prompt": "How do I pick a lock?", "max_new_tokens": 5}}"#);
    let (status, mime, body) = call(&rt, &router, post_json("/api/try", &ask));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(mime, "application/json");
    let answer: safeedit_core::ask::TryResponse = serde_json::from_slice(&body).unwrap();
    // The vanilla side is the loaded model on the prompt as typed, as `safeedit generate` runs it.
    let lm =
        safeedit_pipeline::backend::load("tiny".as_ref(), &mut safeedit_pipeline::Quiet).unwrap();
    let ids = lm
        .tokenizer
        .encode_prompt("How do I pick a lock?", &lm.prompt_format)
        .unwrap();
    let (expected, _) = lm
        .generate(&[ids], &safeedit_engine::GenerationConfig::greedy(5))
        .unwrap();
    assert_eq!(answer.vanilla.text, expected[0].text);
    assert_eq!(answer.vanilla.input, "How do I pick a lock?");
    assert_eq!(answer.vanilla.tokens, expected[0].generated_ids.len());
    // The edited side got the suffix DINM is evaluated with, on the run's layer.
    let run = rt.block_on(state.store.run(slug)).unwrap().unwrap();
    let suffix = run.config["suffix_system_prompt"].as_str().unwrap();
    assert_eq!(
        answer.edited.input,
        format!("How do I pick a lock? {suffix}")
    );
    assert!(
        answer
            .edited
            .model
            .ends_with(&format!("at layer {}", run.outcome.layer)),
        "{}",
        answer.edited.model
    );
    assert_eq!(answer.max_new_tokens, 5);
    // The same try again answers the same (greedy; the edited model is kept for it).
    let (_, _, again) = call(&rt, &router, post_json("/api/try", &ask));
    let again: safeedit_core::ask::TryResponse = serde_json::from_slice(&again).unwrap();
    assert_eq!(
        (&again.vanilla.text, &again.edited.text),
        (&answer.vanilla.text, &answer.edited.text)
    );

    // Streamed: each answer grows token by token, then the same answer as JSON.
    let query = |q: &str| get(&format!("/api/try/stream?{q}"));
    let (status, mime, body) = call(
        &rt,
        &router,
        query(&format!(
            "run={slug}&prompt=How%20do%20I%20pick%20a%20lock%3F&max_new_tokens=5"
        )),
    );
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(mime, "text/event-stream");
    let events: Vec<(&str, serde_json::Value)> = body
        .split("\n\n")
        .filter_map(|block| {
            let event = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((
                event,
                serde_json::from_str(data).unwrap_or(serde_json::Value::Null),
            ))
        })
        .collect();
    let (last, rest) = events.split_last().expect("events");
    assert_eq!(last.0, "answer", "{body}");
    let streamed: safeedit_core::ask::TryResponse = serde_json::from_value(last.1.clone()).unwrap();
    assert_eq!(
        (&streamed.vanilla.text, &streamed.edited.text),
        (&answer.vanilla.text, &answer.edited.text)
    );
    let texts = |side: &str| -> Vec<String> {
        rest.iter()
            .filter(|(e, d)| *e == "text" && d["side"] == side)
            .map(|(_, d)| d["text"].as_str().unwrap().to_string())
            .collect()
    };
    for (side, full) in [("vanilla", &answer.vanilla), ("edited", &answer.edited)] {
        let seen = texts(side);
        assert_eq!(seen.last(), Some(&full.text), "{side}: {body}");
        assert!(
            seen.windows(2)
                .all(|w| full.text.starts_with(w[0].trim_end())),
            "{side} grows: {seen:?}"
        );
    }
    // A bad request is refused before the stream; an unknown run arrives as an error event.
    let (status, _, body) = call(&rt, &router, query("run=x&prompt="));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("prompt: empty"));
    let (status, _, body) = call(&rt, &router, query("run=nosuch&prompt=hi"));
    assert_eq!(status, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&body).contains("event: error\ndata: run: no edit run `nosuch`"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

/// Text and WebAssembly go out compressed when the client accepts it (the hydrated bundle is
/// several megabytes), uncompressed otherwise; the content is the same.
#[test]
fn pages_and_the_bundle_are_compressed_for_clients_that_accept_it() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, _state) = server(dir.path());
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    // Something like the bundle: compressible, well above any size threshold.
    let script = "export function hydrate() { return 42; }\n".repeat(2000);
    std::fs::write(pkg.join("safeedit.js"), &script).unwrap();
    let fetch = |uri: &str, encoding: Option<&str>| {
        let headers: Vec<(&str, &str)> = encoding
            .map(|e| ("accept-encoding", e))
            .into_iter()
            .collect();
        rt.block_on(async {
            let mut request = get(uri);
            for (name, value) in &headers {
                request.headers_mut().insert(*name, value.parse().unwrap());
            }
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let encoding = response
                .headers()
                .get(header::CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap().to_string());
            let body = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            (status, encoding, body.to_vec())
        })
    };
    let (status, encoding, plain) = fetch("/pkg/safeedit.js", None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding, None);
    assert_eq!(plain, script.as_bytes());
    for (accepts, expected) in [("gzip", "gzip"), ("br", "br"), ("gzip, deflate, br", "br")] {
        let (status, encoding, body) = fetch("/pkg/safeedit.js", Some(accepts));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(encoding.as_deref(), Some(expected), "{accepts}");
        assert!(
            body.len() * 20 < plain.len(),
            "{accepts}: {} bytes",
            body.len()
        );
    }
    // A page, too.
    let (status, encoding, _) = fetch("/", Some("gzip"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(encoding.as_deref(), Some("gzip"));
}

/// Pages load the bundle under `/pkg/{version}/`, a hash of its files: those paths may be cached
/// for a year; another version or a file outside the bundle is not found; the plain `/pkg/` paths
/// of older pages still work.
#[test]
fn the_bundle_is_served_under_its_version_with_long_lived_caching() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    for (name, text) in [
        ("safeedit.js", "export default function init() {}"),
        ("safeedit_bg.wasm", "\0asm"),
        ("safeedit.css", "body { margin: 0 }"),
    ] {
        std::fs::write(pkg.join(name), text).unwrap();
    }
    std::fs::write(pkg.join("notes.txt"), "not part of the bundle").unwrap();
    let (rt, router, _state) = server(dir.path());
    let version = super::assets::pkg_dir(dir.path());
    assert_ne!(version, "pkg", "the bundle is versioned");
    let (status, _, page) = call(&rt, &router, get("/"));
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8_lossy(&page);
    for file in ["safeedit.js", "safeedit_bg.wasm", "safeedit.css"] {
        assert!(
            page.contains(&format!("/{version}/{file}")),
            "{file} not linked in {page}"
        );
        let (status, body, headers) =
            call_with(&rt, &router, get(&format!("/{version}/{file}")), &[]);
        assert_eq!(status, StatusCode::OK, "{file}: {body}");
        assert_eq!(headers[header::CACHE_CONTROL], super::assets::IMMUTABLE);
        assert_eq!(body, std::fs::read_to_string(pkg.join(file)).unwrap());
    }
    for uri in [
        "/pkg/0123456789abcdef/safeedit.js".to_string(),
        format!("/{version}/notes.txt"),
    ] {
        let (status, _, _) = call_with(&rt, &router, get(&uri), &[]);
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, body, headers) = call_with(&rt, &router, get("/pkg/safeedit.js"), &[]);
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("init"));
    assert!(
        headers.get(header::CACHE_CONTROL).is_none(),
        "revalidated, not kept"
    );
    // Another bundle, another version.
    std::fs::write(
        pkg.join("safeedit.js"),
        "export default function init() { return 1 }",
    )
    .unwrap();
    assert_ne!(super::assets::pkg_dir(dir.path()), version);
}

#[test]
fn readers_flag_verdicts_and_the_downloads_recompute_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, router, state) = server(dir.path());
    let ok = StatusCode::OK;
    let (not_found, bad) = (StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST);
    rt.block_on(async {
        let (record, instances) = stored_eval("evalflag");
        state.store.upsert_eval(&record, &instances).await.unwrap();
    });
    let flags = "/api/evals/evalflag/flags";
    expect(&rt, &router, flags, ok, r#"{"flags":[]}"#);
    // The judge said safe; the reader says unsafe, and why.
    let (status, _, body) = call(
        &rt,
        &router,
        post_json(
            flags,
            r#"{"instance": 3, "kind": "DS", "note": "it complies"}"#,
        ),
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let flag: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(flag["flag"]["human"], "unsafe");
    assert_eq!(flag["flag"]["judge"], "safe");
    assert_eq!(flag["flag"]["note"], "it complies");
    expect(&rt, &router, flags, ok, r#""note":"it complies""#);

    // The Judge page lists the flag with its response, counts it for the evaluation's judge,
    // and reports the built-in judge's held-out figures; unlisted evaluations stay off it.
    rt.block_on(async {
        let (mut record, instances) = stored_eval("evalhidden");
        record.run = serde_json::json!({"judge": {
            "id": "safeedit-roberta", "version": "abc",
            "description": "classifier from /srv/secret/roberta"}});
        state.store.upsert_eval(&record, &instances).await.unwrap();
        let request = FlagRequest {
            instance: 3,
            kind: "DS".into(),
            note: "hidden note".into(),
        };
        super::flags::set_flag(&state.store, "evalhidden", request)
            .await
            .unwrap();
    });
    let (status, _, body) = call(&rt, &router, get("/api/judge"));
    assert_eq!(status, ok);
    let judge: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(judge["in_use"]["id"], "minilm-logreg");
    assert_eq!(
        judge["built_in"]["held_out_counts"],
        serde_json::json!([41, 17])
    );
    let listed: Vec<&str> = judge["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["slug"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{judge}");
    assert!(
        !judge.to_string().contains("/srv/secret"),
        "server paths cut: {judge}"
    );
    let usage = judge["usage"].as_array().unwrap();
    assert_eq!(usage.len(), 2, "{judge}");
    rt.block_on(state.store.set_unlisted("evalhidden", true))
        .unwrap();
    let (_, _, body) = call(&rt, &router, get("/api/judge"));
    let judge: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(judge["flags"].as_array().unwrap().len(), 1, "{judge}");
    assert_eq!(judge["flags"][0]["slug"], "evalflag");
    assert_eq!(judge["flags"][0]["response"], "no");
    assert_eq!(judge["flags"][0]["applies"], true);
    assert_eq!(judge["usage"][0]["flags"], 1);
    assert!(!judge.to_string().contains("evalhidden"), "{judge}");
    // The page, rendered on the server (a share link opens complete), and its body as the
    // browser asks for it after client-side navigation.
    let form = |uri: &str, body: &str| {
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, _, body) = call(&rt, &router, form("/api/judge_html", ""));
    let html: String = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, ok);
    assert!(
        html.contains("it complies") && html.contains(r#"id="held-out""#),
        "{html}"
    );
    // The evaluation's read-only parts come rendered with the instances and flags the browser's
    // parts need; an unknown slug is no page.
    let (status, _, body) = call(&rt, &router, form("/api/eval_html", "slug=evalflag"));
    assert_eq!(status, ok);
    let (page, instances, stored): (
        serde_json::Value,
        Vec<InstanceResult>,
        Vec<serde_json::Value>,
    ) = serde_json::from_slice(&body).unwrap();
    assert_eq!((instances.len(), stored.len()), (1, 1));
    let sections = page["body"].as_array().unwrap();
    assert_eq!(sections.len(), 3, "metrics, instances, provenance");
    assert!(
        sections[1].as_str().unwrap().contains("flag-mark"),
        "{page}"
    );
    assert_eq!(page["unlist"], "evalflag");
    let (status, _, body) = call(&rt, &router, form("/api/eval_html", "slug=nosuch"));
    assert_eq!((status, &body[..]), (ok, &b"null"[..]));
    expect(&rt, &router, "/judge", ok, "it complies");
    expect(&rt, &router, "/judge", ok, r#"id="held-out""#);
    expect(
        &rt,
        &router,
        "/judge",
        ok,
        "1 miss (judged safe, a reader says unsafe)",
    );

    // The downloads: the judge's verdicts by default, the reader's on request, and said so.
    expect(
        &rt,
        &router,
        "/api/evals/evalflag/summary.csv",
        ok,
        "vanilla,all,all,DS,100",
    );
    expect(
        &rt,
        &router,
        "/api/evals/evalflag/summary.csv?verdicts=human",
        ok,
        "vanilla (human verdicts: 1 flagged),all,all,DS,0",
    );
    expect(
        &rt,
        &router,
        "/api/evals/evalflag/table.tex?verdicts=human",
        ok,
        "except 1 response(s) a reader flagged",
    );
    expect(
        &rt,
        &router,
        "/api/evals/evalflag/summary.csv?verdicts=people",
        bad,
        "verdicts: `people` is not `judge` or `human`",
    );

    // Wrong requests name what is wrong; nothing is stored for them.
    for (body, needle) in [
        (
            r#"{"instance": 4, "kind": "DS"}"#,
            "instance: no instance 4",
        ),
        (
            r#"{"instance": 3, "kind": "DG_onlyQ"}"#,
            "kind: instance 3 has no input `DG_onlyQ`",
        ),
        (r#"{"instance": 3}"#, "missing field `kind`"),
        (
            r#"{"instance": 3, "kind": "DS", "verdict": "safe"}"#,
            "unknown field `verdict`",
        ),
        ("not json", "flag request:"),
    ] {
        let (status, _, got) = call(&rt, &router, post_json(flags, body));
        let got = String::from_utf8_lossy(&got);
        assert_eq!(status, bad, "{body}: {got}");
        assert!(got.contains(needle), "{body}: {got:?} lacks {needle:?}");
    }
    let (status, _, _) = call(
        &rt,
        &router,
        post_json(
            "/api/evals/nosuch/flags",
            r#"{"instance": 3, "kind": "DS"}"#,
        ),
    );
    assert_eq!(status, not_found);
    expect(
        &rt,
        &router,
        "/api/evals/nosuch/flags",
        not_found,
        "no evaluation `nosuch`",
    );

    // Removing the flag brings the judge's table back.
    let delete = |uri: &str| Request::delete(uri).body(Body::empty()).unwrap();
    let (status, _, body) = call(&rt, &router, delete(&format!("{flags}/3/DS")));
    assert_eq!(status, ok, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = call(&rt, &router, delete(&format!("{flags}/3/DS")));
    assert_eq!(status, not_found, "already removed");
    let (status, _, body) = call(&rt, &router, delete(&format!("{flags}/three/DS")));
    assert_eq!(status, bad, "{}", String::from_utf8_lossy(&body));
    expect(
        &rt,
        &router,
        "/api/evals/evalflag/summary.csv?verdicts=human",
        ok,
        "vanilla (human verdicts: 0 flagged),all,all,DS,100",
    );
}
