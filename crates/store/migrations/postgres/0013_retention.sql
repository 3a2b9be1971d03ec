-- Retention of what grows with traffic beside deliveries and events (the twin of
-- migrations/sqlite/0013). Audit entries are now pruned after `retention.audit_days`
-- (through `audit_log_at_seq`), and `Idempotency-Key` records 24 hours after they were
-- claimed, whether or not the key is used again: their prune reads them oldest first here.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
