-- The lease that lets one node at a time read a pull source (`outbox`, `nats`, `amqp`): the
-- holder renews it while it reads; another node takes it over once it runs out. The twin of
-- migrations/sqlite/0012.
ALTER TABLE sources ADD COLUMN lease_owner TEXT;
ALTER TABLE sources ADD COLUMN lease_until BIGINT;
