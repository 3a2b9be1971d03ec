//! Pull sources, one file per kind: the hub reads an application's outbox table
//! ([`outbox`]), a NATS JetStream durable consumer ([`nats`]) or a RabbitMQ queue ([`amqp`]).
//! Each implements [`switchyard_core::source::pull::Puller`]; [`pullers`] registers them.

pub mod amqp;
pub mod nats;
pub mod outbox;

use std::sync::Arc;

use switchyard_core::source::SourceKind;
use switchyard_core::source::pull::Pullers;

/// The puller of every kind this release reads from. Sources are written by admins and only
/// read from their origin, so the destinations' address guard does not apply to them.
pub fn pullers() -> Pullers {
    Pullers::new()
        .with(SourceKind::Outbox, Arc::new(outbox::OutboxPuller::new()))
        .with(SourceKind::Nats, Arc::new(nats::NatsPuller::new()))
        .with(SourceKind::Amqp, Arc::new(amqp::AmqpPuller::new()))
}
