//! The `hyperdb` command.
//!
//! Exit codes: 0 success; 1 "not found" or "false"; 2 usage error; 3 any
//! other error. Errors go to stderr with a hint.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

mod explore;
mod show;
mod swarm;
use hyperdb::{
    replicate, Db, DbReader, DbStorage, Durability, Node, Op, OpenOptions, ReadOnlyDb,
    ReplicateOptions, Summary,
};
use serde_json::{json, Value};

const ABOUT: &str = "A peer-to-peer, multi-writer key-value database made of signed \
append-only logs (hypercore feeds), compatible with hyperdb 3.5.0.";

const LONG_ABOUT: &str = "\
A peer-to-peer, multi-writer key-value database made of signed append-only logs
(hypercore feeds), compatible on disk with hyperdb 3.5.0.

A database lives in a folder. Its creator owns it: their writes go to the
`source` feed, whose key is the database key. A replica made with
`hyperdb init DIR --key DBKEY` has its own writer (the `local` feed); its writes
count once an authorized writer runs `hyperdb authorize` with the replica's
*local key* (shown by `hyperdb info`), not the database key.

Keys and database keys are lowercase hex. Values given on the command line
are UTF-8 text.

One process writes a folder at a time: a command that writes (put, del,
batch, authorize, serve, sync, watch --live) is refused while another holds
the folder. Commands that only read work beside it, and on folders the user
may only read: they never write, create or lock anything.

A write is acknowledged (the command exits 0) only once it is synced to disk
(`--durability fsync`, the default), so neither a crash nor a power cut loses
it. `--durability buffered` hands writes to the operating system without
syncing, as hyperdb 3.5.0 does: much faster, and a crashed process still
loses nothing, but a power cut can lose the last writes. Opening a folder
repairs what an interrupted write left (a note on stderr says what).

Exit codes: 0 success, 1 not found or false, 2 usage error, 3 other error.";

#[derive(Parser)]
#[command(name = "hyperdb", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// For commands that write: `fsync` syncs every write to disk before it
    /// is acknowledged; `buffered` leaves that to the operating system
    /// (faster; a power cut can lose the last writes)
    #[arg(long, global = true, value_name = "MODE", default_value = "fsync")]
    durability: Durability,
}

/// The `--durability` of this run, for every database it opens to write.
static DURABILITY: std::sync::OnceLock<Durability> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Command {
    /// Run the seed's example end to end: two databases, an authorization,
    /// replication over TCP, and every feed printed
    ///
    /// Creates db1 and writes example/first and example/second; creates db2
    /// as a replica of db1 and writes example/third and example/second; has
    /// db1 authorize db2's local key; replicates the two over a TCP
    /// connection on 127.0.0.1; then prints both databases' feeds (every
    /// entry with its key, value, trie, clock, inflate pointer and feeds) and
    /// the resulting keys and values, with the conflict on example/second.
    /// The two folders stay in DIR for the other commands.
    Demo {
        /// Where to put db1 and db2 (a new temporary folder by default)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print every feed of a database and every entry in it, as the demo does
    Feeds {
        /// Database folder (written by this implementation or by hyperdb 3.5.0)
        dir: PathBuf,
    },
    /// Browse a database's keys and values interactively
    ///
    /// Arrow keys move, typing filters the keys, Enter shows the value(s) of
    /// the selected key with each writer, seq and clock (several values are
    /// a conflict), Enter or Esc goes back, Ctrl-C quits.
    Explore {
        /// Database folder
        dir: PathBuf,
        /// Show every write as hyperdb 3.5.0 does, revocations ignored
        #[arg(long)]
        raw: bool,
    },
    /// Create a database in DIR (or a replica of an existing one with --key)
    ///
    /// Prints the database key (share it so others can replicate) and the
    /// local key (what another writer must authorize for this replica's writes
    /// to count; for the owner it is the database key).
    Init {
        /// Folder for the database (created if missing; must not hold one)
        dir: PathBuf,
        /// Make a replica of the database with this key (64 hex characters)
        #[arg(long, value_name = "DBKEY")]
        key: Option<String>,
        /// Print a JSON object with `key` and `local_key`
        #[arg(long)]
        json: bool,
    },
    /// Show the database key, discovery key, local key and every writer
    Info {
        /// Database folder
        dir: PathBuf,
        /// Print a JSON object: key, discovery_key, local_key, authorized,
        /// writers (each with key, length, counted: how much of its feed
        /// counts in answers here, authorized, source, local), key_index
        /// (covered: entries of the source it covers, in_file, in_memory;
        /// null when there is none)
        #[arg(long)]
        json: bool,
    },
    /// Store VALUE at KEY
    Put {
        /// Database folder
        dir: PathBuf,
        /// The key; `/` separates components (`a/b/c`), a leading `/` is dropped
        key: String,
        /// The value, as UTF-8 text
        value: String,
    },
    /// Delete KEY
    Del {
        /// Database folder
        dir: PathBuf,
        /// The key
        key: String,
    },
    /// Apply puts and deletes from stdin atomically (one append, one signature)
    ///
    /// Reads newline-delimited JSON, one operation a line:
    ///   {"type":"put","key":"a/b","value":"text"}
    ///   {"type":"del","key":"a/c"}
    /// Nothing is written unless every line is valid.
    Batch {
        /// Database folder
        dir: PathBuf,
    },
    /// Print every current value of KEY, one a line (exit 1 when none)
    ///
    /// Several values mean concurrent writes that no later write has replaced
    /// (a conflict); deleted keys have none.
    Get {
        /// Database folder
        dir: PathBuf,
        /// The key
        key: String,
        /// Print a JSON array of nodes: key, value, deleted, feed, seq, clock
        #[arg(long)]
        json: bool,
        /// Read the database as it was at VERSION (hex, from `hyperdb version`)
        #[arg(long, value_name = "VERSION")]
        at: Option<String>,
        /// Show every write as hyperdb 3.5.0 does, revocations ignored
        #[arg(long)]
        raw: bool,
    },
    /// List every live key under PREFIX with its values
    ///
    /// Keys come in hyperdb 3.5.0's order (by the hash of their path), the
    /// same on every replica.
    Ls {
        /// Database folder
        dir: PathBuf,
        /// Only keys under this prefix (whole components)
        #[arg(default_value = "")]
        prefix: String,
        /// One entry for each component directly under PREFIX
        #[arg(long)]
        no_recursive: bool,
        /// The opposite order
        #[arg(long)]
        reverse: bool,
        /// Leave out PREFIX itself (only keys strictly under it)
        #[arg(long)]
        gt: bool,
        /// Keys in the order last written (same keys and values): a
        /// database with one writer is read straight through its feed,
        /// faster for most of a large database, slower for a small prefix
        #[arg(long, conflicts_with_all = ["no_recursive", "reverse"])]
        unordered: bool,
        /// Print one JSON object a line: {"key": "a/b", "values": ["v1", "v2"]}
        #[arg(long)]
        json: bool,
        /// Read the database as it was at VERSION (hex, from `hyperdb version`)
        #[arg(long, value_name = "VERSION")]
        at: Option<String>,
        /// Show every write as hyperdb 3.5.0 does, revocations ignored
        #[arg(long)]
        raw: bool,
    },
    /// Print the current version (hex): the heads, as hyperdb 3.5.0 encodes them
    ///
    /// Give it to --at of get, ls or history to read the database as it is now,
    /// later on.
    Version {
        /// Database folder
        dir: PathBuf,
    },
    /// Print every write, oldest first, one a line
    ///
    /// Writers' feeds are merged as hyperdb 3.5.0's history stream does
    /// (each writer's writes in order, close to causal order). With --key,
    /// only the writes to that key, newest first (values current together
    /// share a step).
    History {
        /// Database folder
        dir: PathBuf,
        /// Newest first
        #[arg(long)]
        reverse: bool,
        /// Only the writes to this key, newest first
        #[arg(long)]
        key: Option<String>,
        /// One JSON object a line: key, value, deleted, feed, seq, clock
        #[arg(long)]
        json: bool,
        /// Read the database as it was at VERSION
        #[arg(long, value_name = "VERSION")]
        at: Option<String>,
        /// Show every write as hyperdb 3.5.0 does, revocations ignored
        #[arg(long)]
        raw: bool,
    },
    /// Let the writer with WRITERKEY write to the database
    ///
    /// WRITERKEY is the *local key* of the other replica (`hyperdb info` there
    /// prints it), not the database key. Afterwards, sync the two replicas.
    /// Without options this is hyperdb 3.5.0's authorization (the same
    /// bytes). Authorizing a revoked writer again (the owner or an admin)
    /// lets its entries count from those that have seen this authorization
    /// on; the ones in between stay out.
    Authorize {
        /// Database folder
        dir: PathBuf,
        /// The other replica's local key (64 hex characters)
        writer_key: String,
        /// Make it an admin, who may authorize and revoke writers (only the
        /// owner makes admins)
        #[arg(long)]
        admin: bool,
        /// Let it write only under PREFIX (whole components: `config`
        /// covers `config/x`, not `configuration`); repeat for several. Such
        /// a writer authorizes no one. The owner's or an admin's only.
        #[arg(long, value_name = "PREFIX")]
        prefix: Vec<String>,
    },
    /// Let only the given writers (and the owner and admins) write under PREFIX
    ///
    /// Other writers' entries there that this replica has not seen stop
    /// counting, on every replica that has this restriction. Restricting
    /// PREFIX again replaces the restrictions of it seen here; with no
    /// --writer, PREFIX becomes read-only for all but the owner and admins.
    /// The owner's or an admin's only; hyperdb 3.5.0 peers do not enforce it.
    Restrict {
        /// Database folder
        dir: PathBuf,
        /// The prefix (whole components; "" is the whole database)
        prefix: String,
        /// A writer's local key that may still write there; repeat for several
        #[arg(long = "writer", value_name = "WRITERKEY")]
        writers: Vec<String>,
    },
    /// Lift the restrictions of PREFIX seen here
    Unrestrict {
        /// Database folder
        dir: PathBuf,
        /// The prefix
        prefix: String,
    },
    /// Revoke the writer with WRITERKEY
    ///
    /// Its entries this replica has seen keep counting; its later ones do
    /// not, on every replica that has this revocation, including ones it
    /// wrote before it learned of it. The owner revokes anyone but itself,
    /// an admin revokes writers (not admins); refusals exit 3 and write
    /// nothing. hyperdb 3.5.0 peers do not enforce it: they, and --raw,
    /// still show everything. Afterwards, sync the replicas.
    Revoke {
        /// Database folder
        dir: PathBuf,
        /// The writer's local key (64 hex characters; `hyperdb writers` lists them)
        writer_key: String,
    },
    /// List every writer: key, role (owner, admin, writer, none), the
    /// prefixes it is limited to, and whether (from which of its entries on)
    /// it is revoked, as this replica sees it; then the restricted prefixes
    Writers {
        /// Database folder
        dir: PathBuf,
        /// One JSON object a line: key, role, prefixes (null: anywhere),
        /// revoked_from, restored, local; then {"restricted": prefix,
        /// "writers": [keys]} for each restriction
        #[arg(long)]
        json: bool,
    },
    /// Print what changed under PREFIX since VERSION, one key a line
    ///
    /// `+ key  values` was added, `- key  values` was removed, `~ key  old -> new`
    /// changed (several values are a conflict). Pairs follow hyperdb 3.5.0's
    /// diff stream.
    Diff {
        /// Database folder
        dir: PathBuf,
        /// The older version (hex, from `hyperdb version`)
        #[arg(long, value_name = "VERSION")]
        from: String,
        /// Only keys under this prefix
        #[arg(default_value = "")]
        prefix: String,
        /// One JSON object a line: {"key": k, "left": [new values]|null, "right": [old values]|null}
        #[arg(long)]
        json: bool,
        /// Compare both versions as hyperdb 3.5.0 shows them, revocations ignored
        #[arg(long)]
        raw: bool,
    },
    /// Print a line for every change under PREFIX until interrupted
    ///
    /// Changes made by other processes on the folder show up within a
    /// second. With --live ADDR it also keeps a live replication with the
    /// peer at ADDR, so remote writes show up as they arrive.
    Watch {
        /// Database folder
        dir: PathBuf,
        /// Only changes under this prefix
        #[arg(default_value = "")]
        prefix: String,
        /// Replicate live with the peer at this address meanwhile
        #[arg(long, value_name = "ADDR")]
        live: Option<String>,
        /// Show every write as hyperdb 3.5.0 does, revocations ignored
        #[arg(long)]
        raw: bool,
    },
    /// Replicate with every peer that connects, and with the peers found
    ///
    /// Listens on TCP port 3282 (or any free port if that one is taken;
    /// --listen chooses the address) and prints `listening on ADDR`.
    /// It announces itself by the database key on the local network
    /// (multicast DNS) and on the BitTorrent DHT, connects to the peers it
    /// finds there, and replicates live with all of them until
    /// interrupted: hyperdb 3.5.0 apps (hyperdiscovery) find it and it
    /// finds them. Announcing on the public DHT publishes this machine's
    /// address beside the database's discovery key (which does not reveal
    /// the database key); --no-dht keeps the database on the local network.
    /// With --no-dht and --no-mdns it only serves who connects, and each
    /// connection ends once both sides hold the same data (unless --live).
    /// A connection that fails is reported on stderr as `PEER: error`; on
    /// a terminal, so is what each connection exchanged.
    Serve {
        /// Database folder
        dir: PathBuf,
        /// Address to listen on, such as 127.0.0.1:3282 (default: port 3282 on
        /// every interface, or any free port)
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Keep every connection open and exchange new writes as they happen
        /// (always so with peers found by discovery)
        #[arg(long)]
        live: bool,
        /// At most this many connections at once; more wait to be accepted
        #[arg(long, value_name = "N", default_value_t = 256)]
        max_connections: usize,
        /// Memory all connections together may hold for their peers (unparsed
        /// input, unsent answers), in MiB; past it, the connections holding
        /// more than their share are dropped
        #[arg(long, value_name = "MIB", default_value_t = 64)]
        memory_budget: usize,
        #[command(flatten)]
        discovery: swarm::DiscoveryFlags,
    },
    /// Replicate with the peer at ADDR, or with the peers found by the database key
    ///
    /// Without ADDR it looks the database up on the local network
    /// (multicast DNS) and on the BitTorrent DHT, connects to every peer it
    /// finds (hyperdb 3.5.0 apps included), and prints what came from
    /// where. A one-shot sync ends when this replica holds everything the
    /// peers have and they want nothing more; it gives up after --timeout
    /// seconds if it finds no peer. With --live it stays connected (and
    /// keeps looking) until interrupted.
    Sync {
        /// Database folder
        dir: PathBuf,
        /// The peer's address, such as 127.0.0.1:3282 (default: find peers)
        addr: Option<String>,
        /// Stay connected and exchange new writes as they happen
        #[arg(long)]
        live: bool,
        /// Seconds to look for peers before giving up (without ADDR)
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        discovery: swarm::DiscoveryFlags,
    },
    /// Check every block of a database and repair what an interrupted write left
    ///
    /// Every command that writes repairs a folder as it opens it (a note on
    /// stderr says what it did); this also reads every stored block back
    /// and checks it against its hash. Damaged blocks of other writers are
    /// marked missing, so the next sync fetches them again. Exit 3 when
    /// this replica's own feed is damaged: it cannot write until the folder
    /// is restored (reading still works).
    Repair {
        /// Database folder
        dir: PathBuf,
    },
    /// Print `true` (exit 0) if WRITERKEY may write, else `false` (exit 1)
    ///
    /// A revoked writer may not (unless authorized again since); with
    /// --raw, the answer of hyperdb 3.5.0, which never revokes.
    Authorized {
        /// Database folder
        dir: PathBuf,
        /// A writer's key (64 hex characters)
        writer_key: String,
        /// Answer as hyperdb 3.5.0 does
        #[arg(long)]
        raw: bool,
    },
}

/// A failure with its exit code and a hint for the user.
struct Failure {
    code: u8,
    message: String,
    hint: Option<String>,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
            hint: Some("run `hyperdb --help` for usage".into()),
        }
    }

    fn not_found() -> Self {
        Failure {
            code: 1,
            message: String::new(),
            hint: None,
        }
    }
}

impl Failure {
    /// The reader of our output went away (`hyperdb feeds DIR | head`):
    /// stop quietly, as command-line tools do.
    fn closed_output() -> Self {
        Failure {
            code: 0,
            message: String::new(),
            hint: None,
        }
    }
}

impl From<hyperdb::Error> for Failure {
    fn from(e: hyperdb::Error) -> Self {
        if let hyperdb::Error::Io { source, .. } = &e {
            if source.kind() == io::ErrorKind::BrokenPipe {
                return Failure::closed_output();
            }
        }
        let hint = match &e {
            hyperdb::Error::NotFound(_) => Some("create one with `hyperdb init DIR`".to_string()),
            hyperdb::Error::Refused { hint, .. } => Some(hint.clone()),
            hyperdb::Error::AuthorizeDbKey(_) => {
                Some("run `hyperdb info` on the other replica and authorize its local key".into())
            }
            hyperdb::Error::Replication(hyperdb::ReplicationError::Wire(
                hyperdb::WireError::DifferentFeed(_),
            ))
            | hyperdb::Error::Replication(hyperdb::ReplicationError::NoHandshake) => Some(
                "check the address: the peer there replicates a different db key (see `hyperdb info`)".into(),
            ),
            hyperdb::Error::Locked(_) => Some(
                "stop the other process first; commands that only read (get, ls, info, watch ...) work meanwhile".into(),
            ),
            hyperdb::Error::Replication(_) => Some(
                "what arrived and verified is kept; run the sync again to continue".into(),
            ),
            hyperdb::Error::Feed(hypercore_feed::Error::Corrupt { reason, .. })
                if reason.contains("fork") =>
            {
                Some("commands that only read (get, ls, info ...) still work on this folder".into())
            }
            hyperdb::Error::Feed(hypercore_feed::Error::Corrupt { .. }) => Some(
                "the folder is damaged; `hyperdb repair DIR` checks every feed, and a sync from a healthy replica refetches what other writers wrote".into(),
            ),
            hyperdb::Error::BadEntry { .. } | hyperdb::Error::BadHeader { .. } => {
                Some("the database files are damaged; a sync from a healthy replica may repair missing data".into())
            }
            _ => None,
        };
        Failure {
            code: 3,
            message: e.to_string(),
            hint,
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Failure::closed_output();
        }
        Failure {
            code: 3,
            message: e.to_string(),
            hint: None,
        }
    }
}

type CliResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    DURABILITY.get_or_init(|| cli.durability);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("error: {}", failure.message);
            }
            if let Some(hint) = failure.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn parse_key(text: &str, what: &str) -> Result<[u8; 32], Failure> {
    let bytes = hex::decode(text.trim())
        .map_err(|_| Failure::usage(format!("{what} must be 64 hex characters, got {text:?}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        Failure::usage(format!(
            "{what} must be 32 bytes (64 hex characters), got {} bytes",
            b.len()
        ))
    })
}

fn durability() -> Durability {
    DURABILITY.get().copied().unwrap_or(Durability::Fsync)
}

/// Opens the database in `dir` for writing: only one process at a time.
fn open(dir: &Path) -> Result<Db, Failure> {
    let options = OpenOptions {
        create: false,
        durability: durability(),
        ..Default::default()
    };
    let db = Db::open_with(dir, options)?;
    note_recovery(dir, &db);
    Ok(db)
}

/// Opens the database in `dir` for reading, which works while another
/// process (a `serve`, say) has it open for writing.
fn open_read(dir: &Path) -> Result<ReadOnlyDb, Failure> {
    let db = ReadOnlyDb::open(dir)?;
    note_recovery(dir, &db);
    Ok(db)
}

/// Says on stderr what opening repaired after an interrupted write.
fn note_recovery(dir: &Path, db: &DbReader) {
    for (feed, recovery) in db.recovered() {
        eprintln!(
            "note: {}: {feed} was recovered after an interrupted write: {recovery}",
            dir.display()
        );
    }
    if db.is_read_only() && !db.recovered().is_empty() {
        eprintln!(
            "note: a command that writes (or `hyperdb repair`) writes the repair to the files"
        );
    }
}

/// Says on stderr which of the writes just made do not count under the
/// permission rule (the writer was revoked, or may not write there): they
/// are stored and signed all the same, and hyperdb 3.5.0 peers show them.
fn warn_if_not_counted(db: &DbReader, nodes: &[std::sync::Arc<Node>]) -> CliResult {
    let view = db.snapshot()?;
    let keys: Vec<&str> = nodes
        .iter()
        .filter(|n| !view.counts(n))
        .map(|n| n.key.as_str())
        .collect();
    if !keys.is_empty() {
        eprintln!(
            "warning: written, but not counted: {} (this replica's writer was revoked or may not \
             write there; `hyperdb writers DIR` says which; --raw and hyperdb 3.5.0 peers show it)",
            keys.join(", ")
        );
    }
    Ok(())
}

/// What the reading commands read: the database now or at `at`, under the
/// permission rule, or with `raw` as hyperdb 3.5.0 shows it.
fn view<'a>(
    db: &'a hyperdb::DbReader,
    at: Option<&str>,
    raw: bool,
) -> Result<hyperdb::Checkout<'a>, Failure> {
    let view = match at {
        Some(v) => db.checkout(&parse_version(v)?)?,
        None => db.snapshot()?,
    };
    Ok(if raw { view.raw() } else { view })
}

fn parse_version(text: &str) -> Result<Vec<u8>, Failure> {
    hex::decode(text.trim()).map_err(|_| {
        Failure::usage(format!(
            "VERSION must be hex (from `hyperdb version`), got {text:?}"
        ))
    })
}

fn node_json(writers: &[hyperdb::WriterInfo], node: &Node) -> Value {
    json!({
        "key": node.key,
        "value": node.value_str(),
        "deleted": node.deleted,
        "feed": hex::encode(writers[node.feed].key),
        "seq": node.seq,
        "clock": node.clock,
    })
}

fn run(command: Command) -> CliResult {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match command {
        Command::Init { dir, key, json } => {
            let key = key.map(|k| parse_key(&k, "--key")).transpose()?;
            if DbStorage::dir(&dir).holds_database() {
                return Err(Failure {
                    code: 3,
                    message: format!("{} already holds a database", dir.display()),
                    hint: Some("use `hyperdb info` to see it".into()),
                });
            }
            let db = Db::open_with(
                &dir,
                OpenOptions {
                    key,
                    durability: durability(),
                    ..Default::default()
                },
            )?;
            if json {
                let v =
                    json!({"key": hex::encode(db.key()), "local_key": hex::encode(db.local_key())});
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "created {} in {}",
                    if db.is_owner() {
                        "a database"
                    } else {
                        "a replica"
                    },
                    dir.display()
                )?;
                writeln!(out, "db key:    {}", hex::encode(db.key()))?;
                writeln!(out, "local key: {}", hex::encode(db.local_key()))?;
            }
        }
        Command::Info { dir, json } => {
            let db = open_read(&dir)?;
            let local = *db.local_key();
            // Under the permission rule; hyperdb 3.5.0 never revokes.
            let authorized = db.may_write(&local)?;
            let listed = db.is_authorized(&local)?;
            let writers = db.writers();
            let counted = db.counted()?;
            if json {
                let writers: Vec<Value> = writers
                    .iter()
                    .zip(&counted)
                    .map(|(w, counted)| {
                        json!({
                            "key": hex::encode(w.key),
                            "length": w.length,
                            "counted": counted,
                            "authorized": w.authorized,
                            "source": w.source,
                            "local": w.local,
                        })
                    })
                    .collect();
                let v = json!({
                    "key": hex::encode(db.key()),
                    "discovery_key": hex::encode(db.discovery_key()),
                    "local_key": hex::encode(local),
                    "authorized": authorized,
                    "writers": writers,
                    "key_index": db.key_index().map(|i| json!({
                        "covered": i.covered,
                        "in_file": i.in_file,
                        "in_memory": i.in_memory,
                    })),
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "db key:        {}", hex::encode(db.key()))?;
                writeln!(out, "discovery key: {}", hex::encode(db.discovery_key()))?;
                writeln!(out, "local key:     {}", hex::encode(local))?;
                writeln!(
                    out,
                    "authorized:    {}",
                    if authorized {
                        "yes"
                    } else if listed {
                        "no: revoked (`hyperdb writers DIR` says from which entry on; hyperdb 3.5.0 peers still count its writes)"
                    } else {
                        "no (another writer must `hyperdb authorize` the local key)"
                    }
                )?;
                writeln!(out, "writers:")?;
                for (w, &counted) in writers.iter().zip(&counted) {
                    let mut marks = String::new();
                    if w.source {
                        marks.push_str(" (source)");
                    }
                    if w.local {
                        marks.push_str(" (local)");
                    }
                    if !w.authorized {
                        marks.push_str(" (not authorized)");
                    } else if counted < w.length {
                        marks.push_str(&format!(
                            " ({} held back: they saw entries not stored here yet, or do not decode)",
                            w.length - counted
                        ));
                    }
                    writeln!(out, "  {} length {}{}", hex::encode(w.key), w.length, marks)?;
                }
                match db.key_index() {
                    Some(index) => writeln!(
                        out,
                        "key index:     {} keys in its file, {} entries since (index/, rebuilt if deleted)",
                        index.in_file, index.in_memory
                    )?,
                    None => writeln!(
                        out,
                        "key index:     none (lookups walk the trie: several writers, or not the owner's folder)"
                    )?,
                }
            }
        }
        Command::Put { dir, key, value } => {
            let db = open(&dir)?;
            let node = db.put(&key, value.as_bytes())?;
            warn_if_not_counted(&db, &[node])?;
        }
        Command::Del { dir, key } => {
            let db = open(&dir)?;
            let node = db.del(&key)?;
            warn_if_not_counted(&db, &[node])?;
        }
        Command::Batch { dir } => {
            let mut ops = Vec::new();
            for (n, line) in io::stdin().lock().lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                ops.push(
                    parse_op(&line)
                        .map_err(|e| Failure::usage(format!("stdin line {}: {e}", n + 1)))?,
                );
            }
            let db = open(&dir)?;
            let nodes = db.batch(&ops)?;
            warn_if_not_counted(&db, &nodes)?;
        }
        Command::Get {
            dir,
            key,
            json,
            at,
            raw,
        } => {
            let db = open_read(&dir)?;
            let values = view(&db, at.as_deref(), raw)?.get(&key)?;
            if json {
                let writers = db.writers();
                let list: Vec<Value> = values.iter().map(|n| node_json(&writers, n)).collect();
                writeln!(out, "{}", Value::Array(list))?;
            } else {
                for node in &values {
                    writeln!(out, "{}", node.value_str().unwrap_or_default())?;
                }
            }
            if values.is_empty() {
                return Err(Failure::not_found());
            }
        }
        Command::Ls {
            dir,
            prefix,
            no_recursive,
            reverse,
            gt,
            unordered,
            json,
            at,
            raw,
        } => {
            let db = open_read(&dir)?;
            let options = hyperdb::IterOptions {
                shallow: no_recursive,
                reverse,
                gt,
                deletes: false,
                unordered,
            };
            let view = view(&db, at.as_deref(), raw)?;
            let rows = view
                .iter(&prefix, options)?
                .collect::<Result<Vec<_>, _>>()?;
            for (key, values) in rows {
                let texts: Vec<String> = values
                    .iter()
                    .map(|n| n.value_str().unwrap_or_default())
                    .collect();
                if json {
                    writeln!(out, "{}", json!({"key": key, "values": texts}))?;
                } else {
                    writeln!(out, "{key}\t{}", texts.join("\t"))?;
                }
            }
        }
        Command::Authorize {
            dir,
            writer_key,
            admin,
            prefix,
        } => {
            let key = parse_key(&writer_key, "WRITERKEY")?;
            let options = hyperdb::AuthorizeOptions {
                admin,
                prefixes: prefix.clone(),
            };
            open(&dir)?.authorize_with(&key, options)?;
            let what = match (admin, prefix.is_empty()) {
                (true, _) => " as an admin".to_string(),
                (false, false) => format!(" under {}", prefix.join(", ")),
                (false, true) => String::new(),
            };
            writeln!(
                out,
                "authorized {writer_key}{what}; now sync the replicas so the writer learns it"
            )?;
        }
        Command::Revoke { dir, writer_key } => {
            let key = parse_key(&writer_key, "WRITERKEY")?;
            open(&dir)?.revoke(&key)?;
            writeln!(
                out,
                "revoked {writer_key}; now sync the replicas so every one of them learns it"
            )?;
        }
        Command::Restrict {
            dir,
            prefix,
            writers,
        } => {
            let keys = writers
                .iter()
                .map(|w| parse_key(w, "WRITERKEY"))
                .collect::<Result<Vec<_>, _>>()?;
            open(&dir)?.restrict(&prefix, &keys)?;
            writeln!(
                out,
                "restricted {prefix:?}; now sync the replicas so every one of them learns it"
            )?;
        }
        Command::Unrestrict { dir, prefix } => {
            open(&dir)?.unrestrict(&prefix)?;
            writeln!(
                out,
                "lifted the restrictions of {prefix:?}; now sync the replicas"
            )?;
        }
        Command::Writers { dir, json } => {
            let db = open_read(&dir)?;
            let local = db.local_key();
            for p in db.permissions()? {
                let key = hex::encode(p.key);
                let is_local = p.key == *local;
                if json {
                    let v = json!({
                        "key": key,
                        "role": p.role,
                        "prefixes": p.prefixes,
                        "revoked_from": p.revoked_from,
                        "restored": p.restored,
                        "local": is_local,
                    });
                    writeln!(out, "{v}")?;
                    continue;
                }
                let mut line = format!("{key}\t{}", p.role);
                if let Some(prefixes) = &p.prefixes {
                    line.push_str(&format!("\tunder {}", prefixes.join(", ")));
                }
                if let Some(seq) = p.revoked_from {
                    let again = if p.restored {
                        " (authorized again since)"
                    } else {
                        ""
                    };
                    line.push_str(&format!("\trevoked from entry {seq}{again}"));
                }
                if is_local {
                    line.push_str("\t(local)");
                }
                writeln!(out, "{line}")?;
            }
            for x in db.restrictions()? {
                let keys: Vec<String> = x.writers.iter().map(hex::encode).collect();
                if json {
                    writeln!(out, "{}", json!({"restricted": x.prefix, "writers": keys}))?;
                } else if keys.is_empty() {
                    writeln!(out, "restricted {:?}: the owner and admins only", x.prefix)?;
                } else {
                    writeln!(
                        out,
                        "restricted {:?}: the owner, admins and {}",
                        x.prefix,
                        keys.join(", ")
                    )?;
                }
            }
        }
        Command::Version { dir } => {
            let db = open_read(&dir)?;
            writeln!(out, "{}", hex::encode(db.version()?))?;
        }
        Command::History {
            dir,
            reverse,
            key,
            json,
            at,
            raw,
        } => {
            let db = open_read(&dir)?;
            let writers = db.writers();
            let mut print = |node: &Node, step: Option<usize>| -> io::Result<()> {
                if json {
                    let mut v = node_json(&writers, node);
                    if let Some(step) = step {
                        v["step"] = json!(step);
                    }
                    writeln!(out, "{v}")
                } else {
                    let value = if node.deleted {
                        "(deleted)".to_string()
                    } else {
                        node.value_str().unwrap_or_default()
                    };
                    writeln!(
                        out,
                        "{}@{} {}\t{value}",
                        &hex::encode(writers[node.feed].key)[..12],
                        node.seq,
                        node.key
                    )
                }
            };
            let view = view(&db, at.as_deref(), raw)?;
            if let Some(key) = key {
                for (i, step) in view.key_history(&key).enumerate() {
                    for node in step? {
                        print(&node, Some(i))?;
                    }
                }
            } else {
                for node in view.history(reverse) {
                    print(&*node?, None)?;
                }
            }
        }
        Command::Diff {
            dir,
            from,
            prefix,
            json,
            raw,
        } => {
            let db = open_read(&dir)?;
            let older = view(&db, Some(&from), raw)?;
            for change in view(&db, None, raw)?.diff(&older, &prefix)? {
                print_change(&mut out, &change, json)?;
            }
        }
        Command::Watch {
            dir,
            prefix,
            live,
            raw,
        } => return watch(&dir, &prefix, live, raw),
        Command::Serve {
            dir,
            listen,
            live,
            max_connections,
            memory_budget,
            discovery,
        } => {
            let limits = swarm::Limits {
                connections: max_connections.max(1),
                budget: hyperdb::replicate::MemoryBudget::new(memory_budget.max(1) << 20),
            };
            return swarm::serve(&dir, listen.as_deref(), live, limits, &discovery);
        }
        Command::Demo { dir } => return demo(dir),
        Command::Feeds { dir } => {
            let db = open_read(&dir)?;
            let style = show::Style::new(io::stdout().is_terminal());
            show::print_feeds(&mut out, &db, &dir.display().to_string(), style)?;
            show::print_table(&mut out, &db, style)?;
        }
        Command::Explore { dir, raw } => {
            let db = open_read(&dir)?;
            drop(out);
            return explore::run(db, raw).map_err(Failure::from);
        }
        Command::Sync {
            dir,
            addr: Some(addr),
            live,
            ..
        } => return swarm::sync_with(&dir, &addr, live),
        Command::Sync {
            dir,
            addr: None,
            live,
            timeout,
            discovery,
        } => {
            let timeout = std::time::Duration::from_secs(timeout.max(1));
            return swarm::sync_found(&dir, live, timeout, &discovery);
        }
        Command::Repair { dir } => return repair(&mut out, &dir),
        Command::Authorized {
            dir,
            writer_key,
            raw,
        } => {
            let key = parse_key(&writer_key, "WRITERKEY")?;
            let db = open_read(&dir)?;
            let yes = if raw {
                db.is_authorized(&key)?
            } else {
                db.may_write(&key)?
            };
            writeln!(out, "{yes}")?;
            if !yes {
                return Err(Failure::not_found());
            }
        }
    }
    Ok(())
}

fn repair(out: &mut impl Write, dir: &Path) -> CliResult {
    let db = open(dir)?;
    db.sync()?;
    let writers = db.writers();
    let mut own_damage = 0;
    for (i, writer) in writers.iter().enumerate() {
        let report = db
            .with_feed_mut(i, |feed| feed.audit())
            .expect("a writer")
            .map_err(hyperdb::Error::from)?;
        let name = if writer.local { " (local)" } else { "" };
        write!(
            out,
            "{}{name}: {} blocks, {} verified",
            hex::encode(writer.key),
            writer.length,
            report.valid
        )?;
        if report.invalid > 0 {
            write!(out, ", {} damaged", report.invalid)?;
            if writer.local {
                own_damage += report.invalid;
            } else {
                write!(out, " (marked missing: the next sync fetches them again)")?;
            }
        }
        writeln!(out)?;
    }
    if own_damage > 0 {
        return Err(Failure {
            code: 3,
            message: format!(
                "{own_damage} block(s) of this replica's own feed are damaged: it cannot append without forking its feed"
            ),
            hint: Some(
                "reading still works; restore the folder from a backup, or make a new replica and authorize it".into(),
            ),
        });
    }
    writeln!(out, "{}: every stored block verifies", dir.display())?;
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn progress_options(live: bool) -> (ReplicateOptions, Option<indicatif::ProgressBar>) {
    let mut options = ReplicateOptions {
        live,
        ..Default::default()
    };
    if !io::stderr().is_terminal() {
        return (options, None);
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message("connecting");
    let shown = bar.clone();
    options.on_progress = Some(Arc::new(move |key: &[u8; 32], received, length| {
        shown.set_message(format!(
            "receiving feed {}: {received} blocks (feed length {length})",
            &hex::encode(key)[..12]
        ));
    }));
    (options, Some(bar))
}

fn print_summary(out: &mut impl Write, db: &DbReader, summary: &Summary) -> io::Result<()> {
    let writers = db.writers();
    if summary.total_received() == 0 && summary.sent == 0 {
        writeln!(
            out,
            "nothing exchanged: this replica and the peer already hold the same data for the {} feed(s) they share",
            summary.shared_feeds
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "received {} block(s), sent {}",
        summary.total_received(),
        summary.sent
    )?;
    for (key, blocks) in &summary.received {
        let mut marks = String::new();
        if let Some(w) = writers.iter().find(|w| w.key == *key) {
            if w.source {
                marks.push_str(" (source)");
            }
            if w.local {
                marks.push_str(" (local)");
            }
        }
        writeln!(out, "  {}{marks}: {blocks} block(s)", hex::encode(key))?;
    }
    Ok(())
}

fn values_of(nodes: &Option<Vec<Arc<Node>>>) -> Option<Vec<String>> {
    nodes.as_ref().map(|n| {
        n.iter()
            .map(|n| n.value_str().unwrap_or_default())
            .collect()
    })
}

fn print_change(out: &mut impl Write, change: &hyperdb::Change, json: bool) -> io::Result<()> {
    let (left, right) = (values_of(&change.left), values_of(&change.right));
    if json {
        return writeln!(
            out,
            "{}",
            json!({"key": change.key, "left": left, "right": right})
        );
    }
    match (left, right) {
        (Some(new), None) => writeln!(out, "+ {}\t{}", change.key, new.join(", ")),
        (None, Some(old)) => writeln!(out, "- {}\t{}", change.key, old.join(", ")),
        (Some(new), Some(old)) => writeln!(
            out,
            "~ {}\t{} -> {}",
            change.key,
            old.join(", "),
            new.join(", ")
        ),
        (None, None) => Ok(()),
    }
}

fn watch(dir: &Path, prefix: &str, live: Option<String>, raw: bool) -> CliResult {
    match live {
        // Watching a peer stores what arrives.
        Some(addr) => {
            let db = open(dir)?;
            runtime()?.block_on(async {
                let socket = tokio::net::TcpStream::connect(&addr)
                    .await
                    .map_err(|e| Failure {
                        code: 3,
                        message: format!("cannot connect to {addr}: {e}"),
                        hint: Some("is `hyperdb serve --live` running there?".into()),
                    })?;
                let options = ReplicateOptions {
                    live: true,
                    ..Default::default()
                };
                let session_db = db.clone();
                tokio::spawn(async move {
                    if let Err(e) = replicate(session_db, socket, options).await {
                        eprintln!("replication ended: {e}");
                    }
                });
                watch_changes(dir, prefix, raw, db, None::<fn() -> Result<Db, Failure>>).await
            })
        }
        // Watching the folder reads it again as other processes write it.
        None => {
            let db = open_read(dir)?;
            runtime()?.block_on(watch_changes(dir, prefix, raw, db, Some(|| open_read(dir))))
        }
    }
}

/// Prints every change under `prefix` as it happens (`raw`: as hyperdb
/// 3.5.0 shows them), reopening the database with `reopen` every half
/// second when given (to see other processes' writes).
async fn watch_changes<D: std::ops::Deref<Target = DbReader>>(
    dir: &Path,
    prefix: &str,
    raw: bool,
    mut db: D,
    reopen: Option<impl Fn() -> Result<D, Failure>>,
) -> CliResult {
    let changes = db.subscribe();
    changes.want_all();
    let (mut watch, mut version) = (db.watch(prefix)?, db.version()?);
    let mut out = io::stdout();
    writeln!(
        out,
        "watching {:?} in {} (Ctrl-C to stop)",
        prefix,
        dir.display()
    )?;
    out.flush()?;
    loop {
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                if let Some(reopen) = &reopen {
                    db = reopen()?;
                }
            }
        }
        if watch.changed(&db)? {
            let older = view(&db, Some(&hex::encode(&version)), raw)?;
            for change in view(&db, None, raw)?.diff(&older, prefix)? {
                print_change(&mut out, &change, false)?;
            }
            out.flush()?;
            version = db.version()?;
        }
    }
}

fn demo(dir: Option<PathBuf>) -> CliResult {
    let dir = dir.unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        std::env::temp_dir().join(format!("hyperdb-demo-{}-{stamp}", std::process::id()))
    });
    let (path1, path2) = (dir.join("db1"), dir.join("db2"));
    if path1.exists() || path2.exists() {
        return Err(Failure {
            code: 3,
            message: format!("{} already holds db1 or db2", dir.display()),
            hint: Some("give --dir an empty or new folder".into()),
        });
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let style = show::Style::new(stdout.is_terminal());
    writeln!(out, "The seed's example, in {}\n", dir.display())?;

    let db1 = Db::open(&path1)?;
    db1.put("example/first", b"db1 was here")?;
    db1.put("example/second", b"db1 was here")?;
    writeln!(
        out,
        "db1 created (db key {}), wrote example/first and example/second",
        hex::encode(db1.key())
    )?;
    let db2 = Db::open_with(
        &path2,
        OpenOptions {
            key: Some(*db1.key()),
            ..Default::default()
        },
    )?;
    db2.put("example/third", b"db2 was here")?;
    db2.put("example/second", b"db2 was here")?;
    writeln!(
        out,
        "db2 created as a replica (local key {}), wrote example/third and example/second",
        hex::encode(db2.local_key())
    )?;
    db1.authorize(db2.local_key())?;
    writeln!(out, "db1 authorized db2's local key (not the db key!)")?;

    let (db1, db2) = (db1, db2);
    let (s1, s2) = runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server_db = db1.clone();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await?;
            Ok::<_, Failure>(replicate(server_db, socket, ReplicateOptions::default()).await?)
        });
        let socket = tokio::net::TcpStream::connect(addr).await?;
        let client = replicate(db2.clone(), socket, ReplicateOptions::default()).await?;
        let server = server.await.map_err(|e| Failure {
            code: 3,
            message: e.to_string(),
            hint: None,
        })??;
        Ok::<_, Failure>((server, client))
    })?;
    writeln!(
        out,
        "replicated over TCP: db1 received {} block(s), db2 received {}\n",
        s1.total_received(),
        s2.total_received()
    )?;
    show::print_feeds(&mut out, &db1, "db 1", style)?;
    show::print_feeds(&mut out, &db2, "db 2", style)?;
    show::print_table(&mut out, &db2, style)?;
    writeln!(out)?;
    writeln!(
        out,
        "The two databases stay in {} and {}. Try:",
        path1.display(),
        path2.display()
    )?;
    writeln!(out, "  hyperdb get {} example/second", path2.display())?;
    writeln!(out, "  hyperdb info {}", path2.display())?;
    writeln!(out, "  hyperdb explore {}", path1.display())?;
    Ok(())
}

fn parse_op(line: &str) -> Result<Op, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let key = v["key"]
        .as_str()
        .ok_or("missing string field \"key\"")?
        .to_string();
    match v["type"].as_str() {
        Some("put") => {
            let value = v["value"]
                .as_str()
                .ok_or("a put needs a string field \"value\"")?;
            Ok(Op::Put {
                key,
                value: value.as_bytes().to_vec(),
            })
        }
        Some("del") => Ok(Op::Del { key }),
        _ => Err("\"type\" must be \"put\" or \"del\"".into()),
    }
}
