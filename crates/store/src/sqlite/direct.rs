//! Binding for the statements the group writer runs on the connection's handle (see
//! [`super::group`]).

use rusqlite::{CachedStatement, ToSql};
use switchyard_core::store::StoreResult;

use crate::error::map_direct_err;

/// Binds a statement's parameters in order: the first `bind` fills parameter 1, the next 2.
/// A numbered `$n` that first appears in order of `n` is parameter `n`.
pub(super) struct Binder<'s, 'c> {
    statement: &'s mut CachedStatement<'c>,
    next: usize,
}

impl<'s, 'c> Binder<'s, 'c> {
    pub(super) fn new(statement: &'s mut CachedStatement<'c>) -> Self {
        Self { statement, next: 1 }
    }

    pub(super) fn bind<T: ToSql>(&mut self, value: T) -> StoreResult<()> {
        self.statement.raw_bind_parameter(self.next, value).map_err(map_direct_err)?;
        self.next += 1;
        Ok(())
    }
}
