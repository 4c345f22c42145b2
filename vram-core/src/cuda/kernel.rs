//! The SHA-256 leaf-hashing kernel (CUDA C, compiled with NVRTC at first use).
//!
//! One thread hashes one leaf: `SHA-256(prefix || data[start..end])` with
//! `start = leaf * leaf_size` and `end = min(start + leaf_size, data_len)`, exactly
//! as FIPS 180-4 specifies (padding with `0x80`, zeros, and the 64-bit big-endian
//! bit length). The host checks every bound before launching, so the kernel only
//! ever reads `data[0..data_len]` and `prefix[0..prefix_len]` and writes
//! `out[0..count * 32]`.

/// Name of the kernel entry point in [`SHA256_LEAVES_SRC`].
pub(super) const SHA256_LEAVES_FN: &str = "vram_sha256_leaves";

/// Threads per block for [`SHA256_LEAVES_FN`].
pub(super) const THREADS_PER_BLOCK: u32 = 128;

/// CUDA C source of the leaf-hashing kernel.
///
/// Parameters, in order (types must match the launch in `buffer.rs`):
/// `data: u64 (device pointer)`, `data_len: u64`, `prefix: u64 (device pointer)`,
/// `prefix_len: u64`, `leaf_size: u64`, `first_leaf: u64`, `count: u64`,
/// `out: u64 (device pointer, count * 32 bytes)`.
pub(super) const SHA256_LEAVES_SRC: &str = r#"
typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

__constant__ u32 VRAM_K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u
};

__device__ __forceinline__ u32 vram_rotr(u32 x, u32 n) { return (x >> n) | (x << (32u - n)); }

__device__ __forceinline__ u32 vram_bswap(u32 x) {
    return (x >> 24) | ((x >> 8) & 0x0000ff00u) | ((x << 8) & 0x00ff0000u) | (x << 24);
}

/* Byte `p` of the padded message prefix || leaf || 0x80 || 0.. || bitlen (FIPS 180-4 5.1.1). */
__device__ __forceinline__ u32 vram_padded_byte(const u8* prefix, u64 prefix_len, const u8* leaf,
                                                u64 msg_len, u64 padded_len, u64 p) {
    if (p < prefix_len) return prefix[p];
    if (p < msg_len) return leaf[p - prefix_len];
    if (p == msg_len) return 0x80u;
    if (p >= padded_len - 8ull) {
        u64 bits = msg_len * 8ull;
        u32 shift = (u32)((padded_len - 1ull - p) * 8ull);
        return (u32)((bits >> shift) & 0xffull);
    }
    return 0u;
}

/* One SHA-256 compression (FIPS 180-4 6.2.2) with a 16-word rolling schedule. */
__device__ void vram_compress(u32 s[8], u32 w[16]) {
    u32 a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (int t = 0; t < 64; ++t) {
        if (t >= 16) {
            u32 w2 = w[(t - 2) & 15];
            u32 w15 = w[(t - 15) & 15];
            u32 s1 = vram_rotr(w2, 17) ^ vram_rotr(w2, 19) ^ (w2 >> 10);
            u32 s0 = vram_rotr(w15, 7) ^ vram_rotr(w15, 18) ^ (w15 >> 3);
            w[t & 15] = s1 + w[(t - 7) & 15] + s0 + w[t & 15];
        }
        u32 big_s1 = vram_rotr(e, 6) ^ vram_rotr(e, 11) ^ vram_rotr(e, 25);
        u32 ch = (e & f) ^ (~e & g);
        u32 t1 = h + big_s1 + ch + VRAM_K[t] + w[t & 15];
        u32 big_s0 = vram_rotr(a, 2) ^ vram_rotr(a, 13) ^ vram_rotr(a, 22);
        u32 maj = (a & b) ^ (a & c) ^ (b & c);
        u32 t2 = big_s0 + maj;
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

/* SHA-256(prefix || leaf[0..leaf_len]) into out[0..32]. */
__device__ void vram_sha256_prefixed(const u8* prefix, u64 prefix_len, const u8* leaf, u64 leaf_len,
                                     u8* out) {
    u32 s[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    u64 msg_len = prefix_len + leaf_len;
    /* Smallest multiple of 64 that holds the message, the 0x80 byte and 8 length bytes. */
    u64 padded_len = ((msg_len + 9ull + 63ull) / 64ull) * 64ull;
    u32 w[16];
    for (u64 block = 0; block < padded_len; block += 64ull) {
        if (block >= prefix_len && block + 64ull <= msg_len) {
            /* Fast path: the whole block lies inside the leaf. */
            const u8* q = leaf + (block - prefix_len);
            if ((((u64)q) & 15ull) == 0ull) {
                /* 16-byte loads: a quarter of the load instructions of 4-byte ones. */
                const uint4* q128 = (const uint4*)q;
                for (int j = 0; j < 4; ++j) {
                    uint4 v = q128[j];
                    w[4 * j] = vram_bswap(v.x);
                    w[4 * j + 1] = vram_bswap(v.y);
                    w[4 * j + 2] = vram_bswap(v.z);
                    w[4 * j + 3] = vram_bswap(v.w);
                }
            } else if ((((u64)q) & 3ull) == 0ull) {
                const u32* q32 = (const u32*)q;
                for (int j = 0; j < 16; ++j) w[j] = vram_bswap(q32[j]);
            } else {
                for (int j = 0; j < 16; ++j) {
                    w[j] = ((u32)q[4 * j] << 24) | ((u32)q[4 * j + 1] << 16) |
                           ((u32)q[4 * j + 2] << 8) | (u32)q[4 * j + 3];
                }
            }
        } else {
            for (int j = 0; j < 16; ++j) {
                u64 p = block + 4ull * (u64)j;
                w[j] = (vram_padded_byte(prefix, prefix_len, leaf, msg_len, padded_len, p) << 24) |
                       (vram_padded_byte(prefix, prefix_len, leaf, msg_len, padded_len, p + 1ull) << 16) |
                       (vram_padded_byte(prefix, prefix_len, leaf, msg_len, padded_len, p + 2ull) << 8) |
                       vram_padded_byte(prefix, prefix_len, leaf, msg_len, padded_len, p + 3ull);
            }
        }
        vram_compress(s, w);
    }
    for (int j = 0; j < 8; ++j) {
        out[4 * j] = (u8)(s[j] >> 24);
        out[4 * j + 1] = (u8)(s[j] >> 16);
        out[4 * j + 2] = (u8)(s[j] >> 8);
        out[4 * j + 3] = (u8)s[j];
    }
}

extern "C" __global__ void vram_sha256_leaves(const u8* data, u64 data_len, const u8* prefix,
                                              u64 prefix_len, u64 leaf_size, u64 first_leaf,
                                              u64 count, u8* out) {
    u64 i = (u64)blockIdx.x * (u64)blockDim.x + (u64)threadIdx.x;
    if (i >= count) return;
    u64 start = (first_leaf + i) * leaf_size;
    if (start >= data_len) return; /* the host never launches such a leaf */
    u64 remaining = data_len - start;
    u64 leaf_len = remaining < leaf_size ? remaining : leaf_size;
    vram_sha256_prefixed(prefix, prefix_len, data + start, leaf_len, out + i * 32ull);
}
"#;
