Feature: Seal and verify model weights in device memory
  A worker copies model bytes to device memory and seals them: a chunk-tree
  digest of the bytes and an HMAC over every field a consumer relies on.
  Before each use it verifies them, re-reading the bytes from the device.
  A changed byte is found, its byte range named, and the shard is
  compromised for good.

  Background:
    Given a manager over a mock device of 64 MiB with 64 KiB leaves

  Scenario: A sealed model verifies
    When a model of 300000 bytes is sealed
    Then the seal verifies
    And 300000 bytes of device capacity are in use
    And the audit log holds 1 "vram_sealed" event
    And the audit log holds 1 "seal_verified" event

  Scenario: A changed byte is found and its range is named
    Given a model of 262144 bytes is sealed
    When byte 70000 of its device memory is flipped
    Then verification fails with an integrity violation
    And the corrupt range is bytes 65536 to 131072 of leaf 1
    And the shard is compromised
    And the audit log holds 1 "seal_verification_failed" event

  Scenario: Changes in two leaves name two ranges
    Given a model of 262144 bytes is sealed
    When byte 10 of its device memory is flipped
    And byte 200000 of its device memory is flipped
    Then verification fails with an integrity violation
    And the corrupt range is bytes 0 to 65536 of leaf 0
    And the corrupt range is bytes 196608 to 262144 of leaf 3

  Scenario: A compromised shard never verifies again
    Given a model of 262144 bytes is sealed
    When byte 70000 of its device memory is flipped
    And verification fails with an integrity violation
    And byte 70000 of its device memory is flipped
    Then verification fails because the shard is compromised
    And the shard is compromised

  Scenario: A dropped shard gives its memory back
    Given a model of 300000 bytes is sealed
    When the shards are dropped
    Then no capacity is reserved and no device memory is live
    And the audit log holds 1 "vram_deallocated" event
