//! The limits of the root crate (the dataflow runtime and its launcher), named in one
//! place.

use std::time::Duration;

/// The shortest peer timeout a job may set (`Config::peer_timeout`): the transport's own
/// minimum.
pub const PEER_TIMEOUT_MIN: Duration = weir_netstack::constants::PEER_TIMEOUT_MIN;

/// The longest peer timeout a job may set: an hour (a peer silent that long is gone).
pub const PEER_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// How long a launcher lets the other workers exit on their own once one failed (they
/// learn of it from the closed connections within moments) before it kills them: a
/// stopped or hung worker never exits.
pub const WORKER_EXIT_GRACE: Duration = Duration::from_secs(3);

/// Managed memory a combiner (the pre-aggregation before a keyed exchange) takes per task:
/// its table holds the groups it is folding, and when they no longer fit it hands them
/// on to the exchange and starts again, so more would not save work worth the memory
/// the final aggregations and joins could use.
pub const COMBINE_MEMORY_BYTES: usize = 4 << 20;
