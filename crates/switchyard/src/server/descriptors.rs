//! The process's limit of open files (`RLIMIT_NOFILE`): every connection holds one, so a soft
//! limit of 1 024 (a common default) would run out long before `server.max_connections`.

use tracing::debug;

/// Descriptors a node holds besides its clients' connections: the database's connections
/// (with SQLite's journal and shared-memory files), one outbound connection per delivery in
/// flight, and a margin for the listener, logs and the runtime.
pub(crate) fn descriptors_beside_connections(database_connections: u32, delivery_concurrency: usize) -> u64 {
    const PER_DATABASE_CONNECTION: u64 = 3;
    const RESERVE: u64 = 64;
    RESERVE + PER_DATABASE_CONNECTION * (u64::from(database_connections) + 1) + delivery_concurrency as u64
}

/// Raises the soft limit of open files to the hard limit where the system allows it, and
/// answers the soft limit in force afterwards (`None` when there is none, or it cannot be
/// read on this platform).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

        /// Asked for when the hard limit is "unlimited", which no kernel grants as a soft limit.
        const UNLIMITED_HARD_TARGET: u64 = 1 << 20;

        let limit = getrlimit(Resource::Nofile);
        let current = limit.current?;
        let wanted = limit.maximum.unwrap_or(UNLIMITED_HARD_TARGET);
        if wanted <= current {
            return Some(current);
        }
        match setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: limit.maximum }) {
            Ok(()) => {
                debug!(from = current, to = wanted, "raised the soft limit of open files");
                Some(wanted)
            }
            Err(err) => {
                debug!(error = %err, limit = current, "cannot raise the soft limit of open files");
                Some(current)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let raised = raise_open_files_limit();
        #[cfg(unix)]
        {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            assert_eq!(raised, limit.current);
            if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
                assert_eq!(current, maximum, "raised as far as allowed");
            }
        }
        let _ = raised;
    }

    #[test]
    fn the_margin_grows_with_the_pools() {
        let small = descriptors_beside_connections(8, 512);
        assert!(small >= 512 + 8, "{small}");
        assert!(descriptors_beside_connections(16, 1024) > small);
    }
}
