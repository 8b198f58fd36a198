//! One user's world for the shared daemon's tests: its folders, its config file, its
//! relays and CLI runs, and the daemons started in it (killed when it is dropped).

use std::path::PathBuf;
use std::process::Stdio;

use super::*;

/// One user's world: the runtime folder (socket, lock), the data folder (sessions) and a
/// config file. Dropping it kills every daemon started in it.
pub struct World {
    pub runtime: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub config: PathBuf,
}

impl World {
    pub fn new(config: &str) -> World {
        let runtime = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let config_path = data.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        World {
            // The socket lives one level down, so the folder's mode is cfgate's own.
            runtime,
            data,
            config: config_path,
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.runtime.path().join("run")
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("cfgate.sock")
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("CLOUDFLARE_API_TOKEN".to_string(), TOKEN.to_string())];
        env.extend(self.env_without_token());
        env
    }

    /// The world's folders and config file, and no Cloudflare variable.
    pub fn env_without_token(&self) -> Vec<(String, String)> {
        vec![
            (
                "CFGATE_RUNTIME_DIR".into(),
                self.run_dir().display().to_string(),
            ),
            (
                "CFGATE_DATA_DIR".into(),
                self.data.path().display().to_string(),
            ),
            ("CFGATE_CONFIG".into(), self.config.display().to_string()),
        ]
    }

    pub async fn spawn_client(&self) -> Daemon {
        self.spawn_client_with(&self.env()).await
    }

    /// A `serve --shared` relay with this environment (see [`World::env_without_token`]).
    pub async fn spawn_client_with(&self, env: &[(String, String)]) -> Daemon {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Daemon::spawn_args(&env, &["serve", "--shared"]).await
    }

    pub async fn client(&self, fake: &FakeGateway) -> Daemon {
        let mut c = self.spawn_client().await;
        c.initialize(json!({ "base_url": fake.compat_base("acc", "gw") }))
            .await;
        c
    }

    /// Live `cfgate daemon` processes of this world (found by their environment).
    pub fn daemons(&self) -> Vec<u32> {
        let wanted = format!("CFGATE_RUNTIME_DIR={}", self.run_dir().display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            if args.get(1) != Some(&&b"daemon"[..]) {
                continue;
            }
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
                let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // A zombie has exited; it is only waiting to be reaped.
                if !state.contains(") Z ") {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    pub fn pid_file(&self) -> Option<u32> {
        std::fs::read_to_string(self.run_dir().join("daemon.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for pid in self.daemons() {
            kill9(pid);
        }
    }
}

pub fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

/// True once every thread of `pid` is gone, and with them its open files (so its
/// listening socket). A killed multi-threaded process shows as a zombie as soon as its
/// first thread is gone, while the others still hold its files.
pub fn exited(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    threads.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .map_or(true, |stat| stat.contains(") Z ") || stat.contains(") X "))
    })
}

/// Waits (polling, with the harness's generous deadline) until `done` holds.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl World {
    /// Runs `cfgate <args>` as a user would, in this world; returns (success, stdout).
    pub async fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = self.cli_with(&self.env(), args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        (out.status.success(), stdout)
    }

    /// Runs `cfgate <args>` with this environment; its whole output.
    pub async fn cli_with(&self, env: &[(String, String)], args: &[&str]) -> std::process::Output {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let home = tempfile::tempdir().unwrap();
        let out = command(home.path(), &env)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(WAIT, out)
            .await
            .expect("cfgate finished")
            .unwrap()
    }
}
