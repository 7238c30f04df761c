//! A throwaway Postgres server for tests: `initdb` into a temporary folder, started with
//! `pg_ctl` on a Unix socket only (no TCP port), stopped and removed when dropped. As root (CI)
//! the server runs as the `postgres` user, since Postgres refuses to run as root. The binaries
//! are found in `SAFEEDIT_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running throwaway server.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    root: PathBuf,
    bin: PathBuf,
    run_as: Option<&'static str>,
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
        let server = Self {
            root,
            bin,
            run_as: is_root.then_some("postgres"),
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
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c max_connections=100",
            server.root.display()
        );
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
        self.tool(
            "createdb",
            &[
                "-h".as_ref(),
                self.root.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                name.as_ref(),
            ],
        )?;
        Ok(self.url(name))
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost/{name}?host={}",
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
