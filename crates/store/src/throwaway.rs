//! A throwaway Postgres server for tests: `initdb` into a temporary folder, started with
//! `pg_ctl` on a Unix socket only (no TCP port), stopped and removed when dropped. As root (CI)
//! the server runs as the `postgres` user, since Postgres refuses to run as root. The binaries
//! are found in `SAFEEDIT_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `PATH`.
//!
//! [`ThrowawayPostgres::start_tls`] starts one as a remote database is reached: on a TCP port of
//! 127.0.0.1 that accepts TLS connections only, with a certificate for `localhost` signed by a
//! certificate authority made for the test (openssl).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running throwaway server.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    root: PathBuf,
    bin: PathBuf,
    run_as: Option<&'static str>,
    /// The TCP port of a TLS server.
    port: Option<u16>,
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SAFEEDIT_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_default()
}

impl ThrowawayPostgres {
    /// Creates and starts a server, or says what failed (with the tool's output).
    pub fn start() -> Result<Self, String> {
        Self::start_with(false)
    }

    /// [`Self::start`], listening on a TCP port of 127.0.0.1 for TLS connections only (none
    /// without TLS, none on the Unix socket but the tools'); [`Self::tls_url`] names it.
    pub fn start_tls() -> Result<Self, String> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Self, String> {
        let bin = bin_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!("safeedit-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let port = if tls {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("finding a free port: {e}"))?
                .port();
            Some(port)
        } else {
            None
        };
        let mut server = Self {
            root,
            bin,
            run_as: is_root.then_some("postgres"),
            port: None,
        };
        if let Some(user) = server.run_as {
            server.run(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(&server.root),
                "chown",
            )?;
        }
        let data = server.root.join("data");
        server.tool(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let mut options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c max_connections=100",
            server.root.display()
        );
        if let Some(port) = port {
            server.certificates()?;
            // TLS on TCP only: the tools keep the socket.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .map_err(|e| format!("writing pg_hba.conf: {e}"))?;
            options = format!(
                "-k {} -c listen_addresses=127.0.0.1 -p {port} -c ssl=on \
                 -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off -c max_connections=100",
                server.root.display(),
                server.root.join("server.crt").display(),
                server.root.join("server.key").display(),
            );
            server.port = Some(port);
        }
        server.tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                server.root.join("server.log").as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        )?;
        Ok(server)
    }

    /// A certificate authority (`ca.crt`) and the server's certificate for `localhost` and
    /// 127.0.0.1 signed by it (`server.crt`, `server.key`, readable by the server's user only).
    fn certificates(&self) -> Result<(), String> {
        let root = &self.root;
        let openssl = |args: &[&str]| {
            self.run(
                Command::new("openssl").args(args).current_dir(root),
                "openssl",
            )
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=throwaway test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        std::fs::write(
            root.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .map_err(|e| format!("writing san.ext: {e}"))?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ])?;
        if let Some(user) = self.run_as {
            self.run(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .args(["server.key", "server.crt"])
                    .current_dir(root),
                "chown",
            )?;
        }
        self.run(
            Command::new("chmod")
                .args(["600", "server.key"])
                .current_dir(root),
            "chmod",
        )
    }

    /// The URL of database `name` over TLS (a server from [`Self::start_tls`]) with `sslmode`
    /// (`verify-full` checks the certificate against the test's authority and the host name).
    pub fn tls_url(&self, name: &str, sslmode: &str) -> Option<String> {
        Some(format!(
            "postgres://postgres@localhost:{}/{name}?sslmode={sslmode}&sslrootcert={}",
            self.port?,
            self.root.join("ca.crt").display()
        ))
    }

    /// Runs one of the server's tools (as the server's user).
    fn tool(&self, name: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let program = self.bin.join(name);
        let program = if program.is_file() {
            program
        } else {
            PathBuf::from(name)
        };
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command.args(args).current_dir(&self.root);
        self.run(&mut command, name)
    }

    fn run(&self, command: &mut Command, name: &str) -> Result<(), String> {
        match command.output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "{name} failed ({}): {}{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
            )),
            Err(e) => Err(format!(
                "{name} could not run ({e}): is Postgres installed (initdb, pg_ctl; set \
                 SAFEEDIT_PG_BIN to their folder)?"
            )),
        }
    }

    /// The folder holding the server's socket.
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// Creates database `name` and returns its URL.
    pub fn database(&self, name: &str) -> Result<String, String> {
        // The socket's name carries the port.
        let port = self.port.unwrap_or(5432).to_string();
        self.tool(
            "createdb",
            &[
                "-h".as_ref(),
                self.root.as_os_str(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                name.as_ref(),
            ],
        )?;
        Ok(self.url(name))
    }

    /// The URL of database `name` on this server (on its Unix socket).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{name}?host={}",
            self.port.unwrap_or(5432),
            self.root.display()
        )
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let data = self.root.join("data");
        let _ = self.tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
