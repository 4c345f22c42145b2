Feature: Shard ids are validated
  A shard id crosses a trust boundary: it reaches logs, audit records and
  error messages. Anything but 1 to 256 characters of [A-Za-z0-9_-] is
  refused before any memory is reserved, and a handle whose id was altered
  is refused with the id escaped.

  Background:
    Given a manager over a mock device of 64 MiB with 64 KiB leaves

  Scenario Outline: An invalid shard id is refused
    When a model is sealed under the shard id "<id>"
    Then the shard id is refused as invalid input
    And no capacity is reserved and no device memory is live

    Examples:
      | id                   |
      |                      |
      | ../etc/passwd        |
      | shard id with spaces |
      | shard;rm -rf         |
      | ümlaut               |
      | a%00b                |

  Scenario: A shard id longer than 256 characters is refused
    When a model is sealed under a shard id of 257 characters
    Then the shard id is refused as invalid input

  Scenario: A valid shard id is kept
    When a model is sealed under the shard id "llama-7b_shard-0"
    Then the shard's id is "llama-7b_shard-0"
    And the seal verifies

  Scenario: A handle whose shard id was altered is refused
    Given a model of 1000 bytes is sealed
    When its handle's shard id is changed to a forged log line
    Then the handle is refused as an invalid seal
    And the error is one printable line
