-- Issue 13: owner fencing for partitioned ingest and rules (NATS JetStream transport).
-- One row per (stage, partition): the epoch is bumped (row lock) by a process when it gains the
-- partition, and every commit of an owner re-reads its partitions' epochs FOR SHARE in its own
-- transaction and rolls back when one changed; so a stalled old owner can never commit after a
-- takeover, and the new owner's bump waits for an old owner's commit that is under way.
CREATE TABLE IF NOT EXISTS partition_leases (
    stage      text        NOT NULL,
    partition  integer     NOT NULL CHECK (partition >= 0),
    epoch      bigint      NOT NULL CHECK (epoch >= 1),
    owner      text        NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stage, partition)
);
