//! The pre-allocated ring buffer that carries messages between pipeline stages.
//!
//! - [`Sequence`]: cache-padded position counters with named memory orderings.
//! - [`WaitStrategy`]: busy-spin, yield, park, phased back-off.
//! - [`RingBuilder`], [`Producer`], [`Consumer`]: one producer, a graph of batch consumers.
//! - [`MultiProducer`]: several producers into one ring (the Disruptor's multi-producer
//!   sequencer; the protocol is described in `multi_producer.rs`).

mod multi_producer;
mod ring_buffer;
mod sequence;
mod sync;
mod wait;

pub use multi_producer::MultiProducer;
pub(crate) use ring_buffer::slots_allocated;
pub use ring_buffer::{
    Consumer, ConsumerId, Gauge, Halted, Poll, Producer, RingBuilder, TryPublishError,
};
pub use sequence::Sequence;
pub(crate) use wait::wait_until;
pub use wait::{wait_for, Check, Signal, WaitKey, WaitStrategy};
