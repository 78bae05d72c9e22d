//! The pre-allocated ring buffer that carries messages between pipeline stages.
//!
//! - [`Sequence`]: cache-padded position counters with named memory orderings.
//! - [`WaitStrategy`]: busy-spin, yield, park, phased back-off.
//! - [`RingBuilder`], [`Producer`], [`Consumer`]: one producer, a graph of batch consumers.

mod ring_buffer;
mod sequence;
mod sync;
mod wait;

pub(crate) use ring_buffer::slots_allocated;
pub use ring_buffer::{
    Consumer, ConsumerId, Gauge, Halted, Poll, Producer, RingBuilder, TryPublishError,
};
pub use sequence::Sequence;
pub use wait::{wait_for, Check, Signal, WaitKey, WaitStrategy};
