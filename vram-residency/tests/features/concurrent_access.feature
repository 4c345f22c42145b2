Feature: Concurrent access
  The manager is shared by reference between threads: many threads seal
  and verify at once, without a global lock, and capacity is never
  over-committed.

  Scenario: Ten threads seal at once
    Given a manager over a mock device of 256 MiB with 64 KiB leaves
    When 10 threads each seal a model of 300000 bytes
    Then there are 10 shards with distinct shard ids
    And every shard verifies
    And 10 device allocations are live
    When the shards are dropped
    Then no capacity is reserved and no device memory is live
    And the audit log holds 10 "vram_deallocated" events

  Scenario: Eight threads verify one shard
    Given a manager over a mock device of 64 MiB with 64 KiB leaves
    And a model of 2000000 bytes is sealed
    When 8 threads each verify the shard 5 times
    Then 40 verifications have passed

  Scenario: Seals and verifications interleave
    Given a manager over a mock device of 64 MiB with 64 KiB leaves
    And a model of 1000000 bytes is sealed
    When 4 threads seal 5 models of 100000 bytes each while 4 threads verify the shard
    Then there are 21 shards with distinct shard ids
    And every shard verifies

  Scenario: Capacity is never over-committed under contention
    Given a manager over a mock device of 10 MiB with 64 KiB leaves
    When 12 threads each try to seal 3 models of 1 MiB while capacity is watched
    Then used capacity never exceeded the total
    And every refusal was for insufficient VRAM
    And every shard verifies
    When the shards are dropped
    Then no capacity is reserved and no device memory is live
