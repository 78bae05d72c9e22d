//! The engine: recovers the state from the journal, then runs the pipeline
//! producer → input ring → journaler → business logic → output ring on its own threads.
//!
//! Startup: open (and repair the torn tail of) the journal, replay every journaled message
//! through the processor with the same code as live apply, then start the threads with the
//! ring numbering continuing after the last journaled sequence. Shutdown: close the input,
//! let both stages drain everything published, sync the journal, join, hand the processor back.

mod accept_loss;
mod affinity;
mod client;
mod config;
mod dedup;
mod journal_gate;
mod journaler;
mod logic;
mod message;
mod metrics;
mod processor;
mod recovery;
mod replica;
mod reply_board;
mod responses;
mod session_epoch;
mod slots;
mod submit;
mod wake;

pub use accept_loss::{accept_loss, LossAccepted};
pub use affinity::Cores;
pub use client::{Client, ClientError, Reply, Ticket};
pub use config::{ApplyMode, Config, ConfigError, Pinning, Producers};
pub use dedup::ExactlyOnce;
pub use journaler::JournalSink;
pub use logic::{apply_message, Applied};
pub(crate) use message::{Envelope, ResponseSlot};
pub use message::{
    Message, MessageHeader, Response, ResponseHeader, Status, CONTROL_KIND_MIN, CONTROL_SNAPSHOT,
};
pub use metrics::{Log2Histogram, Metrics, MetricsSnapshot};
pub use processor::{Outcome, Output, OutputFull, Processor};
pub use recovery::{message_of, Recovered};
pub use responses::ResponseReceiver;
pub use submit::{now_ns, Submission, SubmitError, Submitter};
pub use wake::{WakeHook, WakeHookAlreadySet};

use crate::error::Error;
use crate::journal::{DurableWaker, JournalError, JournalSyncHandle, RealIo};
use crate::ring::{Consumer, Gauge, MultiProducer, RingBuilder, Sequence, Signal};
use crate::snapshot::{Retention, SnapshotStore, SnapshotWriter};
use dedup::DedupTable;
#[cfg(feature = "net")]
pub(crate) use dedup::CLIENT_SESSION_FLAG;
use journal_gate::{JournalGate, JournalerExit};
use logic::{Responses, Snapshots};
use metrics::{Positions, Recorders, TimedIo};
use reply_board::{ReplyBoard, StageExit};
use slots::{SlotSource, Slots};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use submit::Input;
use wake::WakeSlot;

/// A running engine around one [`Processor`].
pub struct Engine<P: Processor> {
    submitter: Option<Submitter>,
    responses: Option<ResponseReceiver>,
    /// With `Producers::Multi`: the handle [`Engine::client`] clones; it closes the input.
    client: Option<Client>,
    journaler: Option<JoinHandle<Result<(), JournalError>>>,
    logic: Option<JoinHandle<P>>,
    journaled: Arc<Sequence>,
    applied: Arc<Sequence>,
    gauge: Gauge,
    recovered: Recovered,
    snapshot_writer: Option<SnapshotWriter>,
    /// The snapshot replica's thread (`Engine::start_with_replica`).
    replica: Option<JoinHandle<()>>,
    metrics: Metrics,
    /// Wakes the threads gated on `Config::commit_gate` (none without a gate).
    gate_waker: Option<DurableWaker>,
    /// Halts the input and output rings (`Engine::halt`).
    halts: Vec<Arc<dyn Fn() + Send + Sync>>,
}

impl<P: Processor> Engine<P> {
    /// Opens the journal in `config.journal_dir`, replays it into `processor`, and starts the
    /// pipeline. `processor` must be in its initial (empty) state.
    pub fn start(config: Config, processor: P) -> Result<Self, Error> {
        Self::open(config, processor, None)
    }

    /// Like [`Engine::start`], with a snapshot replica: `replica` builds a second processor in
    /// its initial state (called once, on the replica's own thread). That processor starts
    /// from the snapshot recovery restored and follows the journal on its own thread, and
    /// every snapshot (interval, request, shutdown) is taken from it at the same sequences,
    /// with the same bytes and the same binding to the journal. The business-logic thread
    /// then never pauses to capture a state (`snapshot_capture_ns` stays 0). It costs a
    /// second copy of the state in memory and a second apply of every message on another
    /// core; a replica that falls behind delays only its snapshots. See docs/SNAPSHOTS.md.
    pub fn start_with_replica(
        config: Config,
        processor: P,
        replica: impl FnOnce() -> P + Send + 'static,
    ) -> Result<Self, Error> {
        Self::open(config, processor, Some(Box::new(replica)))
    }

    fn open(
        config: Config,
        mut processor: P,
        replica: Option<replica::MakeReplica<P>>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let slots = Slots::allocate_in_background(&config)?;
        let open_started = Instant::now();
        let recorders = Arc::new(Recorders::default());
        let io = Arc::new(TimedIo::new(Arc::new(RealIo), recorders.clone()));
        let mut journal_config = config.journal_config();
        journal_config.service_name = processor.name().to_owned();
        journal_config.service_schema_version = processor.schema_version();
        let store = SnapshotStore::open(&config.snapshot_dir, config.snapshot_retain)?
            .with_max_state_bytes(config.snapshot_max_state_bytes);
        let mut dedup = DedupTable::new(config.dedup_limits());
        // The snapshots are judged before the journal is modified (torn tail cut, orphans
        // removed): a refusal leaves every file as it was.
        let state = (&mut processor, &mut dedup);
        let (opening, judged, begun) =
            recovery::open_journal(&config, &journal_config, io, &store, state)?;
        opening.refuse_unfinishable()?;
        let scanned = open_started.elapsed();
        let last = opening.last_sequence();
        let state = (&mut processor, &mut dedup);
        let recovered = recovery::recover(&config, &store, &judged, state, (last, begun))?;
        // After the replay, which reads only records up to `last`: the writer's preparation
        // (the spare segment, the reopened segment's rest) then runs on the preparer thread
        // while the engine goes live, not on a core the replay needs.
        let finish_started = Instant::now();
        let journal = opening.finish()?;
        let recovered = Recovered {
            journal_open: scanned + finish_started.elapsed(),
            ..recovered
        };
        tracing::info!(
            snapshot = recovered.snapshot_sequence,
            replayed = recovered.replayed,
            last = recovered.last_sequence,
            journal_open_ms = recovered.journal_open.as_millis() as u64,
            snapshot_load_ms = recovered.snapshot_load.as_millis() as u64,
            replay_ms = recovered.replay.as_millis() as u64,
            "recovered"
        );
        // Under the writer's lock: this run's session ids differ from every earlier run's.
        let session_epoch = session_epoch::advance(&config.journal_dir)?;
        let slots = slots.wait()?;
        let replica = replica.map(|make| {
            let restored = recovered.snapshot_sequence;
            let snapshot = judged.into_iter().find(|j| j.file.sequence == restored);
            (make, replica_start(&config, &store, snapshot))
        });
        let parts = (journal, recorders);
        let mut engine = Self::launch(
            config,
            (processor, dedup),
            parts,
            (recovered, replica),
            store,
            slots,
        )?;
        if let Some(submitter) = engine.submitter.as_mut() {
            submitter.set_session_epoch(session_epoch);
        }
        Ok(engine)
    }

    /// Starts the pipeline over any [`JournalSink`] without replaying anything: `processor`
    /// must already hold the state as of `last_sequence`, the last sequence in `journal`.
    /// `Config::journal_retention` is not applied: the sink owns its files.
    pub fn start_with_sink<J: JournalSink>(
        mut config: Config,
        processor: P,
        journal: J,
        last_sequence: u64,
    ) -> Result<Self, Error> {
        config.validate()?;
        config.journal_retention = crate::journal::JournalRetention::Keep;
        let store = SnapshotStore::open(&config.snapshot_dir, config.snapshot_retain)?
            .with_max_state_bytes(config.snapshot_max_state_bytes);
        let recovered = Recovered {
            last_sequence,
            ..Recovered::default()
        };
        let slots = Slots::allocate(&config)?;
        let parts = (journal, Arc::default());
        let dedup = DedupTable::new(config.dedup_limits());
        let state = (processor, dedup);
        Self::launch(config, state, parts, (recovered, None), store, slots)
    }

    fn launch<J: JournalSink>(
        config: Config,
        processor: (P, DedupTable),
        (mut journal, recorders): (J, Arc<Recorders>),
        (recovered, replica): (Recovered, Option<Replica<P>>),
        store: SnapshotStore,
        slots: Slots,
    ) -> Result<Self, Error> {
        let last = recovered.last_sequence;
        let signal = Arc::new(Signal::default());
        let durable = journal.durable();
        let (wake, journaler_releases, gate_waker) = wire_wakes(&config, &mut journal, &signal);
        let (mut input_slots, output_slots) = slots.into_parts();
        let ring = input_ring(&config, last, &signal, durable.as_ref());
        let (input, clients, journal_input, logic_input) =
            build_input(&config, ring, last, &mut input_slots);
        let exit = Arc::new(JournalerExit::default());
        let journal_now = (
            journal_input.sequence(),
            durable.clone(),
            journal.sync_handle(),
        );
        let (snapshot_writer, snapshots, replica) =
            start_snapshots(&config, store, (&recovered, replica), journal_now, &exit)?;
        // Durable: the syncer's sequence under group commit, else the journaler's own.
        let journaled = durable.unwrap_or_else(|| journal_input.sequence());
        let applied = logic_input.sequence();
        let (responses, receiver, board) =
            build_responses(&config, last, signal, &journaled, &wake, output_slots);
        let halts = halt_handles(&logic_input, receiver.as_ref());
        let metrics = Metrics::new(
            recorders.clone(),
            Positions {
                input: input.gauge(),
                journaled: journal_input.sequence(),
                durable: journaled.clone(),
                applied: applied.clone(),
                output: responses.output_gauge(),
                replica: replica.as_ref().map(|(_, position)| position.clone()),
            },
            snapshot_writer.stats(),
        );
        let journaler = spawn_journaler(
            &config,
            (journal, journal_input, recorders.clone()),
            journaler_releases,
            (exit, StageExit(board.clone())),
        )?;
        let client = clients
            .zip(board.clone())
            .map(|(producer, board)| Client::new(producer, board, config.max_message_bytes));
        let parts = LogicParts {
            input: logic_input,
            responses,
            snapshots,
            wake,
            recorders,
            exit: StageExit(board),
        };
        let logic = spawn_logic(&config, processor, parts)?;
        Ok(Engine {
            gauge: input.gauge(),
            submitter: Some(
                Submitter::new(input, config.max_message_bytes).with_metrics(metrics.clone()),
            ),
            responses: receiver,
            client,
            journaler: Some(journaler),
            logic: Some(logic),
            journaled,
            applied,
            recovered,
            snapshot_writer: Some(snapshot_writer),
            replica: replica.map(|(thread, _)| thread),
            metrics,
            gate_waker,
            halts,
        })
    }

    /// The engine's own submitter, for submitting from the thread that owns the engine.
    ///
    /// # Panics
    /// If the submitter was taken with [`Engine::take_submitter`].
    pub fn submitter(&mut self) -> &mut Submitter {
        self.submitter.as_mut().expect("submitter was taken")
    }

    /// Takes the engine's submitter to publish from another thread. With `Producers::Single`
    /// the engine stops accepting input when it is dropped, and [`Engine::shutdown`] waits for
    /// that; with `Producers::Multi` `shutdown` closes the input itself (the submitter's later
    /// calls return `Stopped`).
    pub fn take_submitter(&mut self) -> Option<Submitter> {
        self.submitter.take()
    }

    /// Takes the response receiver. Whoever holds it should keep reading until it reports
    /// `Closed`: while it is held and unread, the business logic stalls when the output ring
    /// fills (back-pressure). Dropping it instead makes the engine discard responses from then
    /// on (see [`ResponseReceiver`]); it never blocks `submit` for good.
    ///
    /// `None` once taken, with `discard_responses`, and always on an engine with
    /// `Producers::Multi`: there each reply goes to the [`Client`] that sent the message (see
    /// [`Engine::client`]), and there is no output ring.
    pub fn take_responses(&mut self) -> Option<ResponseReceiver> {
        self.responses.take()
    }

    /// A new handle for submitting from any thread and getting each message's own reply
    /// (clone it freely). Needs `Config::producers = Producers::Multi`; with the default
    /// `Producers::Single` it returns [`ClientError::SingleProducer`]. Replies then go only
    /// to clients: [`Engine::take_responses`] returns `None`, and messages from the
    /// [`Submitter`] get none. [`Engine::shutdown`] closes the input for every client (their
    /// later calls return [`ClientError::Stopped`]); calls already submitted get their replies.
    pub fn client(&self) -> Result<Client, ClientError> {
        self.client.clone().ok_or(ClientError::SingleProducer)
    }

    /// Takes the submitter and the response receiver together, or neither (`None` if either
    /// was taken): for a server that serves the engine whole.
    #[cfg(feature = "net")]
    pub(crate) fn take_submitter_and_responses(&mut self) -> Option<(Submitter, ResponseReceiver)> {
        if self.submitter.is_none() || self.responses.is_none() {
            return None;
        }
        Some((self.submitter.take()?, self.responses.take()?))
    }

    /// Gives back what [`Self::take_submitter_and_responses`] took (a server that failed to
    /// start).
    #[cfg(feature = "net")]
    pub(crate) fn restore_submitter_and_responses(
        &mut self,
        submitter: Submitter,
        responses: ResponseReceiver,
    ) {
        debug_assert!(self.submitter.is_none() && self.responses.is_none());
        self.submitter = Some(submitter);
        self.responses = Some(responses);
    }

    /// The last sequence the journal held at start (recovered and replayed).
    pub fn recovered_sequence(&self) -> u64 {
        self.recovered.last_sequence
    }

    /// What startup recovery did: snapshot restored, messages replayed.
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// Asks for a snapshot right after everything submitted so far, through the ring (a
    /// journaled control message). Uses the engine's own submitter.
    pub fn request_snapshot(&mut self) -> Result<u64, SubmitError> {
        self.submitter().request_snapshot()
    }

    /// A read-only handle on the engine's counters (positions, batch sizes, sync and apply
    /// times, rejections, snapshots, and the network server's once one serves the engine).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The last journaled sequence (durable under the flush policy): the local journal's
    /// position, never held back by `Config::commit_gate`. From another thread, read it
    /// through [`Engine::metrics`] ([`Metrics::durable_sequence`]).
    pub fn journaled_sequence(&self) -> u64 {
        self.journaled.load_acquire()
    }

    /// The waker of `Config::commit_gate`: whoever advances the gate calls
    /// [`DurableWaker::advance`] with it (or stores the gate and calls [`DurableWaker::wake`]),
    /// which wakes the business logic and, in apply-ahead mode, the responses' owner. `None`
    /// when the engine has no gate.
    pub fn commit_gate_waker(&self) -> Option<DurableWaker> {
        self.gate_waker.clone()
    }

    /// The last applied sequence.
    pub fn applied_sequence(&self) -> u64 {
        self.applied.load_acquire()
    }

    /// Input ring positions and fill level.
    pub fn input_gauge(&self) -> &Gauge {
        &self.gauge
    }

    /// Stops cleanly: closes the input (with `Producers::Single` the taken submitter, if any,
    /// must be dropped too; with `Producers::Multi` the input closes for every producer),
    /// drains every published message through journal and business logic, syncs the journal,
    /// joins the threads and returns the processor with its final state.
    pub fn shutdown(mut self) -> Result<P, Error> {
        self.stop()
    }

    /// Stops at once, without waiting for what is published but not applied: the input and
    /// output rings are halted, the journaler syncs what it has appended and ends, the
    /// business logic ends after the message it is applying, and the processor comes back
    /// with the state as of [`Metrics::applied_sequence`]. Everything journaled stays in the
    /// journal (a later [`Engine::start`] replays it). For a replicated engine whose
    /// `Config::commit_gate` will not release the rest (a deposed leader, a follower to be
    /// truncated); it never waits on the gate. Responses not yet read are dropped, clients
    /// still waiting get [`ClientError::Stopped`], no shutdown snapshot is taken, and a
    /// snapshot not yet bound to the journal is dropped. In apply-ahead mode the processor
    /// may hold messages the gate had not released: discard it unless the gate caught up.
    pub fn halt(mut self) -> Result<P, Error> {
        for halt in &self.halts {
            halt();
        }
        self.stop()
    }

    fn stop(&mut self) -> Result<P, Error> {
        self.submitter = None;
        if let Some(client) = self.client.take() {
            client.close_input();
        }
        if let Some(mut receiver) = self.responses.take() {
            receiver.drain_until_closed();
        }
        let journal_result = self.journaler.take().map(JoinHandle::join);
        let logic_result = self.logic.take().map(JoinHandle::join);
        // The journaler has ended: the replica applies the rest of the journal, takes the
        // shutdown snapshot, and drops its sender, so the writer below can finish.
        if let Some(Err(_)) = self.replica.take().map(JoinHandle::join) {
            tracing::error!("the snapshot replica panicked; the journal holds everything");
        }
        if let Some(writer) = self.snapshot_writer.take() {
            writer.finish();
        }
        match journal_result {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(e))) => return Err(e.into()),
            Some(Err(_)) => return Err(Error::ThreadPanicked("journaler")),
        }
        match logic_result {
            Some(Ok(processor)) => Ok(processor),
            Some(Err(_)) => Err(Error::ThreadPanicked("logic")),
            None => Err(Error::Stopped),
        }
    }
}

impl<P: Processor> Drop for Engine<P> {
    fn drop(&mut self) {
        if self.logic.is_some() {
            // A gate may never release what is published: dropped, a gated engine halts
            // (everything journaled stays) instead of waiting for it.
            if self.gate_waker.is_some() {
                self.halts.iter().for_each(|halt| halt());
            }
            if let Err(e) = self.stop() {
                tracing::error!(error = %e, "engine stopped with an error");
            }
        }
    }
}

/// Who wakes the responses' owner (the [`ResponseReceiver`]'s hook, through the returned
/// slot), and the commit gate's waker (`Config::commit_gate`). The business logic always does, after each batch it published. In apply-ahead mode a
/// response also waits for its message to be journaled, so whoever advances that gate wakes
/// too: the group-commit syncer when the journal has a durable sequence (via the
/// [`DurableWaker`] installed here), else the journaler stage (the returned `Some`).
fn wire_wakes<J: JournalSink>(
    config: &Config,
    journal: &mut J,
    signal: &Arc<Signal>,
) -> (Arc<WakeSlot>, Option<Arc<WakeSlot>>, Option<DurableWaker>) {
    let wake = Arc::new(WakeSlot::default());
    let gate_waker = commit_gate_waker(config, signal, &wake);
    let gated = config.mode == ApplyMode::ApplyAhead && !config.discard_responses;
    if journal.durable().is_none() {
        return (wake.clone(), gated.then_some(wake), gate_waker);
    }
    let mut waker = DurableWaker::new(signal.clone());
    if gated {
        let releases = wake.clone();
        waker = waker.with_hook(Arc::new(move || releases.wake()));
    }
    journal.set_durable_waker(waker);
    (wake, None, gate_waker)
}

/// What `Engine::halt` halts: the input ring (through the business logic's consumer) and the
/// output ring when there is one (a business logic waiting for room there).
fn halt_handles(
    logic: &Consumer<Envelope>,
    receiver: Option<&ResponseReceiver>,
) -> Vec<Arc<dyn Fn() + Send + Sync>> {
    let output = receiver.map(ResponseReceiver::halt_handle);
    std::iter::once(logic.halt_handle()).chain(output).collect()
}

/// What releases a response in apply-ahead mode: the journal's sequence, and the commit gate
/// when there is one. Nothing in durable mode (a response is released when written).
fn release_gates(config: &Config, journaled: &Arc<Sequence>) -> Vec<Arc<Sequence>> {
    match config.mode {
        ApplyMode::Durable => Vec::new(),
        ApplyMode::ApplyAhead => std::iter::once(journaled.clone())
            .chain(config.commit_gate.clone())
            .collect(),
    }
}

/// Whom the holder of `config.commit_gate` wakes when it advances: the ring signal the
/// business logic parks on, and in apply-ahead mode (where the gate releases responses) the
/// responses' owner too. `None` without a gate.
fn commit_gate_waker(
    config: &Config,
    signal: &Arc<Signal>,
    wake: &Arc<WakeSlot>,
) -> Option<DurableWaker> {
    config.commit_gate.as_ref()?;
    let waker = DurableWaker::new(signal.clone());
    if config.mode == ApplyMode::ApplyAhead && !config.discard_responses {
        let releases = wake.clone();
        return Some(waker.with_hook(Arc::new(move || releases.wake())));
    }
    Some(waker)
}

/// Starts the snapshot thread: it writes into `store` what it is handed once the journal
/// holds it durably (the journaler's appended and the journal's durable sequences, its sync
/// handle, and how the journaler ended), then applies `config`'s journal retention.
fn spawn_snapshot_writer(
    config: &Config,
    store: SnapshotStore,
    (appended, durable, sync): (
        Arc<Sequence>,
        Option<Arc<Sequence>>,
        Option<JournalSyncHandle>,
    ),
    exit: &Arc<JournalerExit>,
) -> Result<SnapshotWriter, Error> {
    let gate = JournalGate {
        appended,
        durable,
        commit: config.commit_gate.clone(),
        flush: config.flush,
        sync,
        journal_dir: config.journal_dir.clone(),
        exit: exit.clone(),
    };
    let retention = Retention {
        journal_dir: config.journal_dir.clone(),
        policy: config.journal_retention.clone(),
    };
    Ok(SnapshotWriter::spawn(store, gate, retention)?)
}

/// Starts the snapshot thread and whoever takes the snapshots (the business logic: the
/// returned plan; or the replica, started here: its thread), after `recovered`.
fn start_snapshots<P: Processor>(
    config: &Config,
    store: SnapshotStore,
    (recovered, replica): (&Recovered, Option<Replica<P>>),
    journal_now: (
        Arc<Sequence>,
        Option<Arc<Sequence>>,
        Option<JournalSyncHandle>,
    ),
    exit: &Arc<JournalerExit>,
) -> Result<(SnapshotWriter, Option<Snapshots>, Option<ReplicaThread>), Error> {
    let writer = spawn_snapshot_writer(config, store, journal_now, exit)?;
    let plan = snapshot_plan(config, recovered, &writer);
    let (snapshots, replica) = snapshot_taker(plan, replica, exit)?;
    Ok((writer, snapshots, replica))
}

/// A snapshot replica to start: its processor's maker and where it starts.
type Replica<P> = (replica::MakeReplica<P>, replica::ReplicaStart);

/// A running snapshot replica: its thread and the last sequence it applied.
type ReplicaThread = (JoinHandle<()>, Arc<Sequence>);

/// Where a snapshot replica starts: `snapshot`, the one recovery restored (`None`: none).
fn replica_start(
    config: &Config,
    store: &SnapshotStore,
    snapshot: Option<crate::snapshot::Judged>,
) -> replica::ReplicaStart {
    replica::ReplicaStart {
        store: store.clone(),
        snapshot,
        journal_dir: config.journal_dir.clone(),
        max_response_bytes: config.max_response_bytes,
        prefault: config.prefault_state,
        dedup: config.dedup_limits(),
    }
}

/// Who takes the snapshots `plan` describes: the business logic (the returned `Some`), or the
/// snapshot replica, whose thread this starts (returned with its applied position).
fn snapshot_taker<P: Processor>(
    plan: Snapshots,
    replica: Option<Replica<P>>,
    exit: &Arc<JournalerExit>,
) -> Result<(Option<Snapshots>, Option<ReplicaThread>), Error> {
    let Some(replica) = replica else {
        return Ok((Some(plan), None));
    };
    let position = Arc::new(Sequence::new(0));
    let thread = spawn_replica(replica, plan, (exit.clone(), position.clone()))?;
    Ok((None, Some((thread, position))))
}

/// Starts the snapshot replica's thread, taking the snapshots `plan` describes; it follows
/// the journal until the journaler has ended (`exit`) and publishes how far it applied in
/// `position`.
fn spawn_replica<P: Processor>(
    (make, start): Replica<P>,
    mut plan: Snapshots,
    (exit, position): (Arc<JournalerExit>, Arc<Sequence>),
) -> Result<JoinHandle<()>, Error> {
    plan.replica = true;
    spawn("keel-replica", move || {
        replica::run(make, start, plan, exit, position)
    })
}

/// When and where the business logic captures snapshots, after `recovered`.
fn snapshot_plan(config: &Config, recovered: &Recovered, writer: &SnapshotWriter) -> Snapshots {
    Snapshots {
        sender: writer.sender(),
        interval_messages: config.snapshot_interval_messages,
        on_shutdown: config.snapshot_on_shutdown,
        // Nothing new since the state was last saved? Then shutdown need not save it again.
        last_sequence: if recovered.replayed == 0 {
            recovered.last_sequence
        } else {
            recovered.snapshot_sequence
        },
        size_hint_bytes: 4096,
        replica: false,
    }
}

/// Starts the journaler thread over `journal` and its input consumer; it records how it ended
/// in `exit` (for the snapshot thread) and tells the reply board, a panic included.
fn spawn_journaler<J: JournalSink>(
    config: &Config,
    (journal, input, recorders): (J, Consumer<Envelope>, Arc<Recorders>),
    releases: Option<Arc<WakeSlot>>,
    (exit, stage_exit): (Arc<JournalerExit>, StageExit),
) -> Result<JoinHandle<Result<(), JournalError>>, Error> {
    let interval = journaler::tick_interval(config.flush);
    let (cores, core) = (Cores::detect(), config.pinning.journaler_core);
    spawn("keel-journaler", move || {
        let _ended = stage_exit;
        let _on_panic = exit.guard();
        cores.pin_current(core, "journaler");
        let counters = &recorders.journal;
        let ended = journaler::run(journal, input, interval, releases, counters);
        match ended {
            Ok(journaler::Ended::Synced) => exit.synced(),
            _ => exit.stopped(),
        }
        ended.map(|_| ())
    })
}

/// The most messages the journaler or the business logic takes from the input ring before it
/// advances its sequence. Uncapped, a stage that fell a whole ring behind (the logic, released
/// by one group commit of tens of thousands of messages) held every slot until it had handled
/// all of them, so the producer, the journaler and the syncer stood idle in turn: under a
/// closed-loop load the syncer was idle half the time (docs/BENCHMARKS.md). 4096 messages take
/// the logic some 0.2–0.4 ms.
const STAGE_MAX_BATCH: usize = 4096;

/// The input ring: the journaler first, then the business logic, which (in durable mode) is
/// gated on the journaler, on the journal's own durable sequence when it has one, and on the
/// commit gate when there is one.
fn input_ring(
    config: &Config,
    last: u64,
    signal: &Arc<Signal>,
    durable: Option<&Arc<Sequence>>,
) -> RingBuilder {
    let mut durable: Vec<Arc<Sequence>> = durable.into_iter().cloned().collect();
    durable.extend(config.commit_gate.clone());
    let mut input = RingBuilder::new(config.ring_capacity)
        .wait_strategy(config.wait)
        .start_after(last)
        .signal(signal.clone());
    let journal_id = input.add_consumer(&[]);
    match config.mode {
        ApplyMode::Durable => input.add_consumer_gated(&[journal_id], &durable),
        ApplyMode::ApplyAhead => input.add_consumer(&[]),
    };
    input
}

/// The input ring built for `config.producers`: the `Submitter`'s end, the clients' handle
/// (several producers only), and the journaler's and the business logic's consumers.
fn build_input(
    config: &Config,
    ring: RingBuilder,
    last: u64,
    slots: &mut SlotSource<Envelope>,
) -> (
    Input,
    Option<MultiProducer<Envelope>>,
    Consumer<Envelope>,
    Consumer<Envelope>,
) {
    let (input, clients, mut consumers) = match config.producers {
        Producers::Single => {
            let (producer, consumers) = ring.build(|| slots.take());
            (Input::Single(producer), None, consumers)
        }
        Producers::Multi => {
            let (producer, consumers) = ring.build_multi(|| slots.take());
            (
                Input::Multi(producer.clone(), last),
                Some(producer),
                consumers,
            )
        }
    };
    let mut logic = consumers.pop().expect("logic consumer");
    let mut journal = consumers.pop().expect("journal consumer");
    logic.set_max_batch(STAGE_MAX_BATCH);
    journal.set_max_batch(STAGE_MAX_BATCH);
    (input, clients, journal, logic)
}

/// Where responses go: the output ring and its receiver (one producer), or the reply board
/// (several), which the wake hook then notifies.
fn build_responses(
    config: &Config,
    last: u64,
    signal: Arc<Signal>,
    journaled: &Arc<Sequence>,
    wake: &Arc<WakeSlot>,
    slots: SlotSource<ResponseSlot>,
) -> (Responses, Option<ResponseReceiver>, Option<Arc<ReplyBoard>>) {
    if config.producers == Producers::Single {
        let (responses, receiver) = build_output(config, last, signal, journaled, wake, slots);
        return (responses, receiver, None);
    }
    // Apply-ahead: a reply is released once the journal (and the commit gate) hold its message.
    let gate = release_gates(config, journaled);
    let count = reply_board::slots_for(config.ring_capacity);
    let board = Arc::new(ReplyBoard::new(count, slots, gate));
    let notify = board.clone();
    wake.set(Arc::new(move || notify.notify()))
        .expect("a new wake slot has no hook");
    let scratch = vec![0; config.max_response_bytes].into();
    (Responses::Board(board.clone(), scratch), None, Some(board))
}

/// What the business-logic thread runs on.
struct LogicParts {
    input: Consumer<Envelope>,
    responses: Responses,
    snapshots: Option<Snapshots>,
    wake: Arc<WakeSlot>,
    recorders: Arc<Recorders>,
    exit: StageExit,
}

/// Starts the business-logic thread and returns once the state is pre-faulted (if asked):
/// messages submitted meanwhile would queue behind it (a panic in `prefault` also ends the
/// wait; `shutdown` reports it).
fn spawn_logic<P: Processor>(
    config: &Config,
    (processor, dedup): (P, DedupTable),
    parts: LogicParts,
) -> Result<JoinHandle<P>, Error> {
    let (cores, core) = (Cores::detect(), config.pinning.logic_core);
    let prefault = config.prefault_state;
    let (prefaulted, ready) = std::sync::mpsc::sync_channel::<()>(1);
    let logic = spawn("keel-logic", move || {
        let _ended = parts.exit;
        cores.pin_current(core, "logic");
        let mut processor = processor;
        if prefault {
            processor.prefault();
        }
        drop(prefaulted); // ends `ready.recv()` below
        let LogicParts {
            input,
            responses,
            snapshots,
            wake,
            recorders,
            ..
        } = parts;
        logic::run(
            (processor, dedup),
            input,
            responses,
            snapshots,
            (wake, &recorders.logic),
        )
    })?;
    let _ = ready.recv();
    Ok(logic)
}

fn build_output(
    config: &Config,
    last: u64,
    signal: Arc<Signal>,
    journaled: &Arc<Sequence>,
    wake: &Arc<WakeSlot>,
    mut slots: SlotSource<ResponseSlot>,
) -> (Responses, Option<ResponseReceiver>) {
    if config.discard_responses {
        return (
            Responses::Discard(vec![0; config.max_response_bytes].into()),
            None,
        );
    }
    let mut output = RingBuilder::new(config.output_ring_capacity)
        .wait_strategy(config.wait)
        .start_after(last)
        .signal(signal);
    // Apply-ahead: a response leaves only after its message is journaled (and committed).
    // Output sequence == input sequence (one response per message), so gating on the
    // journaler's sequence is exact.
    output.add_consumer_gated(&[], &release_gates(config, journaled));
    let (producer, mut consumers) = output.build(|| slots.take());
    let consumer = consumers.pop().expect("response consumer");
    let receiver = ResponseReceiver::new(consumer, wake.clone(), config.max_response_bytes);
    (
        Responses::Ring(producer, config.max_response_bytes),
        Some(receiver),
    )
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, Error> {
    Ok(std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)?)
}
