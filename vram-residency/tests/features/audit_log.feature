Feature: The audit log records every event
  Every allocation, seal, verification, failure and release is a record in
  a hash-chained, authenticated log. The chain verifies intact under the
  audit key, and a record changed afterwards is found.

  Background:
    Given a manager over a mock device of 64 MiB with 64 KiB leaves

  Scenario: Sealing, verifying, tampering and releasing are all recorded
    Given a model of 262144 bytes is sealed
    And the seal verifies
    When byte 70000 of its device memory is flipped
    And verification fails with an integrity violation
    And the shards are dropped
    Then the audit log holds these events in this order:
      | event                    |
      | vram_allocated           |
      | vram_sealed              |
      | seal_verified            |
      | seal_verification_failed |
      | vram_deallocated         |
    And the audit chain verifies intact

  Scenario: A refused seal is recorded too
    When a model of 100 MiB is sealed
    Then the seal fails with insufficient VRAM
    And the audit log holds 1 "vram_allocation_failed" event
    And the audit chain verifies intact

  Scenario: A record changed afterwards is found
    Given a model of 1000 bytes is sealed
    When the text of audit record 2 is changed
    Then the audit chain does not verify intact, naming line 2
