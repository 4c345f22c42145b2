Feature: Capacity exhaustion and stress
  Capacity is reserved before a device allocation and released when a shard
  is dropped. A refused or failed seal leaves no reservation and no device
  memory behind, however often it happens.

  Scenario: Sealing until the device is full leaks no reservation
    Given a manager over a mock device of 4 MiB with 64 KiB leaves
    When models of 1 MiB are sealed until one is refused
    Then the refusal is insufficient VRAM, and retriable
    And the refused seal reserved nothing
    And every shard verifies
    When the shards are dropped
    Then no capacity is reserved and no device memory is live

  Scenario: A failed allocation leaks no reservation
    Given a manager over a mock device of 64 MiB with 64 KiB leaves
    And the device fails its next allocation
    When a model of 100000 bytes is sealed
    Then the seal fails with an allocation failure, and retriable
    And no capacity is reserved and no device memory is live

  Scenario: Rapid seal, verify and drop cycles leave nothing behind
    Given a manager over a mock device of 16 MiB with 64 KiB leaves
    When 100 times a model of 50000 bytes is sealed, verified and dropped
    Then 100 verifications have passed
    And no capacity is reserved and no device memory is live

  Scenario Outline: Edge-case models seal and verify
    Given a manager over a mock device of 16 MiB with 64 KiB leaves
    When a model of <size> bytes of <fill> is sealed
    Then the seal verifies
    And <size> bytes of device capacity are in use

    Examples:
      | size   | fill      |
      | 1      | zeros     |
      | 65536  | zeros     |
      | 65537  | ones      |
      | 300000 | a pattern |
