//! The master's event loop: services, their processes, and what happens
//! when a process exits, a signal arrives or qctl asks for something.
//!
//! Every change goes through one loop (events in, a `reconcile` pass every
//! tick), so there is no shared state between tasks: child watchers and the
//! control socket only send [`Event`]s.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use postern_config::{Config, Params, Service};
use postern_daemon::CommonArgs;
use postern_daemon::date::unix_now;
use postern_daemon::inherit::ListenKind;
use postern_ipc::control::{
    ControlReply, ControlRequest, MasterStatus, ProcessStatus, ServiceStatus,
};
use postern_ipc::status::{CertificateInfo, ChildStatus, MasterToChild};
use postern_ipc::{Connection, Protocol};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::control;
use crate::lock::PidLock;
use crate::spawn::{self, SpawnRequest};

const TICK: Duration = Duration::from_millis(100);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `qctl restart` waits beyond the drain for the replacement.
const RESTART_GRACE: Duration = Duration::from_secs(30);

/// Something the loop must handle.
#[derive(Debug)]
pub enum Event {
    Exited {
        service: String,
        pid: u32,
        status: std::io::Result<ExitStatus>,
    },
    Status {
        service: String,
        pid: u32,
        status: ChildStatus,
    },
    Control {
        request: ControlRequest,
        reply: oneshot::Sender<ControlReply>,
    },
    Terminate(&'static str),
    Reload,
}

#[derive(Debug)]
struct Process {
    generation: u64,
    started_unix: i64,
    /// Reported itself available: from then on it has served, and its
    /// death says nothing about whether the command can start.
    ready: bool,
    sessions: u32,
    draining: bool,
    /// Told to stop (restart, reload, shutdown): its exit is expected.
    retiring: Option<Instant>,
    last_seen: Instant,
    to_child: mpsc::UnboundedSender<MasterToChild>,
}

#[derive(Debug)]
struct PendingRestart {
    generation: u64,
    reply: Option<oneshot::Sender<ControlReply>>,
    deadline: Instant,
}

#[derive(Debug)]
struct ServiceState {
    def: Service,
    params: Params,
    program: PathBuf,
    kind: ListenKind,
    listeners: Vec<OwnedFd>,
    /// Unix socket paths to remove when the service goes away.
    socket_paths: Vec<PathBuf>,
    procs: BTreeMap<u32, Process>,
    generation: u64,
    restarts: u32,
    last_exit: Option<String>,
    throttled_until: Option<(Instant, i64)>,
    /// Reported by its processes: only one may run at a time.
    exclusive: bool,
    /// Removed by a reload: stop, never respawn, forget when empty.
    removed: bool,
    certificates: Vec<CertificateInfo>,
    pending_restart: Option<PendingRestart>,
    next_wakeup: Option<Instant>,
}

struct Supervisor {
    args: CommonArgs,
    config: Config,
    queue_directory: PathBuf,
    child_args: Vec<String>,
    services: BTreeMap<String, ServiceState>,
    events: mpsc::UnboundedSender<Event>,
    started_unix: i64,
    stopping: Option<Instant>,
}

pub async fn run(args: CommonArgs, config: Config) -> anyhow::Result<()> {
    let params = config.main().clone();
    let queue_directory = params.path("queue_directory");
    prepare_directories(&queue_directory, &params)?;
    let _lock = PidLock::acquire(&queue_directory)?;

    let control_path = control::socket_path(&queue_directory);
    let _ = std::fs::remove_file(&control_path);
    let control_listener = tokio::net::UnixListener::bind(&control_path)
        .with_context(|| format!("bind {}", control_path.display()))?;

    let (events, mut inbox) = mpsc::unbounded_channel();
    let mut sup = Supervisor {
        child_args: args.to_child_args(),
        args,
        queue_directory: queue_directory.clone(),
        services: BTreeMap::new(),
        events: events.clone(),
        started_unix: unix_now(),
        stopping: None,
        config,
    };
    let defs = sup.config.services.clone();
    for def in defs {
        let state = sup.new_service(def)?;
        sup.services.insert(state.def.name.clone(), state);
    }
    tracing::info!(
        "daemon started -- version {}, configuration {}",
        env!("CARGO_PKG_VERSION"),
        sup.config.file.display()
    );

    let control_task = tokio::spawn(control::serve(control_listener, events.clone()));
    spawn_signal_watchers(events.clone())?;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            Some(event) = inbox.recv() => sup.handle(event),
            _ = tick.tick() => {}
        }
        sup.reconcile();
        if sup.stopping.is_some() && sup.services.values().all(|s| s.procs.is_empty()) {
            break;
        }
    }
    control_task.abort();
    let _ = std::fs::remove_file(&control_path);
    for s in sup.services.values() {
        for p in &s.socket_paths {
            let _ = std::fs::remove_file(p);
        }
    }
    tracing::info!("master exiting");
    Ok(())
}

fn spawn_signal_watchers(events: mpsc::UnboundedSender<Event>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = term.recv() => Event::Terminate("terminating on signal 15"),
                _ = int.recv() => Event::Terminate("terminating on signal 2"),
                _ = hup.recv() => Event::Reload,
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// `queue_directory` with `private/` (0700), `public/` (0755), `queue/`
/// (0700, qmgr's store), `maildrop/` (3733: any user may leave a file
/// for pickup, nobody else may list them, each file takes the directory's
/// group so that pickup may read it) and `corrupt/` (0700, files pickup
/// could not decode), owned by mail_owner when the master runs as root,
/// as Postfix's queue subdirectories are owned by its mail_owner.
fn prepare_directories(queue_directory: &Path, params: &Params) -> anyhow::Result<()> {
    std::fs::create_dir_all(queue_directory)
        .with_context(|| format!("create queue_directory {}", queue_directory.display()))?;
    let owner = if nix::unistd::Uid::effective().is_root() {
        Some(postern_daemon::privs::mail_owner_ids(
            &params.get("mail_owner"),
        )?)
    } else {
        None
    };
    for (name, mode) in [
        ("private", 0o700),
        ("public", 0o755),
        ("queue", 0o700),
        (postern_ipc::maildrop::DIR, 0o3733),
        ("corrupt", 0o700),
    ] {
        let dir = queue_directory.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        // Owner first: a chown may clear the setgid bit.
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(&dir, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", dir.display()))?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    Ok(())
}

/// "exit status 1" or "killed by signal 9", as Postfix's master words it.
fn describe_exit(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "exited".to_string(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

fn signal_process(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

impl Supervisor {
    fn new_service(&self, def: Service) -> anyhow::Result<ServiceState> {
        let params = self.config.params_for(&def.name);
        let endpoints = def.endpoints(&params)?;
        let socket_paths = endpoints
            .iter()
            .filter_map(|e| match e {
                postern_config::Endpoint::Unix(p) => Some(p.clone()),
                postern_config::Endpoint::Inet(_) => None,
            })
            .collect();
        let (kind, listeners) =
            spawn::bind_endpoints(&endpoints).with_context(|| format!("service {}", def.name))?;
        let program = params.path("daemon_directory").join(&def.command);
        let now = Instant::now();
        Ok(ServiceState {
            next_wakeup: def.wakeup.map(|w| now + w),
            def,
            params,
            program,
            kind,
            listeners,
            socket_paths,
            procs: BTreeMap::new(),
            generation: 0,
            restarts: 0,
            last_exit: None,
            throttled_until: None,
            exclusive: false,
            removed: false,
            certificates: Vec::new(),
            pending_restart: None,
        })
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Exited {
                service,
                pid,
                status,
            } => self.exited(&service, pid, status),
            Event::Status {
                service,
                pid,
                status,
            } => self.status(&service, pid, status),
            Event::Control { request, reply } => self.control(request, reply),
            Event::Terminate(why) => {
                tracing::info!("{why}");
                self.stop();
            }
            Event::Reload => {
                if let Err(e) = self.reload() {
                    tracing::error!("{e}");
                }
            }
        }
    }

    fn status(&mut self, service: &str, pid: u32, status: ChildStatus) {
        let Some(state) = self.services.get_mut(service) else {
            return;
        };
        let Some(proc) = state.procs.get_mut(&pid) else {
            return;
        };
        proc.last_seen = Instant::now();
        match status {
            ChildStatus::Ready { exclusive, .. } => {
                proc.ready = true;
                state.exclusive |= exclusive;
            }
            ChildStatus::Heartbeat { sessions } => proc.sessions = sessions,
            ChildStatus::Draining { sessions } => {
                proc.draining = true;
                proc.sessions = sessions;
            }
            ChildStatus::Info { certificates } => state.certificates = certificates,
        }
    }

    fn exited(&mut self, service: &str, pid: u32, status: std::io::Result<ExitStatus>) {
        let stopping = self.stopping.is_some();
        let Some(state) = self.services.get_mut(service) else {
            return;
        };
        let Some(proc) = state.procs.remove(&pid) else {
            return;
        };
        let how = describe_exit(&status);
        let clean = matches!(&status, Ok(s) if s.success());
        if proc.retiring.is_some() || stopping {
            if !clean {
                tracing::warn!("process {} pid {pid} {how}", state.program.display());
            }
        } else {
            // An exit nobody asked for. As Postfix's master does, only a
            // process that dies before it served (here: before it was
            // ready) says the command is broken; one that served is
            // replaced by the next reconcile pass however often it dies.
            state.restarts += 1;
            state.last_exit = Some(how.clone());
            if !clean {
                tracing::warn!("process {} pid {pid} {how}", state.program.display());
            }
            if !proc.ready && state.throttled_until.is_none() {
                throttle(state, Instant::now());
            }
        }
        if state.removed && state.procs.is_empty() {
            for p in &state.socket_paths {
                let _ = std::fs::remove_file(p);
            }
            self.services.remove(service);
        }
    }

    /// Starts, replaces, retires and kills processes as the state asks.
    fn reconcile(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            self.reconcile_service(&name, now);
        }
        if let Some(deadline) = self.stopping
            && now >= deadline
        {
            for state in self.services.values() {
                for pid in state.procs.keys() {
                    tracing::warn!("pid {pid} still running after drain_timeout -- killing it");
                    signal_process(*pid, Signal::SIGKILL);
                }
            }
            // Once: further ticks wait for the exits.
            self.stopping = Some(now + Duration::from_secs(3600));
        }
    }

    fn reconcile_service(&mut self, name: &str, now: Instant) {
        let stopping = self.stopping.is_some();
        let heartbeat_timeout = self.config.main().time("heartbeat_timeout");
        let drain_timeout = self.config.main().time("drain_timeout");
        let Some(state) = self.services.get_mut(name) else {
            return;
        };

        // Liveness: silent or never-ready processes are killed and replaced.
        for (pid, proc) in &state.procs {
            let silent = now.duration_since(proc.last_seen);
            let overdue = match proc.retiring {
                Some(since) => now.duration_since(since) > drain_timeout + Duration::from_secs(5),
                None => silent > heartbeat_timeout,
            };
            if overdue {
                let what = if proc.retiring.is_some() {
                    "still draining after drain_timeout"
                } else if proc.ready {
                    "stopped sending heartbeats"
                } else {
                    "did not become ready"
                };
                tracing::warn!(
                    "process {} pid {pid} {what} -- killing it",
                    state.program.display()
                );
                signal_process(*pid, Signal::SIGKILL);
            }
        }

        if let Some((until, _)) = state.throttled_until
            && now >= until
        {
            state.throttled_until = None;
        }

        // A graceful restart completes when the new generation is ready.
        if let Some(pending) = &mut state.pending_restart {
            let new: Vec<&Process> = state
                .procs
                .values()
                .filter(|p| p.generation == pending.generation)
                .collect();
            let all_ready =
                new.len() as u32 >= state.def.process_limit && new.iter().all(|p| p.ready);
            if all_ready {
                for (pid, proc) in state.procs.iter_mut() {
                    if proc.generation < pending.generation && proc.retiring.is_none() {
                        proc.retiring = Some(now);
                        signal_process(*pid, Signal::SIGTERM);
                    }
                }
                if let Some(reply) = pending.reply.take() {
                    let _ = reply.send(ControlReply::Done {
                        message: format!("service {name}: restarted"),
                    });
                }
                state.pending_restart = None;
            } else if now >= pending.deadline {
                if let Some(reply) = pending.reply.take() {
                    let _ = reply.send(ControlReply::Error {
                        message: format!(
                            "service {name}: replacement processes did not become ready{}",
                            state
                                .last_exit
                                .as_ref()
                                .map(|e| format!(" (last exit: {e})"))
                                .unwrap_or_default()
                        ),
                    });
                }
                state.pending_restart = None;
            }
        }

        // Wakeups (master(5) wakeup) to ready processes.
        if let (Some(every), Some(at)) = (state.def.wakeup, state.next_wakeup)
            && now >= at
        {
            for proc in state
                .procs
                .values()
                .filter(|p| p.ready && p.retiring.is_none())
            {
                let _ = proc.to_child.send(MasterToChild::Wakeup);
            }
            state.next_wakeup = Some(now + every);
        }

        if stopping || state.removed || state.throttled_until.is_some() {
            return;
        }
        // An exclusive service never runs two generations at once.
        if state.exclusive
            && state
                .procs
                .values()
                .any(|p| p.generation < state.generation)
        {
            return;
        }
        let current = state
            .procs
            .values()
            .filter(|p| p.generation == state.generation && p.retiring.is_none())
            .count() as u32;
        for _ in current..state.def.process_limit {
            if let Err(e) = self.spawn_one(name) {
                tracing::warn!("{e:#}");
                if let Some(state) = self.services.get_mut(name) {
                    throttle(state, now);
                }
                return;
            }
        }
    }

    fn spawn_one(&mut self, name: &str) -> anyhow::Result<()> {
        let state = self.services.get_mut(name).expect("service exists");
        let spawned = spawn::spawn(&SpawnRequest {
            program: &state.program,
            args: &self.child_args,
            service: name,
            kind: state.kind,
            privileged: state.def.privileged,
            listeners: &state.listeners,
        })?;
        let pid = spawned.pid;
        let (to_child, from_master) = mpsc::unbounded_channel();
        let now = Instant::now();
        state.procs.insert(
            pid,
            Process {
                generation: state.generation,
                started_unix: unix_now(),
                ready: false,
                sessions: 0,
                draining: false,
                retiring: None,
                last_seen: now,
                to_child,
            },
        );
        watch_child(name.to_string(), spawned, from_master, self.events.clone());
        Ok(())
    }

    fn control(&mut self, request: ControlRequest, reply: oneshot::Sender<ControlReply>) {
        let answer = match request {
            ControlRequest::Status => ControlReply::Status(self.master_status()),
            ControlRequest::Restart { service } => return self.restart(&service, reply),
            ControlRequest::Reload => match self.reload() {
                Ok(message) => ControlReply::Done { message },
                Err(e) => ControlReply::Error {
                    message: format!("{e:#}"),
                },
            },
            ControlRequest::Stop => {
                tracing::info!("terminating on request from qctl");
                self.stop();
                ControlReply::Done {
                    message: "stopping".into(),
                }
            }
            ControlRequest::Flush => {
                // Like `postqueue -f`: wake the queue manager to rescan.
                let mut woken = 0;
                for state in self.services.values().filter(|s| s.def.command == "qmgr") {
                    for proc in state.procs.values().filter(|p| p.ready) {
                        woken += usize::from(proc.to_child.send(MasterToChild::Wakeup).is_ok());
                    }
                }
                if woken > 0 {
                    ControlReply::Done {
                        message: "queue flush requested".into(),
                    }
                } else {
                    ControlReply::Error {
                        message: "no qmgr process is running".into(),
                    }
                }
            }
        };
        let _ = reply.send(answer);
    }

    fn restart(&mut self, service: &str, reply: oneshot::Sender<ControlReply>) {
        let drain = self.config.main().time("drain_timeout");
        let Some(state) = self.services.get_mut(service) else {
            let _ = reply.send(ControlReply::Error {
                message: format!("no such service: {service}"),
            });
            return;
        };
        if state.pending_restart.is_some() {
            let _ = reply.send(ControlReply::Error {
                message: format!("service {service}: a restart is already in progress"),
            });
            return;
        }
        let now = Instant::now();
        state.restarts += 1;
        begin_restart(state, now, Some(reply), now + drain + RESTART_GRACE);
        tracing::info!("service {service}: restarting");
    }

    fn stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let drain = self.config.main().time("drain_timeout");
        let now = Instant::now();
        self.stopping = Some(now + drain + Duration::from_secs(2));
        for state in self.services.values_mut() {
            // New clients are refused from now on; children keep their copies
            // until they finish draining.
            state.listeners.clear();
            for (pid, proc) in state.procs.iter_mut() {
                if proc.retiring.is_none() {
                    proc.retiring = Some(now);
                    signal_process(*pid, Signal::SIGTERM);
                }
            }
            if let Some(pending) = state.pending_restart.take()
                && let Some(reply) = pending.reply
            {
                let _ = reply.send(ControlReply::Error {
                    message: "the master is stopping".into(),
                });
            }
        }
    }

    /// Re-reads master.toml and applies the differences.
    fn reload(&mut self) -> anyhow::Result<String> {
        if self.stopping.is_some() {
            anyhow::bail!("reload refused: the master is stopping");
        }
        let new = crate::load(&self.args).map_err(|e| {
            anyhow::anyhow!("reload refused, keeping the running configuration: {e}")
        })?;
        for w in &new.warnings {
            tracing::warn!("{w}");
        }
        let new_queue_directory = new.main().path("queue_directory");
        if new_queue_directory != self.queue_directory {
            tracing::warn!(
                "queue_directory changed to {}: restart the master to use it",
                new_queue_directory.display()
            );
        }
        tracing::info!(
            "reload -- version {}, configuration {}",
            env!("CARGO_PKG_VERSION"),
            new.file.display()
        );
        let now = Instant::now();
        let old = std::mem::replace(&mut self.config, new);
        drop(old);
        let wanted: BTreeMap<String, Service> = self
            .config
            .services
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();

        for (name, state) in self.services.iter_mut() {
            if !wanted.contains_key(name) && !state.removed {
                tracing::info!("service {name}: removed by reload");
                state.removed = true;
                state.listeners.clear();
                retire_old(state, now);
                state.generation += 1;
            }
        }
        let mut changed = Vec::new();
        for (name, def) in wanted {
            let params = self.config.params_for(&name);
            match self.services.get_mut(&name) {
                Some(state) if !state.removed => {
                    let same_endpoint = state
                        .def
                        .endpoints(&state.params)
                        .ok()
                        .map(|e| format!("{e:?}"))
                        == def.endpoints(&params).ok().map(|e| format!("{e:?}"));
                    let same_program =
                        state.program == params.path("daemon_directory").join(&def.command);
                    // Parameters reach running daemons by SIGHUP; only a
                    // new command line, endpoint or process count needs
                    // new processes.
                    if state.def == def && same_program && same_endpoint {
                        state.params = params;
                        for pid in state.procs.keys() {
                            signal_process(*pid, Signal::SIGHUP);
                        }
                        continue;
                    }
                    changed.push((name, def, params, same_endpoint));
                }
                _ => {
                    let state = self.new_service(def)?;
                    tracing::info!("service {name}: added by reload");
                    self.services.insert(name, state);
                }
            }
        }
        for (name, def, params, same_endpoint) in changed {
            if !same_endpoint {
                let fresh = self.new_service(def.clone())?;
                let state = self.services.get_mut(&name).expect("service exists");
                state.listeners = fresh.listeners;
                state.kind = fresh.kind;
                state.socket_paths = fresh.socket_paths;
            }
            let state = self.services.get_mut(&name).expect("service exists");
            state.program = params.path("daemon_directory").join(&def.command);
            state.next_wakeup = def.wakeup.map(|w| now + w);
            state.def = def;
            state.params = params;
            begin_restart(state, now, None, now + Duration::from_secs(3600));
            tracing::info!("service {name}: changed by reload, restarting");
        }
        Ok("configuration reloaded".into())
    }

    fn master_status(&self) -> MasterStatus {
        let now = Instant::now();
        MasterStatus {
            pid: std::process::id(),
            started_unix: self.started_unix,
            config_file: self.config.file.display().to_string(),
            queue_directory: self.queue_directory.display().to_string(),
            services: self
                .services
                .values()
                .map(|s| ServiceStatus {
                    name: s.def.name.clone(),
                    kind: s.kind.as_str().to_string(),
                    listen: s.def.listen.clone(),
                    command: s.def.command.clone(),
                    process_limit: s.def.process_limit,
                    processes: s
                        .procs
                        .iter()
                        .map(|(pid, p)| ProcessStatus {
                            pid: *pid,
                            started_unix: p.started_unix,
                            ready: p.ready,
                            sessions: p.sessions,
                            draining: p.draining || p.retiring.is_some(),
                        })
                        .collect(),
                    restarts: s.restarts,
                    last_exit: s.last_exit.clone(),
                    throttled_until_unix: s
                        .throttled_until
                        .filter(|(until, _)| *until > now)
                        .map(|(_, unix)| unix),
                    certificates: s.certificates.clone(),
                })
                .collect(),
        }
    }
}

/// Leaves a service alone for service_throttle_time, as Postfix's master
/// does when a command cannot start.
fn throttle(state: &mut ServiceState, now: Instant) {
    let pause = state.params.time("service_throttle_time");
    tracing::warn!(
        "{}: bad command startup -- throttling",
        state.program.display()
    );
    state.throttled_until = Some((now + pause, unix_now() + pause.as_secs() as i64));
}

/// Starts a new generation that replaces the running processes once it is
/// ready (an exclusive service's old ones stop first). A throttled service
/// gets a fresh chance.
fn begin_restart(
    state: &mut ServiceState,
    now: Instant,
    reply: Option<oneshot::Sender<ControlReply>>,
    deadline: Instant,
) {
    state.generation += 1;
    state.throttled_until = None;
    if state.exclusive {
        retire_old(state, now);
    }
    state.pending_restart = Some(PendingRestart {
        generation: state.generation,
        reply,
        deadline,
    });
}

/// Asks every process of older generations to drain and exit.
fn retire_old(state: &mut ServiceState, now: Instant) {
    let current = state.generation;
    for (pid, proc) in state.procs.iter_mut() {
        if proc.generation <= current && proc.retiring.is_none() {
            proc.retiring = Some(now);
            signal_process(*pid, Signal::SIGTERM);
        }
    }
}

/// One task per child: the status conversation and the wait for its exit.
fn watch_child(
    service: String,
    spawned: spawn::Spawned,
    mut from_master: mpsc::UnboundedReceiver<MasterToChild>,
    events: mpsc::UnboundedSender<Event>,
) {
    let spawn::Spawned {
        mut child,
        pid,
        status,
    } = spawned;
    let status_events = events.clone();
    let status_service = service.clone();
    tokio::spawn(async move {
        let mut conn = Connection::new(status);
        if let Err(e) = conn
            .server_hello(Protocol::MasterStatus, HELLO_TIMEOUT)
            .await
        {
            tracing::warn!("service {status_service} pid {pid}: status channel: {e}");
            return;
        }
        let (read_half, write_half) = conn.into_inner().into_split();
        tokio::spawn(async move {
            let mut writer = write_half;
            while let Some(msg) = from_master.recv().await {
                if postern_ipc::write_frame(&mut writer, &msg).await.is_err() {
                    return;
                }
            }
        });
        let mut reader = read_half;
        loop {
            match postern_ipc::read_frame::<_, ChildStatus>(&mut reader).await {
                Ok(Some(status)) => {
                    let event = Event::Status {
                        service: status_service.clone(),
                        pid,
                        status,
                    };
                    if status_events.send(event).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("service {status_service} pid {pid}: status channel: {e}");
                    return;
                }
            }
        }
    });
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = events.send(Event::Exited {
            service,
            pid,
            status,
        });
    });
}
