//! Local container images of the engines Debian packages, for running pods on real binaries (issue: kubesim part
//! 4). `kubesim images build --out DIR [ENGINE…]` makes, per engine, a root filesystem from Debian bookworm
//! (`debootstrap --variant=minbase`, then `apt-get install --no-install-recommends` of the engine's packages) with
//! an entrypoint that honours the official image's documented contract, and a manifest that maps the image
//! references pods use (`postgres:15`, `docker.io/library/redis:7`, `mysql:8.0`, …) to them.
//!
//! Layout of `DIR`: `base/rootfs` (the shared minbase system, made once), `<engine>/rootfs` and
//! `<engine>/image.json` (entrypoint, default command, environment, and the key it was built from), and
//! `manifest.json`. An engine is rebuilt only when its key (suite, mirror, packages, entrypoint script) changes.
//!
//! The entrypoints are written here from the official images' documentation (environment variables, first-run
//! initialisation, dropping to the service user), not taken from those images. MySQL is MariaDB here (Debian has no
//! MySQL server; they are not the same server), and MongoDB and Kafka have no Debian package: pods of those images
//! stay simulated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The Debian release the images are built from.
pub const SUITE: &str = "bookworm";
/// The mirror `debootstrap` and `apt` use unless `--mirror` says otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// One engine kubesim can build.
pub struct Engine {
    pub name: &'static str,
    /// Debian packages installed on top of the minbase system.
    pub packages: &'static [&'static str],
    /// Image references (without registry) that map to this engine; `docker.io/library/` forms are added.
    pub references: &'static [&'static str],
    /// The default command, after the entrypoint.
    pub cmd: &'static [&'static str],
    /// Environment every container of the image starts with.
    pub env: &'static [(&'static str, &'static str)],
    /// `/usr/local/bin/docker-entrypoint.sh`.
    pub entrypoint: &'static str,
    /// Directories the packages' install scripts fill that must start empty (a data directory a first run
    /// initialises).
    pub emptied: &'static [&'static str],
    /// The service user, made before the packages are installed with the uid and gid the official image
    /// documents (999 for postgres, redis, mysql and rabbitmq; 11211 for memcached), so that a pod's
    /// `runAsUser`/`fsGroup` means the same user here: (name, home, uid). `None`: the official image runs as
    /// root (nats).
    pub user: Option<(&'static str, &'static str, u32)>,
}

/// `gosu USER[:GROUP] COMMAND…`, which the official images ship and scripts use to drop privileges: here a shim
/// over util-linux's `setpriv` (not a copy of gosu), exec'ing so that signals reach the command. Like gosu it sets
/// `HOME` to the user's home: libpq, for one, looks for client certificates under `~/.postgresql`, and a `HOME`
/// left at `/root` makes a replica's connection fail with "Permission denied".
const GOSU: &str = r#"#!/bin/sh
set -eu
if [ "$#" -lt 2 ]; then echo "usage: gosu user-spec command [args]" >&2; exit 1; fi
spec="$1"; shift
user="${spec%%:*}"
if [ "$user" != "$spec" ]; then group="${spec#*:}"; else group="$(id -gn "$user")"; fi
HOME="$(getent passwd "$user" | cut -d: -f6)"
export HOME="${HOME:-/}"
exec setpriv --reuid="$user" --regid="$group" --init-groups -- "$@"
"#;

/// The engines, by name.
pub const ENGINES: &[Engine] = &[
    Engine {
        name: "postgresql",
        packages: &["postgresql-15", "postgresql-client-15", "util-linux"],
        references: &[
            "postgres:15",
            "postgres:15.0",
            "postgres:15-bookworm",
            "postgresql:15",
        ],
        cmd: &["postgres"],
        env: &[
            (
                "PATH",
                "/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("PGDATA", "/var/lib/postgresql/data"),
            ("LANG", "C.UTF-8"),
        ],
        entrypoint: POSTGRES_ENTRYPOINT,
        emptied: &[],
        user: Some(("postgres", "/var/lib/postgresql", 999)),
    },
    Engine {
        name: "redis",
        packages: &["redis-server", "redis-tools", "util-linux"],
        references: &[
            "redis:7",
            "redis:7.0",
            "redis:7-bookworm",
            "redis:7.0-bookworm",
        ],
        cmd: &["redis-server"],
        env: &[(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )],
        entrypoint: REDIS_ENTRYPOINT,
        emptied: &["var/lib/redis"],
        user: Some(("redis", "/var/lib/redis", 999)),
    },
    Engine {
        name: "mariadb",
        packages: &["mariadb-server", "mariadb-client", "util-linux"],
        // MariaDB stands in for MySQL: the same client protocol and the documented variables, not the same server.
        references: &["mysql:8.0", "mysql:8", "mariadb:10.11", "mariadb:10"],
        cmd: &["mariadbd"],
        env: &[(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )],
        entrypoint: MARIADB_ENTRYPOINT,
        // mariadb-server's postinst installs the system tables; the entrypoint does that on first run.
        emptied: &["var/lib/mysql"],
        user: Some(("mysql", "/var/lib/mysql", 999)),
    },
    Engine {
        name: "memcached",
        packages: &["memcached", "util-linux"],
        references: &["memcached:1", "memcached:1.6", "memcached:1.6-bookworm"],
        cmd: &["memcached"],
        env: &[(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )],
        entrypoint: MEMCACHED_ENTRYPOINT,
        emptied: &[],
        user: Some(("memcache", "/home/memcache", 11211)),
    },
    Engine {
        name: "nats",
        packages: &["nats-server"],
        references: &["nats:2", "nats:2.9"],
        cmd: &["nats-server", "--config", "/etc/nats/nats-server.conf"],
        env: &[(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )],
        entrypoint: NATS_ENTRYPOINT,
        emptied: &[],
        user: None,
    },
    Engine {
        name: "rabbitmq",
        packages: &["rabbitmq-server", "util-linux"],
        references: &["rabbitmq:3", "rabbitmq:3.10", "rabbitmq:3-management"],
        cmd: &["rabbitmq-server"],
        env: &[
            (
                "PATH",
                "/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("RABBITMQ_DATA_DIR", "/var/lib/rabbitmq"),
            ("LANG", "C.UTF-8"),
        ],
        entrypoint: RABBITMQ_ENTRYPOINT,
        emptied: &["var/lib/rabbitmq/mnesia"],
        user: Some(("rabbitmq", "/var/lib/rabbitmq", 999)),
    },
];

/// Images that have no Debian package: their pods stay simulated.
pub const SIMULATED: &[&str] = &[
    "mongo",
    "bitnami/kafka",
    "apache/kafka",
    "confluentinc/cp-kafka",
];

/// `DIR/<engine>/image.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageConfig {
    pub engine: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// What the image was built from; a different key means a rebuild.
    pub key: String,
}

/// `DIR/manifest.json`: image references to engine directories, and the references that stay simulated.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub images: BTreeMap<String, String>,
    pub simulated: Vec<String>,
}

/// What an image reference resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A local image: its directory (holding `rootfs/` and `image.json`).
    Local(PathBuf),
    /// No Debian package: the pod stays simulated.
    Simulated,
    /// Not in the manifest: the pod gets `ErrImagePull` with this message.
    Unknown(String),
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("manifest.json");
        let raw = std::fs::read(&path).map_err(|e| {
            format!(
                "reading {}: {e} (build the images first: kubesim images build --out {})",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_slice(&raw).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Resolves a pod's image reference: `docker.io/library/` and `docker.io/` are optional, a digest is ignored.
    pub fn resolve(&self, dir: &Path, reference: &str) -> Resolved {
        let r = normalize(reference);
        if let Some(engine) = self.images.get(&r) {
            return Resolved::Local(dir.join(engine));
        }
        let repo = r.split(':').next().unwrap_or(&r);
        if self.simulated.iter().any(|s| s == repo) {
            return Resolved::Simulated;
        }
        Resolved::Unknown(format!(
            "kubesim has no local image for {reference:?}; `kubesim images build` makes {} (see {})",
            self.images.keys().cloned().collect::<Vec<_>>().join(", "),
            dir.join("manifest.json").display()
        ))
    }
}

/// `docker.io/library/postgres:15@sha256:…` → `postgres:15`; a reference without a tag gets `:latest`.
pub fn normalize(reference: &str) -> String {
    let r = reference.split('@').next().unwrap_or(reference);
    let r = r
        .strip_prefix("docker.io/library/")
        .or_else(|| r.strip_prefix("docker.io/"))
        .or_else(|| r.strip_prefix("index.docker.io/library/"))
        .unwrap_or(r);
    let name_part = r.rsplit('/').next().unwrap_or(r);
    if name_part.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// The key an engine's image is built from.
fn key_of(engine: &Engine, mirror: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        SUITE,
        mirror,
        &engine.packages.join(","),
        engine.entrypoint,
        &engine.emptied.join(","),
        &format!("{:?}", engine.user),
        GOSU,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        let tail = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        ))
    }
}

/// Builds (or reuses) the images of `engines` (all when empty) under `out`, and writes the manifest. Logs progress
/// through `say`. Needs root and `debootstrap`.
pub fn build(
    out: &Path,
    engines: &[String],
    mirror: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Manifest, String> {
    let chosen: Vec<&Engine> = if engines.is_empty() {
        ENGINES.iter().collect()
    } else {
        engines
            .iter()
            .map(|n| {
                ENGINES.iter().find(|e| e.name == n).ok_or_else(|| {
                    let known: Vec<&str> = ENGINES.iter().map(|e| e.name).collect();
                    format!("unknown engine {n:?} (kubesim builds {})", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?
    };
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let base = out.join("base");
    let base_key = format!("{SUITE} {mirror}");
    if std::fs::read_to_string(base.join("key")).ok().as_deref() != Some(base_key.as_str()) {
        say(&format!(
            "base: debootstrap --variant=minbase {SUITE} ({mirror})"
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
        run(
            Command::new("debootstrap")
                .args(["--variant=minbase", SUITE])
                .arg(base.join("rootfs"))
                .arg(mirror),
            "debootstrap",
        )?;
        std::fs::write(base.join("key"), &base_key).map_err(|e| e.to_string())?;
    } else {
        say("base: up to date");
    }
    for engine in chosen {
        let dir = out.join(engine.name);
        let key = key_of(engine, mirror);
        let current: Option<ImageConfig> = std::fs::read(dir.join("image.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if current.as_ref().is_some_and(|c| c.key == key) && dir.join("rootfs").is_dir() {
            say(&format!("{}: up to date ({key})", engine.name));
            continue;
        }
        say(&format!(
            "{}: installing {}",
            engine.name,
            engine.packages.join(" ")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let rootfs = dir.join("rootfs");
        run(
            Command::new("cp")
                .arg("-a")
                .arg(base.join("rootfs"))
                .arg(&rootfs),
            "copying the base system",
        )?;
        install(&rootfs, engine)?;
        let config = ImageConfig {
            engine: engine.name.to_string(),
            entrypoint: vec!["/usr/local/bin/docker-entrypoint.sh".into()],
            cmd: engine.cmd.iter().map(|s| s.to_string()).collect(),
            env: engine
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            key,
        };
        std::fs::write(
            dir.join("image.json"),
            serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
        say(&format!("{}: built", engine.name));
    }
    let mut manifest = Manifest::load(out).unwrap_or_default();
    for engine in ENGINES {
        if !out.join(engine.name).join("image.json").is_file() {
            continue;
        }
        for r in engine.references {
            manifest
                .images
                .insert(r.to_string(), engine.name.to_string());
        }
    }
    manifest.simulated = SIMULATED.iter().map(|s| s.to_string()).collect();
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(manifest)
}

/// Installs an engine's packages into `rootfs` with services kept from starting, trims what a container does not
/// need, and writes the entrypoint.
fn install(rootfs: &Path, engine: &Engine) -> Result<(), String> {
    let write = |rel: &str, text: &str, mode: u32| -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let p = rootfs.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())
    };
    // No service may start during the install (there is no init), and postgresql-common must not make a cluster.
    write("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)?;
    write(
        "etc/postgresql-common/createcluster.conf",
        "create_main_cluster = false\n",
        0o644,
    )?;
    // The chroot needs the host's name resolution to reach the mirror.
    let _ = std::fs::copy("/etc/resolv.conf", rootfs.join("etc/resolv.conf"));
    // The service user first, with the official image's ids; the packages' scripts then use it as it is.
    if let Some((name, home, uid)) = engine.user {
        let uid = uid.to_string();
        run(
            Command::new("chroot")
                .arg(rootfs)
                .args(["groupadd", "--system", "--gid", &uid, name]),
            "groupadd",
        )?;
        run(
            Command::new("chroot").arg(rootfs).args([
                "useradd",
                "--system",
                "--uid",
                &uid,
                "--gid",
                &uid,
                "--home-dir",
                home,
                "--no-create-home",
                "--shell",
                "/bin/bash",
                name,
            ]),
            "useradd",
        )?;
    }
    let mut packages = vec!["install", "-y", "-q", "--no-install-recommends"];
    packages.extend(engine.packages.iter().copied());
    run(
        Command::new("chroot")
            .arg(rootfs)
            .args(["apt-get", "update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
    )?;
    run(
        Command::new("chroot")
            .arg(rootfs)
            .arg("apt-get")
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &format!("apt-get install {}", engine.packages.join(" ")),
    )?;
    run(
        Command::new("chroot")
            .arg(rootfs)
            .args(["apt-get", "clean"]),
        "apt-get clean",
    )?;
    for trim in [
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ]
    .iter()
    .chain(engine.emptied)
    {
        let p = rootfs.join(trim);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::create_dir_all(&p);
    }
    let _ = std::fs::remove_file(rootfs.join("usr/sbin/policy-rc.d"));
    write(
        "usr/local/bin/docker-entrypoint.sh",
        engine.entrypoint,
        0o755,
    )?;
    write("docker-entrypoint-initdb.d/.keep", "", 0o644)?;
    write("usr/local/bin/gosu", GOSU, 0o755)?;
    Ok(())
}

/// postgres: `POSTGRES_PASSWORD` (required unless `POSTGRES_HOST_AUTH_METHOD=trust`), `POSTGRES_USER` (default
/// `postgres`), `POSTGRES_DB` (default the user), `POSTGRES_INITDB_ARGS`, `POSTGRES_HOST_AUTH_METHOD` (default
/// `scram-sha-256`) and `PGDATA`; a first run on an empty data directory initialises it and runs
/// `/docker-entrypoint-initdb.d/*.sh|*.sql`; the server runs as the `postgres` user, listening on every address.
const POSTGRES_ENTRYPOINT: &str = r#"#!/bin/bash
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" != 'postgres' ]; then exec "$@"; fi
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
as_postgres() { gosu postgres "$@"; }
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "error: database is uninitialized and superuser password is not specified." >&2
    echo "       Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)." >&2
    exit 1
  fi
  pwfile="$(mktemp)"; printf '%s' "${POSTGRES_PASSWORD:-}" > "$pwfile"; chown postgres "$pwfile"
  # shellcheck disable=SC2086
  as_postgres initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
  as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start
  if [ "$db" != postgres ]; then
    as_postgres psql -v ON_ERROR_STOP=1 -h /var/run/postgresql --username "$user" --dbname postgres \
      -c "CREATE DATABASE \"$db\";"
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; as_postgres psql -v ON_ERROR_STOP=1 -h /var/run/postgresql --username "$user" --dbname "$db" -f "$f" ;;
      *) ;;
    esac
  done
  as_postgres pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
fi
if [ "$(id -u)" = 0 ]; then
  exec gosu postgres "$@" -c listen_addresses='*'
fi
exec "$@" -c listen_addresses='*'
"#;

/// redis: arguments starting with `-` (or a `.conf` file) go to `redis-server`; without a config file protected
/// mode is off (the container is the boundary, as in the official image) and the working directory is `/data`;
/// the server runs as the `redis` user.
const REDIS_ENTRYPOINT: &str = r#"#!/bin/bash
set -euo pipefail
if [ "${1:0:1}" = '-' ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = 'redis-server' ]; then
  mkdir -p /data
  if [ "$(id -u)" = 0 ]; then chown redis:redis /data; fi
  cd /data
  case " $* " in
    *.conf\ *) ;;
    *) set -- "$@" --protected-mode no --dir /data ;;
  esac
  if [ "$(id -u)" = 0 ]; then exec gosu redis "$@"; fi
fi
exec "$@"
"#;

/// mysql (MariaDB): `MYSQL_ROOT_PASSWORD`/`MARIADB_ROOT_PASSWORD` (or `MYSQL_ALLOW_EMPTY_PASSWORD`),
/// `MYSQL_DATABASE`, `MYSQL_USER` and `MYSQL_PASSWORD` (and their `MARIADB_` forms); a first run on an empty
/// `/var/lib/mysql` installs the system tables, applies them with a server that listens on no network, and runs
/// `/docker-entrypoint-initdb.d/*.sh|*.sql`; the server runs as the `mysql` user on every address (port 3306
/// unless an argument sets another).
const MARIADB_ENTRYPOINT: &str = r#"#!/bin/bash
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- mariadbd "$@"; fi
case "$1" in mariadbd|mysqld) ;; *) exec "$@" ;; esac
root_pw="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
allow_empty="${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}"
database="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
user="${MARIADB_USER:-${MYSQL_USER:-}}"
password="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"
datadir=/var/lib/mysql
mkdir -p "$datadir" /run/mysqld
chown mysql:mysql "$datadir" /run/mysqld
if [ ! -d "$datadir/mysql" ]; then
  if [ -z "$root_pw" ] && [ -z "$allow_empty" ]; then
    echo "error: database is uninitialized and the root password is not specified." >&2
    echo "       Set MYSQL_ROOT_PASSWORD (or MARIADB_ROOT_PASSWORD, or MYSQL_ALLOW_EMPTY_PASSWORD)." >&2
    exit 1
  fi
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db --auth-root-authentication-method=normal >/dev/null
  gosu mysql mariadbd --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  for _ in $(seq 1 60); do
    mariadb --socket=/run/mysqld/init.sock -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  sql() { mariadb --socket=/run/mysqld/init.sock -uroot "$@"; }
  esc() { printf '%s' "$1" | sed "s/'/''/g"; }
  {
    echo "DELETE FROM mysql.global_priv WHERE User='';"
    echo "CREATE USER IF NOT EXISTS 'root'@'%';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(esc "$root_pw")';"
    echo "ALTER USER 'root'@'%' IDENTIFIED BY '$(esc "$root_pw")';"
    if [ -n "$database" ]; then echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"; fi
    if [ -n "$user" ] && [ -n "$password" ]; then
      echo "CREATE USER '$(esc "$user")'@'%' IDENTIFIED BY '$(esc "$password")';"
      if [ -n "$database" ]; then echo "GRANT ALL ON \`$database\`.* TO '$(esc "$user")'@'%';"; fi
    fi
    echo "FLUSH PRIVILEGES;"
  } | sql
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; sql -p"$root_pw" ${database:+"$database"} < "$f" ;;
      *) ;;
    esac
  done
  kill "$pid"; wait "$pid" || true
  echo "MariaDB init process complete; ready for start up."
fi
# Listen on every address unless the arguments say otherwise (later options win).
exec gosu mysql "$1" --bind-address=0.0.0.0 "${@:2}"
"#;

/// memcached: arguments starting with `-` go to `memcached`, which runs as the `memcache` user (11211, as in the
/// official image), listening on every address on 11211.
const MEMCACHED_ENTRYPOINT: &str = r#"#!/bin/bash
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- memcached "$@"; fi
if [ "$1" = memcached ] && [ "$(id -u)" = 0 ]; then exec gosu memcache "$@"; fi
exec "$@"
"#;

/// nats: arguments starting with `-` go to `nats-server`; the default command reads a configuration like the
/// official image's (clients on 4222, monitoring on 8222, cluster routes on 6222), written here when missing.
/// It runs as root, as the official image does.
const NATS_ENTRYPOINT: &str = r#"#!/bin/bash
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- nats-server "$@"; fi
if [ ! -e /etc/nats/nats-server.conf ]; then
  mkdir -p /etc/nats
  printf 'port: 4222\nmonitor_port: 8222\ncluster {\n  name: NATS\n  port: 6222\n}\n' > /etc/nats/nats-server.conf
fi
exec "$@"
"#;

/// rabbitmq: `RABBITMQ_DEFAULT_USER`/`RABBITMQ_DEFAULT_PASS` (default `guest`, which may log in from anywhere,
/// as in the official image) and `RABBITMQ_DEFAULT_VHOST` become the first start's user and vhost; AMQP on 5672;
/// the node is `rabbit@<hostname>`; the server runs as the `rabbitmq` user with its Erlang cookie made once.
const RABBITMQ_ENTRYPOINT: &str = r#"#!/bin/bash
set -euo pipefail
if [ "${1:0:1}" = '-' ]; then set -- rabbitmq-server "$@"; fi
if [ "$1" = rabbitmq-server ]; then
  mkdir -p /etc/rabbitmq/conf.d /var/lib/rabbitmq /var/log/rabbitmq
  {
    echo "loopback_users.guest = false"
    echo "listeners.tcp.default = 5672"
    echo "default_user = ${RABBITMQ_DEFAULT_USER:-guest}"
    echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}"
    echo "default_vhost = ${RABBITMQ_DEFAULT_VHOST:-/}"
    echo "log.console = true"
    echo "log.file = false"
  } > /etc/rabbitmq/conf.d/10-kubesim.conf
  if [ ! -s /var/lib/rabbitmq/.erlang.cookie ]; then
    head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 > /var/lib/rabbitmq/.erlang.cookie
  fi
  chmod 400 /var/lib/rabbitmq/.erlang.cookie
  if [ "$(id -u)" = 0 ]; then
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq /etc/rabbitmq
    exec gosu rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server "${@:2}"
  fi
  exec /usr/lib/rabbitmq/bin/rabbitmq-server "${@:2}"
fi
exec "$@"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_and_resolve() {
        assert_eq!(normalize("docker.io/library/postgres:15"), "postgres:15");
        assert_eq!(normalize("postgres:15@sha256:abc"), "postgres:15");
        assert_eq!(normalize("redis"), "redis:latest");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
        let m = Manifest {
            images: BTreeMap::from([("postgres:15".to_string(), "postgresql".to_string())]),
            simulated: vec!["mongo".into()],
        };
        let dir = Path::new("/images");
        assert_eq!(
            m.resolve(dir, "docker.io/library/postgres:15"),
            Resolved::Local(PathBuf::from("/images/postgresql"))
        );
        assert_eq!(m.resolve(dir, "mongo:7.0"), Resolved::Simulated);
        match m.resolve(dir, "postgres:16") {
            Resolved::Unknown(msg) => assert!(msg.contains("postgres:15"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_change_with_what_an_image_is_built_from() {
        let pg = &ENGINES[0];
        assert_eq!(key_of(pg, DEFAULT_MIRROR), key_of(pg, DEFAULT_MIRROR));
        assert_ne!(
            key_of(pg, DEFAULT_MIRROR),
            key_of(pg, "http://mirror.example/debian")
        );
        assert_ne!(
            key_of(pg, DEFAULT_MIRROR),
            key_of(&ENGINES[1], DEFAULT_MIRROR)
        );
    }
}
