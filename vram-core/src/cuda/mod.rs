//! CUDA backend (cudarc, driver loaded at run time). Being built.
