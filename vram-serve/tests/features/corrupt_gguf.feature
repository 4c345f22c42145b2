Feature: A worker serving a sealed GGUF model stops at the first corrupt byte
  The worker seals a GGUF language model in device memory and serves it over
  an OpenAI-compatible HTTP API; every request computes on weights reached
  through a lease verified for it. When one byte of a tensor changes in
  device memory behind the seal's back, the next request is refused with
  the tensor named, the health check turns 503, and the worker stops with
  the outcome its binary exits 1 on, so that a supervisor seals again.

  Background:
    Given a tiny llama GGUF model with a byte-level BPE tokenizer and a chat template
    And the model is sealed on a mock device and served on loopback, each request under a full lease

  Scenario Outline: Seal, serve, corrupt, refuse, stop
    When a chat completion is requested
    Then it is answered 200 with an assistant message
    And the health check answers 200
    When one byte of tensor "<tensor>" is flipped in device memory
    And a chat completion is requested
    Then it is answered 503 with the code "model_compromised" naming "<tensor>"
    And the refusal names no other tensor
    And the health check answers 503 naming "<tensor>"
    When a completion is requested
    Then it is answered 503 with the code "model_compromised" naming "<tensor>"
    And the server stops as compromised, naming "<tensor>", with exit code 1

    Examples:
      | tensor                |
      | blk.1.ffn_down.weight |
      | blk.0.ffn_gate.weight |
      | blk.1.ffn_up.weight   |

  Scenario: A corrupt leaf that small tensors share names each of them
    When a chat completion is requested
    Then it is answered 200 with an assistant message
    When one byte of tensor "blk.0.attn_q.weight" is flipped in device memory
    And a chat completion is requested
    Then it is answered 503 with the code "model_compromised" naming "blk.0.attn_q.weight"
    And it is answered 503 with the code "model_compromised" naming "token_embd.weight"
    And the health check answers 503 naming "blk.0.attn_q.weight"
    And the server stops as compromised, naming "blk.0.attn_q.weight", with exit code 1
