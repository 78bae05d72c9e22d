//! The two services built on keel's public API, exactly as an outside user would build them:
//! a bookstore and an exchange. Each is a [`Processor`] plus an [`App`] description that lets
//! the `keel` command, the benchmark harness and the replay tool drive it generically.

pub mod bookstore;
pub mod exchange;
pub mod json;
pub mod token;
pub mod units;

use keel::engine::{Message, Processor, Response};
use keel::service::Invalid;

/// One message ready to submit: kind, version, encoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Message kind.
    pub kind: u16,
    /// Version of the kind's encoding.
    pub version: u16,
    /// Payload encoded with `keel::codec`.
    pub payload: Vec<u8>,
}

/// A field `keel replay find --where NAME=VALUE` searches by: its name and the JSON keys that
/// hold it in [`App::describe_message`] and [`App::describe_response`] descriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchField {
    /// The name given on the command line (`order`, `customer`).
    pub name: &'static str,
    /// Keys holding the value, at any depth of a message's or its response's description
    /// (e.g. `order_id`, `maker_order` and `taker_order` for an order id).
    pub keys: &'static [&'static str],
}

/// What the `keel` command, the bench harness and the replay tool need from an application,
/// beyond being a [`Processor`].
pub trait App: Processor + Default {
    /// Short name used on the command line (`bookstore`, `exchange`).
    const NAME: &'static str;

    /// Parses a command given on the shell (e.g. `["order", "7", "3", "1", "1999"]`) into a
    /// message. The error is a usage text.
    fn parse_command(words: &[String]) -> Result<Command, String>;

    /// Checks, before a message enters the ring, that it is a known kind and version and that
    /// its payload decodes: the network thread refuses anything else, so the business logic
    /// never sees an invalid message. Pure and cheap.
    fn validate(kind: u16, version: u16, payload: &[u8]) -> Result<(), Invalid>;

    /// Usage text for `parse_command`: one line per command.
    fn command_help() -> &'static str;

    /// A journaled message as JSON (for `keel replay dump`), in the shape of [`json`]:
    /// `{"type": REQUEST, ...fields}`.
    fn describe_message(message: &Message<'_>) -> serde_json::Value;

    /// A response as JSON, in the shape of [`json::response`]; `request_kind` is the kind of
    /// the message it answers.
    fn describe_response(request_kind: u16, response: &Response<'_>) -> serde_json::Value;

    /// The fields messages can be searched by (`keel replay find --where`, `--order`,
    /// `--customer`); the first that matches a name is used. Default: none.
    fn searchable_fields() -> &'static [SearchField] {
        &[]
    }

    /// A summary of the whole state as JSON (for `keel replay state`).
    fn describe_state(&self) -> serde_json::Value;

    /// The canonical seeded workload: message `i` (0-based) of a reproducible stream. The
    /// same `(seed, i)` always gives the same command.
    fn workload(seed: u64, i: u64) -> Command;

    /// Messages to submit before the workload (e.g. create books or instruments and fund
    /// accounts); may be empty.
    fn setup(seed: u64) -> Vec<Command>;
}
