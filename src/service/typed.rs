//! `Typed`: a `Service` as a byte-level `Processor`.

use super::{
    Command, Rejection, Service, REFUSED_UNDECODABLE, REFUSED_UNKNOWN_KIND,
    REFUSED_UNSUPPORTED_VERSION, RESERVED_CODE_MIN,
};
use crate::codec::CodecError;
use crate::engine::{Message, Outcome, Output, Processor};
use crate::service::Invalid;
use crate::snapshot::StateError;

/// A [`Service`] as a [`Processor`]: decodes each message into the service's command, applies
/// it, and encodes the reply or rejection straight into the response (`docs/SERVICES.md`).
/// Give it to [`Engine::start`](crate::Engine::start); [`Engine::shutdown`](crate::Engine::shutdown)
/// hands it back, and [`into_inner`](Typed::into_inner) the service. It dereferences to the
/// service, so a host calls the service's own methods on it directly.
#[derive(Debug, Default, Clone)]
pub struct Typed<S> {
    service: S,
}

impl<S: Service> Typed<S> {
    /// Wraps `service`, which must be in its initial (empty) state when given to
    /// `Engine::start` (recovery restores the rest).
    pub fn new(service: S) -> Self {
        Typed { service }
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The service, mutably (for hosts that drive it directly, as a replay tool does).
    pub fn service_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.service
    }
}

impl<S> std::ops::Deref for Typed<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.service
    }
}

impl<S> std::ops::DerefMut for Typed<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.service
    }
}

impl<S: Service> Processor for Typed<S> {
    #[inline]
    fn apply(&mut self, message: &Message<'_>, out: &mut Output<'_>) -> Outcome {
        let header = &message.header;
        let command = match S::Command::decode(header.kind, header.version, message.payload) {
            Ok(command) => command,
            Err(invalid) => {
                return match S::Rejection::refused(invalid) {
                    Some(rejection) => reject::<S>(&rejection, out),
                    None => Outcome::Rejected(refusal_code(invalid)),
                }
            }
        };
        match self.service.apply(command, header) {
            Ok(reply) => match S::write_reply(&reply, out) {
                Ok(()) => Outcome::Accepted,
                Err(rejection) => {
                    out.clear();
                    reject::<S>(&rejection, out)
                }
            },
            Err(rejection) => reject::<S>(&rejection, out),
        }
    }

    fn state_hash(&self) -> u64 {
        self.service.state_hash()
    }

    fn schema_version(&self) -> u32 {
        self.service.schema_version()
    }

    fn save_state(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.service.save_state(out)
    }

    fn load_state(&mut self, schema_version: u32, bytes: &[u8]) -> Result<(), StateError> {
        self.service.load_state(schema_version, bytes)
    }

    fn prefault(&mut self) {
        self.service.prefault();
    }
}

/// Writes `rejection` into the response and returns its outcome.
#[inline]
fn reject<S: Service>(rejection: &S::Rejection, out: &mut Output<'_>) -> Outcome {
    let code = rejection.code();
    // In every build, so a journal replays to the same outputs in any build: the panic is
    // contained and answered `Failed`.
    assert!(
        (1..RESERVED_CODE_MIN).contains(&code),
        "rejection code {code:#x} is outside 1..0xFFFF_FF00"
    );
    S::write_rejection(rejection, out);
    Outcome::Rejected(code)
}

/// The reason code keel sends for a message refused before `apply`.
pub(super) fn refusal_code(invalid: Invalid) -> u32 {
    match invalid {
        Invalid::UnknownKind => REFUSED_UNKNOWN_KIND,
        Invalid::UnsupportedVersion => REFUSED_UNSUPPORTED_VERSION,
        Invalid::Undecodable => REFUSED_UNDECODABLE,
    }
}

/// The refusal a reserved reason code stands for, if it is one.
pub(super) fn refusal_of(code: u32) -> Option<Invalid> {
    match code {
        REFUSED_UNKNOWN_KIND => Some(Invalid::UnknownKind),
        REFUSED_UNSUPPORTED_VERSION => Some(Invalid::UnsupportedVersion),
        REFUSED_UNDECODABLE => Some(Invalid::Undecodable),
        _ => None,
    }
}
