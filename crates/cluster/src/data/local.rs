//! The node's own engine, as the data plane drives it: started with a commit gate, fed
//! records from a leader (or clients' messages while leading), halted, truncated and
//! restarted. Tracks where the journal's chain stands after the last record fed, and the
//! terms file.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel::engine::ResponseReceiver;
use keel::engine::{Metrics, Response, SubmitError};
use keel::journal::{DurableWaker, JournalWriter, Record};
use keel::ring::{Gauge, Sequence};
use keel::snapshot::SnapshotStore;
use keel::{Config, Engine, Processor, Submission, Submitter};

use super::install;
use super::log;
use super::terms::{TermStart, Terms};
use super::transfer::Received;
use super::DataError;

/// Journaled control kind of a term record (the first record of each leader's term).
pub const TERM_RECORD_KIND: u16 = 0xFF02;
/// Bytes of a term record's payload: term u64 LE, leader node id u64 LE.
pub const TERM_RECORD_BYTES: usize = 16;
// Why: a control kind, so the processor never sees it.
const _: () = assert!(TERM_RECORD_KIND >= keel::engine::CONTROL_KIND_MIN);

/// Where responses of the local engine go (a leader's clients; a follower's are dropped by
/// whoever receives them, or read for tests).
pub type ResponseSink = Arc<dyn Fn(Response<'_>) + Send + Sync>;

/// Builds a processor in its initial state (each engine start takes a new one).
pub type MakeProcessor<P> = Arc<dyn Fn() -> P + Send + Sync>;

/// The term and leader a term record's payload holds.
pub fn decode_term_record(payload: &[u8]) -> Option<(u64, u64)> {
    if payload.len() != TERM_RECORD_BYTES {
        return None;
    }
    let term = u64::from_le_bytes(payload[..8].try_into().ok()?);
    let leader = u64::from_le_bytes(payload[8..].try_into().ok()?);
    Some((term, leader))
}

/// A running engine and what the data plane keeps beside it.
pub struct Local<P: Processor> {
    config: Config,
    make: MakeProcessor<P>,
    sink: ResponseSink,
    engine: Option<Engine<P>>,
    submitter: Option<Submitter>,
    pump: Option<Pump>,
    input: Gauge,
    gate: Arc<Sequence>,
    waker: Option<DurableWaker>,
    metrics: Metrics,
    /// Last sequence fed (journaled or published) and the chain value after it.
    last_sequence: u64,
    chain: u32,
    terms: Terms,
}

impl<P: Processor> Local<P> {
    /// Starts the engine over `config`'s journal (recovering it) with a fresh commit gate.
    pub fn start(
        config: Config,
        make: MakeProcessor<P>,
        sink: ResponseSink,
    ) -> Result<Self, DataError> {
        // A snapshot install a crash interrupted is completed before the journal is opened.
        super::install::finish_pending(&config)?;
        let gate = Arc::new(Sequence::new(0));
        let mut gated = config.clone();
        gated.commit_gate = Some(gate.clone());
        let mut engine = Engine::start(gated, make())?;
        let (last_sequence, chain) = log::end_of(&config.journal_dir)?;
        debug_assert_eq!(last_sequence, engine.recovered_sequence());
        let terms = Terms::open(&config.journal_dir, last_sequence)?;
        let submitter = engine.take_submitter();
        let pump = engine
            .take_responses()
            .map(|receiver| Pump::start(receiver, sink.clone()));
        Ok(Local {
            input: engine.input_gauge().clone(),
            waker: engine.commit_gate_waker(),
            metrics: engine.metrics(),
            config,
            make,
            sink,
            engine: Some(engine),
            submitter,
            pump,
            gate,
            last_sequence,
            chain,
            terms,
        })
    }

    /// The engine's counters (durable and applied positions, read from any thread).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The journal directory.
    pub fn journal_dir(&self) -> &Path {
        &self.config.journal_dir
    }

    /// Last sequence fed and the chain value after it.
    pub fn end(&self) -> (u64, u32) {
        (self.last_sequence, self.chain)
    }

    /// Term of the last term record held.
    pub fn last_term(&self) -> u64 {
        self.terms.last_term()
    }

    /// The engine's input ring positions (what was published into it, by whoever holds the
    /// submitter).
    pub fn input_gauge(&self) -> &Gauge {
        &self.input
    }

    /// Hands the engine's submitter and response receiver to a client-facing server (a
    /// leader that serves): the response pump stops first. `None` if either is gone (taken
    /// already, or the engine is down). The next engine start (restart, truncation) has its
    /// own again.
    pub fn take_client_parts(&mut self) -> Option<(Submitter, ResponseReceiver)> {
        let receiver = self.pump.take()?.stop()?;
        let submitter = self.submitter.take()?;
        Some((submitter, receiver))
    }

    /// Advances the commit gate to `to` (never backwards) and wakes the engine.
    pub fn advance_gate(&self, to: u64) {
        if let Some(waker) = &self.waker {
            waker.advance(&self.gate, to);
        }
    }

    /// A handle to advance the gate from another thread.
    pub fn gate_handle(&self) -> (Arc<Sequence>, Option<DurableWaker>) {
        (self.gate.clone(), self.waker.clone())
    }

    /// Feeds one record received from a leader, already checked against the chain
    /// (`crc` is its CRC); records a term record in the terms file first.
    pub fn append_record(&mut self, record: &Record<'_>, crc: u32) -> Result<(), DataError> {
        if record.kind == TERM_RECORD_KIND {
            if let Some((term, _)) = decode_term_record(record.payload) {
                let row = TermStart {
                    term,
                    first_sequence: record.sequence,
                };
                self.terms.append(row)?;
            }
        }
        let submitter = self.submitter.as_mut().ok_or(DataError::EngineStopped)?;
        submitter.submit_record(record)?;
        self.last_sequence = record.sequence;
        self.chain = crc;
        Ok(())
    }

    /// Submits a client's message if the ring has room now (leader only; the caller checks,
    /// and retries on `Full` without holding the lock around this engine).
    pub fn try_submit(&mut self, to: Submission, payload: &[u8]) -> Result<u64, SubmitError> {
        let submitter = self.submitter.as_mut().ok_or(SubmitError::Stopped)?;
        submitter.try_submit(to, payload)
    }

    /// Appends this term's term record (term, leader id) and records it in the terms file;
    /// returns its sequence.
    pub fn append_term_record(&mut self, term: u64, leader_id: u64) -> Result<u64, DataError> {
        let mut payload = [0u8; TERM_RECORD_BYTES];
        payload[..8].copy_from_slice(&term.to_le_bytes());
        payload[8..].copy_from_slice(&leader_id.to_le_bytes());
        let to = Submission {
            kind: TERM_RECORD_KIND,
            ..Submission::default()
        };
        let submitter = self.submitter.as_mut().ok_or(DataError::EngineStopped)?;
        let sequence = submitter.published() + 1;
        self.terms.append(TermStart {
            term,
            first_sequence: sequence,
        })?;
        let published = submitter.submit(to, &payload)?;
        assert_eq!(
            published, sequence,
            "the submitter is the ring's only producer"
        );
        Ok(sequence)
    }

    /// Waits (bounded) until the journal holds every record published, then re-reads its end
    /// from the files: the position a POSITION or PROBE answer describes.
    pub fn settle(&mut self, timeout: Duration) -> Result<(), DataError> {
        let published = self.submitter.as_ref().map_or(0, Submitter::published);
        let deadline = Instant::now() + timeout;
        while self.metrics.durable_sequence() < published {
            if Instant::now() >= deadline {
                return Err(DataError::Timeout("the journal to catch up"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let (last, chain) = log::end_of(&self.config.journal_dir)?;
        self.last_sequence = last;
        self.chain = chain;
        Ok(())
    }

    /// Halts the engine at once (nothing waits on the gate), then starts it again from its
    /// journal: a deposed leader's clean start as a follower.
    pub fn restart(&mut self) -> Result<(), DataError> {
        self.halt()?;
        self.reopen()
    }

    /// Halts the engine, removes every record after `sequence` from the journal and the
    /// terms file, quarantines snapshots beyond it, and starts the engine again.
    pub fn truncate_after(&mut self, sequence: u64) -> Result<(), DataError> {
        self.halt()?;
        let dir = self.config.journal_dir.clone();
        JournalWriter::truncate_after(&dir, sequence)?;
        let store = SnapshotStore::open(&self.config.snapshot_dir, self.config.snapshot_retain)?;
        let moved = store.quarantine_after(sequence)?;
        if !moved.is_empty() {
            tracing::warn!(
                ?moved,
                sequence,
                "snapshots beyond the truncation quarantined"
            );
        }
        self.terms.cut_after(sequence)?;
        self.reopen()
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> &Path {
        &self.config.snapshot_dir
    }

    /// The largest snapshot state the engine restores.
    pub fn max_state_bytes(&self) -> u64 {
        self.config.snapshot_max_state_bytes
    }

    /// Builds processors in their initial state.
    pub fn make(&self) -> MakeProcessor<P> {
        self.make.clone()
    }

    /// Halts the engine, installs a checked snapshot in place of the journal and the
    /// snapshots (moved aside, never deleted: `install`), and starts the engine again from it.
    pub(crate) fn install_snapshot(&mut self, received: Received) -> Result<(), DataError> {
        self.halt()?;
        install::install(&self.config, received)?;
        self.reopen()
    }

    fn reopen(&mut self) -> Result<(), DataError> {
        let fresh = Local::start(self.config.clone(), self.make.clone(), self.sink.clone())?;
        *self = fresh;
        Ok(())
    }

    /// Stops the engine at once (`Engine::halt`) and returns the processor.
    pub fn halt(&mut self) -> Result<Option<P>, DataError> {
        self.submitter = None;
        let processor = match self.engine.take() {
            Some(engine) => Some(engine.halt()?),
            None => None,
        };
        if let Some(pump) = self.pump.take() {
            let _ = pump.stop();
        }
        Ok(processor)
    }
}

/// Longest park of the response pump between looks at its stop flag.
const PUMP_PARK: Duration = Duration::from_millis(2);

/// The thread that hands the engine's responses to the sink until stopped (then it gives the
/// receiver back) or the engine stops.
struct Pump {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<ResponseReceiver>>,
}

impl Pump {
    fn start(mut receiver: ResponseReceiver, sink: ResponseSink) -> Pump {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("keel-data-responses".into())
            .spawn(move || loop {
                if stopped.load(Ordering::Acquire) {
                    return Some(receiver);
                }
                let deadline = Some(Instant::now() + PUMP_PARK);
                let poll = receiver.poll(deadline, |r| sink(r));
                if matches!(poll, keel::ring::Poll::Closed | keel::ring::Poll::Halted) {
                    return None;
                }
            })
            .expect("spawn the response pump");
        Pump { stop, thread }
    }

    /// Stops the thread; the receiver back unless the engine's output ended.
    fn stop(self) -> Option<ResponseReceiver> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().ok().flatten()
    }
}

impl<P: Processor> Drop for Local<P> {
    fn drop(&mut self) {
        if self.engine.is_some() {
            let _ = self.halt();
        }
    }
}
