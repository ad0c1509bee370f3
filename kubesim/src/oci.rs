//! Running one container of a local image ([`crate::images`]) under runc: an overlay of the image's root
//! filesystem, an OCI runtime bundle (`config.json`) with the container's command, environment, mounts and limits,
//! and `runc run` as a child whose exit status is the container's. This is what the container kubelet (issue:
//! kubesim part 4) will run pods' containers with; today `kubesim images run` uses it.
//!
//! The host facts it relies on are in `../shared/containers.md`: runc works where crun does not (hybrid
//! cgroups), resource limits may not exceed the host's own hard limits, and the first process must not be `su`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::images::ImageConfig;

/// A bind mount into the container.
#[derive(Debug, Clone)]
pub struct Mount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// The runc container id (and the bundle's directory name).
    pub id: String,
    /// The image's directory: `rootfs/` and `image.json`.
    pub image_dir: PathBuf,
    /// Where the bundle, the writable layer and the log go.
    pub state_dir: PathBuf,
    /// Replaces the image's entrypoint (a pod's `command`).
    pub command: Option<Vec<String>>,
    /// Replaces the image's default command (a pod's `args`).
    pub args: Option<Vec<String>>,
    /// Added to (and overriding) the image's environment.
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// A network namespace to join (a pod's); `None` shares the host's.
    pub netns: Option<PathBuf>,
    pub hostname: String,
    pub memory_limit_bytes: Option<i64>,
    pub cpu_limit_millis: Option<i64>,
    pub pids_limit: Option<i64>,
    /// The process's user, group and supplementary groups (a pod's `runAsUser`, `runAsGroup`, `fsGroup` and
    /// `supplementalGroups`); root when `None`.
    pub user: Option<User>,
    /// The working directory (a container's `workingDir`); `/` when `None`.
    pub cwd: Option<String>,
    /// Where the output goes: appended as it comes to `<state_dir>/<id>.log` when `None`; otherwise each line
    /// is written to this file prefixed with its RFC 3339 time and stream, as a kubelet's CRI log is.
    pub stamped_log: Option<PathBuf>,
}

/// Who the container's first process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A started container.
pub struct Running {
    pub id: String,
    pub log: PathBuf,
    bundle: PathBuf,
    child: tokio::process::Child,
    /// The tasks copying stamped output, awaited on exit so that the log is complete.
    copiers: Vec<tokio::task::JoinHandle<()>>,
}

/// The capabilities a container gets by default (the set container runtimes grant unprivileged containers).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Runs a host command; its stdout, or an error naming it with its stderr.
pub(crate) async fn command(program: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The host's hard limit on open files: a container may not ask for more (`setrlimit` fails without
/// CAP_SYS_RESOURCE).
pub fn host_nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// The home directory of `uid` in a passwd file, `/` when it has none.
fn home_of(passwd: &Path, uid: u32) -> String {
    std::fs::read_to_string(passwd)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() })
}

/// The OCI runtime configuration of `spec` over `image`.
pub fn runtime_config(spec: &RunSpec, image: &ImageConfig) -> Value {
    let mut argv: Vec<String> = spec
        .command
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    match (&spec.command, &spec.args) {
        (_, Some(args)) => argv.extend(args.iter().cloned()),
        (None, None) => argv.extend(image.cmd.iter().cloned()),
        (Some(_), None) => {}
    }
    let mut env = image.env.clone();
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    env.entry("HOSTNAME".into())
        .or_insert_with(|| spec.hostname.clone());
    // As containerd does: HOME from the user's passwd entry in the image (root's `/root`), else `/`.
    let uid = spec.user.as_ref().map_or(0, |u| u.uid);
    env.entry("HOME".into())
        .or_insert_with(|| home_of(&spec.image_dir.join("rootfs/etc/passwd"), uid));
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let nofile = host_nofile_limit().min(1_048_576);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"]}),
    ];
    for m in &spec.mounts {
        let mut options = vec!["rbind"];
        if m.readonly {
            options.push("ro");
        }
        mounts.push(json!({"destination": m.destination, "type": "bind",
            "source": m.source, "options": options}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if let Some(ns) = &spec.netns {
        namespaces.push(json!({"type": "network", "path": ns}));
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = spec.memory_limit_bytes {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(c) = spec.cpu_limit_millis {
        resources["cpu"] = json!({"quota": c * 100, "period": 100_000});
    }
    if let Some(p) = spec.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let user = match &spec.user {
        None => json!({"uid": 0, "gid": 0}),
        Some(u) if u.additional_gids.is_empty() => json!({"uid": u.uid, "gid": u.gid}),
        Some(u) => json!({"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids}),
    };
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": user,
            "args": argv,
            "env": env,
            "cwd": spec.cwd.clone().filter(|c| c.starts_with('/')).unwrap_or_else(|| "/".into()),
            "capabilities": {
                "bounding": CAPABILITIES, "effective": CAPABILITIES, "permitted": CAPABILITIES,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

/// Starts a container: mounts an overlay of the image, writes the bundle, and runs `runc run` with the
/// container's output appended to `<state_dir>/<id>.log`.
pub async fn start(spec: &RunSpec) -> Result<Running, String> {
    let image: ImageConfig = serde_json::from_slice(
        &std::fs::read(spec.image_dir.join("image.json"))
            .map_err(|e| format!("{}: {e}", spec.image_dir.display()))?,
    )
    .map_err(|e| format!("{}: {e}", spec.image_dir.display()))?;
    let bundle = spec.state_dir.join(&spec.id);
    // What a crashed run left behind goes first.
    cleanup(&spec.id, &bundle).await;
    for d in ["upper", "work", "rootfs"] {
        std::fs::create_dir_all(bundle.join(d))
            .map_err(|e| format!("{}: {e}", bundle.display()))?;
    }
    let lower = spec.image_dir.join("rootfs");
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        bundle.join("upper").display(),
        bundle.join("work").display()
    );
    command(
        "mount",
        &[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &options,
            &bundle.join("rootfs").to_string_lossy(),
        ],
    )
    .await?;
    // As a kubelet does: /etc/hosts with localhost and the container's own name, and the resolver of the host.
    let mut spec = spec.clone();
    let managed = |spec: &RunSpec, dest: &str| spec.mounts.iter().any(|m| m.destination == dest);
    if !managed(&spec, "/etc/hosts") {
        let hosts = bundle.join("hosts");
        std::fs::write(
            &hosts,
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
                spec.hostname
            ),
        )
        .map_err(|e| e.to_string())?;
        spec.mounts.push(Mount {
            source: hosts,
            destination: "/etc/hosts".into(),
            readonly: false,
        });
    }
    if !managed(&spec, "/etc/resolv.conf") {
        let resolv = bundle.join("resolv.conf");
        let _ = std::fs::copy("/etc/resolv.conf", &resolv);
        if resolv.exists() {
            spec.mounts.push(Mount {
                source: resolv,
                destination: "/etc/resolv.conf".into(),
                readonly: false,
            });
        }
    }
    for m in &spec.mounts {
        // Bind targets must exist in the root filesystem.
        let target = bundle
            .join("rootfs")
            .join(m.destination.trim_start_matches('/'));
        if m.source.is_dir() {
            let _ = std::fs::create_dir_all(&target);
        } else {
            if let Some(p) = target.parent() {
                let _ = std::fs::create_dir_all(p);
            }
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&target);
        }
    }
    let config = runtime_config(&spec, &image);
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new("runc");
    cmd.args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&spec.id)
        .stdin(Stdio::null())
        .kill_on_drop(false);
    let log = match &spec.stamped_log {
        None => {
            let log = spec.state_dir.join(format!("{}.log", spec.id));
            let out = append(&log)?;
            let err = out.try_clone().map_err(|e| e.to_string())?;
            cmd.stdout(out).stderr(err);
            log
        }
        Some(log) => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            log.clone()
        }
    };
    let mut child = cmd.spawn().map_err(|e| format!("cannot run runc: {e}"))?;
    let mut copiers = vec![];
    if spec.stamped_log.is_some() {
        let sink = Arc::new(tokio::sync::Mutex::new(tokio::fs::File::from_std(append(
            &log,
        )?)));
        if let Some(out) = child.stdout.take() {
            copiers.push(tokio::spawn(copy_stamped(out, "stdout", sink.clone())));
        }
        if let Some(err) = child.stderr.take() {
            copiers.push(tokio::spawn(copy_stamped(err, "stderr", sink)));
        }
    }
    Ok(Running {
        id: spec.id.clone(),
        log,
        bundle,
        child,
        copiers,
    })
}

fn append(path: &Path) -> Result<std::fs::File, String> {
    if let Some(p) = path.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Copies one output stream line by line as `<RFC 3339 time> <stream> F <line>` (the CRI log format; a line
/// longer than 16 KiB is split into partial `P` records).
async fn copy_stamped(
    from: impl tokio::io::AsyncRead + Unpin,
    stream: &'static str,
    sink: Arc<tokio::sync::Mutex<tokio::fs::File>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    const LINE_CAP: usize = 16 * 1024;
    let mut reader = tokio::io::BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match (&mut reader)
            .take(LINE_CAP as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let full = buf[n - 1] == b'\n';
        if full {
            buf.pop();
        }
        let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.9fZ");
        let mut record = format!("{ts} {stream} {} ", if full { 'F' } else { 'P' }).into_bytes();
        record.extend_from_slice(&buf);
        record.push(b'\n');
        let mut f = sink.lock().await;
        if f.write_all(&record).await.is_err() {
            return;
        }
        let _ = f.flush().await;
    }
}

/// Sends `signal` (`TERM`, `KILL`, …) to the first process of container `id`.
pub async fn signal(id: &str, signal: &str) -> Result<(), String> {
    command("runc", &["kill", id, signal]).await.map(|_| ())
}

/// Runs `argv` inside the running container `id` (`runc exec`) and returns its exit code and output, or an
/// error when it could not run or did not finish within `timeout`.
pub async fn exec(id: &str, argv: &[String], timeout: Duration) -> Result<(i32, String), String> {
    let mut cmd = tokio::process::Command::new("runc");
    cmd.arg("exec")
        .arg(id)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| format!("command timed out after {}s", timeout.as_secs_f64()))?
        .map_err(|e| format!("cannot run runc exec: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text))
}

impl Running {
    /// Waits for the container to exit and returns its exit code (128 + signal when killed).
    pub async fn wait(&mut self) -> i32 {
        let code = match self.child.wait().await {
            Ok(s) => s.code().unwrap_or(137),
            Err(_) => 137,
        };
        for c in self.copiers.drain(..) {
            let _ = c.await;
        }
        code
    }

    /// Stops the container as a kubelet does: SIGTERM, then SIGKILL after `grace`; then removes it, its writable
    /// layer and its bundle. Returns the exit code.
    pub async fn stop(mut self, grace: Duration) -> i32 {
        let _ = command("runc", &["kill", &self.id, "TERM"]).await;
        let code = match tokio::time::timeout(grace, self.wait()).await {
            Ok(code) => code,
            Err(_) => {
                let _ = command("runc", &["kill", &self.id, "KILL"]).await;
                self.wait().await
            }
        };
        cleanup(&self.id, &self.bundle).await;
        code
    }

    /// Removes an exited container and its bundle.
    pub async fn remove(self) {
        cleanup(&self.id, &self.bundle).await;
    }
}

/// Deletes the runc container `id` (if any), unmounts its root filesystem and removes its bundle.
pub async fn cleanup(id: &str, bundle: &Path) {
    let _ = command("runc", &["delete", "--force", id]).await;
    let rootfs = bundle.join("rootfs");
    if is_mounted(&rootfs) {
        let _ = command("umount", &["-l", &rootfs.to_string_lossy()]).await;
    }
    let _ = std::fs::remove_dir_all(bundle);
}

/// The mount points of this process's mount namespace (field 5 of `/proc/self/mountinfo`).
pub(crate) fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Whether `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let p = path.to_string_lossy();
    mount_points().iter().any(|m| *m == p)
}

/// One fact about the host that real containers need.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What real containers need of the host: root, runc, overlayfs, the cgroup mode, `ip`/`iptables` for pod
/// networks, and the open-files limit containers are held to.
pub async fn host_check() -> Vec<Check> {
    let mut out = vec![];
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    out.push(Check {
        name: "root",
        ok: uid == "0",
        detail: if uid == "0" {
            "running as root".into()
        } else {
            format!("uid {uid}: containers need root (namespaces, mounts, cgroups)")
        },
    });
    let runc = command("runc", &["--version"]).await;
    out.push(Check {
        name: "runc",
        ok: runc.is_ok(),
        detail: match runc {
            Ok(v) => v.lines().next().unwrap_or("").to_string(),
            Err(e) => format!("{e} (install it: apt-get install runc)"),
        },
    });
    let overlay = std::fs::read_to_string("/proc/filesystems")
        .map(|t| t.contains("overlay"))
        .unwrap_or(false);
    out.push(Check {
        name: "overlayfs",
        ok: overlay,
        detail: if overlay {
            "overlay is a known filesystem".into()
        } else {
            "the kernel lists no overlay filesystem (modprobe overlay)".into()
        },
    });
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && !Path::new("/sys/fs/cgroup/memory").exists();
    out.push(Check {
        name: "cgroups",
        ok: Path::new("/sys/fs/cgroup").exists(),
        detail: if unified {
            "cgroup v2 (unified)".into()
        } else {
            "cgroup v1 or hybrid (runc handles it; crun would not)".into()
        },
    });
    for (tool, flag) in [("ip", "-V"), ("iptables", "--version")] {
        let found = command(tool, &[flag]).await;
        out.push(Check {
            name: if tool == "ip" { "ip" } else { "iptables" },
            ok: found.is_ok(),
            detail: match found {
                Ok(v) => v.lines().next().unwrap_or("").trim().to_string(),
                Err(e) => format!("{e} (pod networks need it)"),
            },
        });
    }
    out.push(Check {
        name: "nofile",
        ok: true,
        detail: format!(
            "containers get RLIMIT_NOFILE {} (the host's hard limit, at most 1048576)",
            host_nofile_limit().min(1_048_576)
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn image() -> ImageConfig {
        ImageConfig {
            engine: "postgresql".into(),
            entrypoint: vec!["/usr/local/bin/docker-entrypoint.sh".into()],
            cmd: vec!["postgres".into()],
            env: BTreeMap::from([("PGDATA".to_string(), "/var/lib/postgresql/data".to_string())]),
            key: "k".into(),
        }
    }

    #[test]
    fn command_and_args_replace_entrypoint_and_cmd_as_kubernetes_does() {
        let argv = |command: Option<Vec<&str>>, args: Option<Vec<&str>>| {
            let spec = RunSpec {
                command: command.map(|c| c.into_iter().map(String::from).collect()),
                args: args.map(|c| c.into_iter().map(String::from).collect()),
                ..Default::default()
            };
            runtime_config(&spec, &image())["process"]["args"].clone()
        };
        assert_eq!(
            argv(None, None),
            json!(["/usr/local/bin/docker-entrypoint.sh", "postgres"])
        );
        assert_eq!(
            argv(None, Some(vec!["-c", "max_connections=50"])),
            json!([
                "/usr/local/bin/docker-entrypoint.sh",
                "-c",
                "max_connections=50"
            ])
        );
        assert_eq!(argv(Some(vec!["sleep", "1"]), None), json!(["sleep", "1"]));
        assert_eq!(
            argv(Some(vec!["sh", "-c"]), Some(vec!["echo hi"])),
            json!(["sh", "-c", "echo hi"])
        );
    }

    #[test]
    fn environment_limits_mounts_and_network_reach_the_bundle() {
        let spec = RunSpec {
            env: vec![("PGDATA".into(), "/data".into()), ("A".into(), "b".into())],
            mounts: vec![Mount {
                source: "/srv/claim".into(),
                destination: "/data".into(),
                readonly: true,
            }],
            netns: Some("/var/run/netns/pod-1".into()),
            hostname: "db-0".into(),
            memory_limit_bytes: Some(64 << 20),
            cpu_limit_millis: Some(500),
            pids_limit: Some(256),
            ..Default::default()
        };
        let c = runtime_config(&spec, &image());
        let env: Vec<&str> = c["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            env.contains(&"PGDATA=/data") && env.contains(&"A=b") && env.contains(&"HOSTNAME=db-0")
        );
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(
            c["linux"]["resources"]["cpu"],
            json!({"quota": 50_000, "period": 100_000})
        );
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 256);
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/var/run/netns/pod-1"})));
        let bind = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert_eq!(bind["options"], json!(["rbind", "ro"]));
        let nofile = c["process"]["rlimits"][0]["hard"].as_u64().unwrap();
        assert!(
            nofile <= host_nofile_limit(),
            "never above the host's own limit"
        );
    }
}
