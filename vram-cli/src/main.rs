//! `vram`: seal model weights in GPU memory and prove they are unchanged.
//! Everything is in the library (`src/lib.rs`); this binary only runs it.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vram_cli::run()
}
