//! Jobs across processes, as a lab deploys them (docs/deploy.md): `safeedit serve --workers 0`
//! queues jobs in a real Postgres 15 server (started here in a temporary folder, reached over
//! TLS with its certificate checked), two
//! `safeedit worker` processes run them. A worker killed with SIGKILL while it holds a job loses
//! it to the other worker, which finishes it with the summary of an uninterrupted run; a cancel
//! sent to the server stops a job running in a worker process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use safeedit_core::run::JobEvent;
use safeedit_store::Store;
use safeedit_store::throwaway::ThrowawayPostgres;
use serde_json::{Value, json};

/// The processes of the test, killed when it ends (passing or not).
struct Processes(Vec<(String, Child)>);

impl Processes {
    fn spawn(&mut self, name: &str, args: &[&str], log_dir: &Path) -> u32 {
        let log = |suffix: &str| {
            std::fs::File::create(log_dir.join(format!("{name}.{suffix}"))).expect("a log file")
        };
        let child = Command::new(env!("CARGO_BIN_EXE_safeedit"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log("out")))
            .stderr(Stdio::from(log("err")))
            .spawn()
            .expect("the binary starts");
        let pid = child.id();
        self.0.push((name.to_string(), child));
        pid
    }

    /// Whether the process `pid` of the test is still running.
    fn alive(&mut self, pid: u32) -> bool {
        self.0
            .iter_mut()
            .find(|(_, c)| c.id() == pid)
            .is_some_and(|(_, c)| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request to the server; the status and the JSON body.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the server listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    // Chunked bodies: the JSON is the first chunk.
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        rest.split_once("\r\n").map_or("", |(_, chunk)| chunk)
    } else {
        rest
    };
    let text = text.trim().trim_end_matches("\r\n0").trim();
    let json = serde_json::from_str(text).unwrap_or(Value::String(text.to_string()));
    (status, json)
}

/// Polls `GET /api/jobs/{id}` until `done` says so; the last answer.
fn wait_for(
    port: u16,
    id: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let (status, info) = http(port, "GET", &format!("/api/jobs/{id}"), None);
        assert_eq!(status, 200, "{info}");
        if done(&info) {
            return info;
        }
        assert!(
            started.elapsed() < limit,
            "job {id}: {what} did not happen within {limit:?}; last: {info}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn eval_job(limit: usize) -> Value {
    json!({"kind": "eval", "method": "vanilla", "split": "test", "limit": limit, "max_new_tokens": 8})
}

/// The workers that started a job, in the order of its events.
fn started_by(events: &[JobEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Started { worker } => Some(worker.as_str()),
            _ => None,
        })
        .collect()
}

/// The pid in a worker's name (`host:pid`).
fn pid_of(info: &Value) -> u32 {
    let worker = info["worker"]
        .as_str()
        .expect("a running job names its worker");
    worker
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("worker `{worker}` is not host:pid"))
}

#[test]
fn worker_processes_share_a_postgres_queue_survive_a_kill_and_obey_cancels() {
    // As a lab's database on another machine: TCP, TLS only, the certificate checked.
    let postgres = ThrowawayPostgres::start_tls().expect("a throwaway Postgres server starts");
    postgres.database("lab").unwrap();
    let url = postgres.tls_url("lab", "verify-full").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // The JSON API needs no pages; the server only checks that a bundle is there.
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    for file in ["safeedit.js", "safeedit_bg.wasm", "safeedit.css"] {
        std::fs::write(site.join("pkg").join(file), "").unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut processes = Processes(Vec::new());
    let clock = Instant::now();
    let milestone = |what: &str| eprintln!("[{:6.1} s] {what}", clock.elapsed().as_secs_f64());
    let engine = [
        "--model",
        "tiny",
        "--database-url",
        &url,
        "--data-dir",
        data,
    ];
    let mut serve = vec!["serve", "--workers", "0", "--addr", &addr, "--site-root"];
    serve.push(site.to_str().unwrap());
    serve.extend(engine);
    processes.spawn("serve", &serve, dir.path());
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the server did not start: {}",
            std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    milestone("the server answers");
    // With no worker, a job waits.
    let submit = |limit: usize| {
        let (status, answer) = http(port, "POST", "/api/jobs", Some(&eval_job(limit)));
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().unwrap().to_string()
    };
    let first = submit(6);
    let second = submit(6);
    std::thread::sleep(Duration::from_secs(2));
    let (_, info) = http(port, "GET", &format!("/api/jobs/{first}"), None);
    assert_eq!(info["state"], "queued", "{info}");

    let mut worker = vec!["worker"];
    worker.extend(engine);
    let a = processes.spawn("worker-a", &worker, dir.path());
    let b = processes.spawn("worker-b", &worker, dir.path());

    // The first job runs in a worker process: its name is host:pid, its progress streams back.
    let running = wait_for(port, &first, Duration::from_secs(120), "progress", |info| {
        info["state"] == "running" && info["progress"]["done"].as_u64().unwrap_or(0) >= 2
    });
    let victim = pid_of(&running);
    milestone("the first job runs with 2 instances done");
    assert!(victim == a || victim == b, "{running}");
    let survivor = if victim == a { b } else { a };
    // SIGKILL: no chance to hand the job back.
    let killed = Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // The other worker finishes its own job, takes the orphaned one after the missed
    // heartbeats (30 s) and resumes it from the instances done.
    let limit = Duration::from_secs(240);
    let done_first = wait_for(port, &first, limit, "the end", |info| {
        info["state"] == "done"
    });
    milestone("the killed worker's job is done");
    assert_eq!(pid_of(&done_first), survivor, "{done_first}");
    let done_second = wait_for(port, &second, limit, "the end", |info| {
        info["state"] == "done"
    });
    milestone("both jobs are done");
    assert!(!processes.alive(victim));

    // The interrupted job's evaluation equals the uninterrupted one's.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(Store::open(Some(&url), dir.path())).unwrap();
    let evaluation = |info: &Value| {
        let page = info["result"].as_str().expect("a result page");
        let slug = page.strip_prefix("/evals/").expect(page);
        let eval = rt.block_on(store.eval(slug)).unwrap().expect("stored");
        let mut instances = rt.block_on(store.eval_instances(slug)).unwrap();
        for instance in &mut instances {
            instance.seconds = 0.0;
            instance.timings = None;
        }
        (eval.instances, eval.metrics, instances)
    };
    let (resumed, uninterrupted) = (evaluation(&done_first), evaluation(&done_second));
    assert_eq!(resumed.0, 6);
    assert_eq!(
        resumed, uninterrupted,
        "a resumed job must give the same evaluation"
    );
    // Its events, as the database keeps them for every process: started by the killed worker,
    // started again by the other, which counted only the instances left.
    let events = rt.block_on(store.job_events(&first, 0)).unwrap();
    let starts = started_by(&events);
    assert_eq!(starts.len(), 2, "{events:?}");
    assert!(starts[0].ends_with(&format!(":{victim}")), "{starts:?}");
    assert_eq!(Some(starts[1]), done_first["worker"].as_str());
    let second_start = events
        .iter()
        .rposition(|e| matches!(e, JobEvent::Started { .. }))
        .unwrap();
    let totals: Vec<usize> = events[second_start..]
        .iter()
        .filter_map(|e| match e {
            JobEvent::Progress(p) if p.unit == "instances" => Some(p.total),
            _ => None,
        })
        .collect();
    assert!(
        !totals.is_empty() && totals.iter().all(|&t| t <= 4),
        "the second start resumes after the 2+ instances done: {totals:?}"
    );

    // A cancel sent to the server stops a job running in the worker process.
    let third = submit(40);
    wait_for(port, &third, Duration::from_secs(60), "a start", |info| {
        info["state"] == "running" && info["progress"]["done"].as_u64().unwrap_or(0) >= 1
    });
    let (status, answer) = http(port, "POST", &format!("/api/jobs/{third}/cancel"), None);
    milestone("cancel sent");
    assert_eq!(status, 200, "{answer}");
    let cancelled = wait_for(
        port,
        &third,
        Duration::from_secs(30),
        "the cancel",
        |info| info["state"] == "cancelled",
    );
    milestone("cancelled");
    assert_eq!(pid_of(&cancelled), survivor, "{cancelled}");
    let job = rt.block_on(store.job(&third)).unwrap().unwrap();
    assert_eq!(job.status, safeedit_core::run::JobStatus::Cancelled);
    assert!(
        processes.alive(survivor),
        "the worker goes on after a cancel"
    );

    // A worker stopped with SIGTERM hands its job back at once: a new worker takes it well
    // before the 30 s a lost worker's job waits.
    let fourth = submit(4);
    wait_for(port, &fourth, Duration::from_secs(60), "a start", |info| {
        info["state"] == "running" && pid_of(info) == survivor
    });
    let stopped = Command::new("kill")
        .args(["-TERM", &survivor.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let started = Instant::now();
    while processes.alive(survivor) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "SIGTERM stops the worker"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    milestone("the worker stopped on SIGTERM");
    wait_for(
        port,
        &fourth,
        Duration::from_secs(10),
        "the hand-back",
        |info| info["state"] == "queued",
    );
    // In the task table: waiting for any worker, held by none.
    let (status, holder): (String, Option<String>) = rt.block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query_as("SELECT status, lock_by FROM apalis.jobs WHERE idempotency_key = $1")
            .bind(&fourth)
            .fetch_one(&pool)
            .await
            .unwrap()
    });
    assert_eq!((status.as_str(), holder), ("Pending", None));
    let successor = processes.spawn("worker-c", &worker, dir.path());
    let handed_over = Instant::now();
    wait_for(
        port,
        &fourth,
        Duration::from_secs(60),
        "the new start",
        |info| info["state"] == "running" && pid_of(info) == successor,
    );
    // At once: a lost worker's job would wait for its missed heartbeats (at least 20 s here).
    let took = handed_over.elapsed();
    assert!(took < Duration::from_secs(15), "taken after {took:?}");
    let done = wait_for(port, &fourth, Duration::from_secs(120), "the end", |info| {
        info["state"] == "done"
    });
    milestone("the new worker finished the handed-back job");
    assert_eq!(pid_of(&done), successor, "{done}");
    let events = rt.block_on(store.job_events(&fourth, 0)).unwrap();
    let workers = started_by(&events);
    assert_eq!(workers.len(), 2, "{events:?}");
    assert!(workers[0].ends_with(&format!(":{survivor}")), "{workers:?}");
    milestone(&format!(
        "taken by the new worker {:.1} s after it started",
        took.as_secs_f64()
    ));
}
