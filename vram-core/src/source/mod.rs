//! Where the bytes of a seal or a digest come from, one floor below the
//! facade, for the facade and the CUDA backend alike: the one `read_full`,
//! readers over a slice or a file whose large reads are split over several
//! threads, a bounded double-buffered stream of chunks, and a read-only map
//! of a regular file. Everything here returns [`std::io::Error`] (wrapped in
//! [`StreamError`] where a length can be wrong); none of it knows devices,
//! seals or leaf hashes.

mod map;

use crate::StreamError;
use std::io::{ErrorKind, Read};
use std::sync::{mpsc, Mutex, PoisonError};

pub use map::MappedFile;

/// Reads until `buf` is full or the source ends; returns the bytes read.
/// Interrupted reads are retried; a reader claiming to have read more than it
/// was given is clamped, not trusted.
///
/// # Errors
/// The first error of `reader` other than [`ErrorKind::Interrupted`].
pub fn read_full(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0usize;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n).min(buf.len()),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Reads smaller than this are filled by the calling thread alone.
const SPLIT_MIN: usize = 4 << 20;

/// Fills `dst` by calling `fill(offset_in_dst, part)` on disjoint parts of it,
/// from up to `threads` threads. Parts are taken from a shared list by the
/// calling thread and the helpers, so a helper the OS will not start costs
/// speed, not bytes. Returns the first error.
fn fill_split(
    dst: &mut [u8],
    threads: usize,
    fill: impl Fn(usize, &mut [u8]) -> std::io::Result<()> + Sync,
) -> std::io::Result<()> {
    if threads < 2 || dst.len() < SPLIT_MIN {
        return fill(0, dst);
    }
    let part = dst.len().div_ceil(threads);
    let parts = Mutex::new(
        dst.chunks_mut(part)
            .enumerate()
            .map(|(i, d)| (i.saturating_mul(part), d))
            .collect::<Vec<_>>(),
    );
    let failed: Mutex<Option<std::io::Error>> = Mutex::new(None);
    let work = || loop {
        let next = parts.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some((at, d)) = next else { break };
        if let Err(e) = fill(at, d) {
            failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(e);
            break;
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new()
                .name("vram-read".into())
                .spawn_scoped(s, work);
        }
        work();
    });
    match failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A host slice read as a [`Read`] whose large reads are split over several
/// threads, each copying a disjoint part of the destination: a backend's
/// pipeline that fills pinned staging buffers from a reader then fills them at
/// memory bandwidth, not at one core's memcpy rate.
#[derive(Debug)]
pub struct ParallelSlice<'a> {
    rest: &'a [u8],
    threads: usize,
}

impl<'a> ParallelSlice<'a> {
    /// Reads `bytes` from the start, large reads on up to `threads` threads.
    #[must_use]
    pub fn new(bytes: &'a [u8], threads: usize) -> Self {
        Self {
            rest: bytes,
            threads: threads.max(1),
        }
    }
}

impl Read for ParallelSlice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.rest.len());
        let (src, rest) = self.rest.split_at(n);
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        fill_split(dst, self.threads, |at, part| {
            let from = src
                .get(at..at.saturating_add(part.len()))
                .ok_or_else(|| std::io::Error::other("split out of range"))?;
            part.copy_from_slice(from);
            Ok(())
        })?;
        self.rest = rest;
        Ok(n)
    }
}

/// The first `end` bytes of a file read as a [`Read`] with positional reads
/// (the file's cursor is never used or moved), large reads split over several
/// threads: a backend's pipeline fills its pinned staging buffers from the
/// page cache or the disk at several threads' rate. A file shorter than `end`
/// is an [`ErrorKind::UnexpectedEof`] error, not a short read.
#[cfg(unix)]
#[derive(Debug)]
pub struct ParallelFile<'a> {
    file: &'a std::fs::File,
    offset: u64,
    end: u64,
    threads: usize,
}

#[cfg(unix)]
impl<'a> ParallelFile<'a> {
    /// Reads bytes `0..end` of `file`, large reads on up to `threads` threads.
    #[must_use]
    pub fn new(file: &'a std::fs::File, end: u64, threads: usize) -> Self {
        Self {
            file,
            offset: 0,
            end,
            threads: threads.max(1),
        }
    }
}

#[cfg(unix)]
impl Read for ParallelFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = usize::try_from(self.end.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        let base = self.offset;
        fill_split(dst, self.threads, |at, part| {
            self.file
                .read_exact_at(part, base.saturating_add(at as u64))
        })?;
        self.offset = self.offset.saturating_add(n as u64);
        Ok(n)
    }
}

/// Streams `reader` to `consume` in chunks of `staging` bytes (the last may be
/// shorter), reading chunk N+1 on a helper thread while `consume` works on
/// chunk N. At most three chunk buffers exist at once, so host memory stays
/// O(staging) whatever the length.
///
/// With `len = Some(n)` the reader must yield exactly `n` bytes
/// ([`StreamError::Length`] otherwise); with `None` it is read to its end.
/// Returns the number of bytes consumed.
///
/// # Errors
/// [`StreamError::Read`] for read failures (and when the reading thread cannot
/// be started), [`StreamError::Length`], each converted into `E`, or the
/// first error returned by `consume` (which stops the stream).
pub fn stream_chunks<R, E>(
    mut reader: R,
    len: Option<u64>,
    staging: usize,
    mut consume: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<u64, E>
where
    R: Read + Send,
    E: From<StreamError>,
{
    let staging = staging.max(1);
    // Filled chunks flow to the consumer; emptied buffers flow back.
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<Vec<u8>, StreamError>>(1);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        let _ = empty_tx.send(Vec::with_capacity(staging));
    }
    std::thread::scope(|s| {
        let reader_thread = std::thread::Builder::new()
            .name("vram-stream-read".into())
            .spawn_scoped(s, move || {
                read_chunks(&mut reader, len, staging, &empty_rx, &full_tx)
            });
        if let Err(e) = reader_thread {
            return Err(E::from(StreamError::Read(e)));
        }
        let mut offset = 0u64;
        let mut result = Ok(());
        for msg in full_rx.iter() {
            let step = match msg {
                Err(e) => Err(E::from(e)),
                Ok(chunk) => consume(offset, &chunk).map(|()| {
                    offset = offset.saturating_add(chunk.len() as u64);
                    // The reader may have finished; a closed channel is fine.
                    let _ = empty_tx.send(chunk);
                }),
            };
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        // Dropping our ends unblocks the reader thread after an error.
        drop(full_rx);
        drop(empty_tx);
        result?;
        match len {
            Some(announced) if offset != announced => Err(E::from(StreamError::Length {
                announced,
                read: offset,
            })),
            _ => Ok(offset),
        }
    })
}

/// Streams `reader` into `memory`, which it must fill exactly: a reading
/// thread reads each `piece`-byte part of `memory` once, in order, straight
/// into place, and hands it to `consume` on the calling thread as soon as it
/// is full, while it reads the next. `consume` therefore sees each byte as it
/// stays in `memory` (read once: what it hashes is what `memory` holds).
///
/// # Errors
/// [`StreamError::Length`] when the reader ends before `memory` is full or
/// holds more bytes than it; [`StreamError::Read`] for read failures (and
/// when the reading thread cannot be started), each converted into `E`; or
/// the first error of `consume`, which stops the stream. `memory`'s contents
/// are then unspecified.
pub fn stream_into<E>(
    reader: &mut (dyn Read + Send),
    memory: &mut [u8],
    piece: usize,
    mut consume: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<StreamError>,
{
    let announced = memory.len() as u64;
    // One piece in flight while the one before it is consumed.
    let (tx, rx) = mpsc::sync_channel::<Result<&[u8], StreamError>>(1);
    std::thread::scope(|s| {
        let reading = std::thread::Builder::new()
            .name("vram-stream-read".into())
            .spawn_scoped(s, move || {
                let mut done = 0u64;
                for part in memory.chunks_mut(piece.max(1)) {
                    let failed = match read_full(reader, part) {
                        Ok(n) if n == part.len() => None,
                        Ok(n) => Some(StreamError::Length {
                            announced,
                            read: done.saturating_add(n as u64),
                        }),
                        Err(e) => Some(StreamError::Read(e)),
                    };
                    if let Some(e) = failed {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    done = done.saturating_add(part.len() as u64);
                    let filled: &[u8] = part;
                    if tx.send(Ok(filled)).is_err() {
                        return;
                    }
                }
                if let Some(e) = past_the_end(reader, announced) {
                    let _ = tx.send(Err(e));
                }
            });
        if let Err(e) = reading {
            return Err(E::from(StreamError::Read(e)));
        }
        let mut result = Ok(());
        for msg in rx.iter() {
            if let Err(e) = msg.map_err(E::from).and_then(&mut consume) {
                result = Err(e);
                break;
            }
        }
        // Dropping the receiving end unblocks the reading thread after an
        // error; the scope then waits for it to end.
        drop(rx);
        result
    })
}

/// The reading side of [`stream_chunks`]: fills the buffers that come back
/// empty and sends them on, then checks that a sized source ends where it
/// said it would.
fn read_chunks(
    reader: &mut impl Read,
    len: Option<u64>,
    staging: usize,
    empty: &mpsc::Receiver<Vec<u8>>,
    full: &mpsc::SyncSender<Result<Vec<u8>, StreamError>>,
) {
    let mut done = 0u64;
    loop {
        let remaining = len.map_or(u64::MAX, |l| l.saturating_sub(done));
        if remaining == 0 {
            break;
        }
        let Ok(mut buf) = empty.recv() else { return };
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(staging);
        buf.clear();
        buf.resize(want, 0);
        let n = match read_full(reader, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = full.send(Err(StreamError::Read(e)));
                return;
            }
        };
        done = done.saturating_add(n as u64);
        if n < want {
            if let Some(announced) = len {
                let _ = full.send(Err(StreamError::Length {
                    announced,
                    read: done,
                }));
                return;
            }
            buf.truncate(n);
            if n > 0 {
                let _ = full.send(Ok(buf));
            }
            return; // the end of an unsized stream
        }
        if full.send(Ok(buf)).is_err() {
            return;
        }
    }
    if let Some(e) = len.and_then(|announced| past_the_end(reader, announced)) {
        let _ = full.send(Err(e));
    }
}

/// A sized source must end where it said it would: after its `announced`
/// bytes were read, `None` when it is at its end, else the error to report.
fn past_the_end(reader: &mut (impl Read + ?Sized), announced: u64) -> Option<StreamError> {
    let mut probe = [0u8; 1];
    match read_full(reader, &mut probe) {
        Ok(0) => None,
        Ok(_) => Some(StreamError::Length {
            announced,
            read: announced.saturating_add(1),
        }),
        Err(e) => Some(StreamError::Read(e)),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;

    fn read_all(mut source: impl Read, read: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; read];
        loop {
            let n = source.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_parallel_file_reads_exactly_its_first_bytes_in_any_read_sizes() {
        use std::io::Write;
        let data: Vec<u8> = (0..(9 << 20) + 3)
            .map(|i| (i * 7 + i / 65_537) as u8)
            .collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        for threads in [1, 2, 3, 8] {
            for read in [4095usize, 4 << 20, (5 << 20) + 1, 64 << 20] {
                for end in [data.len(), data.len() - 1_000_000] {
                    let out = read_all(ParallelFile::new(&file, end as u64, threads), read);
                    assert!(
                        out == data[..end],
                        "threads {threads} read {read} end {end}"
                    );
                }
            }
        }
        // A file shorter than announced is an error, not a short read.
        let mut source = ParallelFile::new(&file, data.len() as u64 + 10, 3);
        let mut buf = vec![0u8; 16 << 20];
        let e = source.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_parallel_slice_reads_exactly_the_slice_in_any_read_sizes() {
        let data: Vec<u8> = (0..(13 << 20) + 7)
            .map(|i| (i * 31 + i / 4099) as u8)
            .collect();
        for threads in [1, 2, 3, 8] {
            for read in [4095usize, 4 << 20, (5 << 20) + 1, 64 << 20] {
                assert!(
                    read_all(ParallelSlice::new(&data, threads), read) == data,
                    "threads {threads} read {read}"
                );
            }
            assert_eq!(
                read_all(ParallelSlice::new(&data[..1000], threads), 1),
                &data[..1000]
            );
            assert!(read_all(ParallelSlice::new(&[], threads), 4096).is_empty());
        }
    }

    /// A reader that returns at most `step` bytes per call, an `Interrupted`
    /// error before every other call, and claims one byte too many on the
    /// last call when `lie` is set.
    struct Awkward<'a> {
        data: &'a [u8],
        step: usize,
        calls: usize,
        lie: bool,
    }

    impl Read for Awkward<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls % 2 == 1 {
                return Err(ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(if self.lie && self.data.is_empty() && n > 0 {
                n + 1
            } else {
                n
            })
        }
    }

    #[test]
    fn read_full_retries_interruptions_and_clamps_a_lying_reader() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut buf = vec![0u8; 1000];
        let mut r = Awkward {
            data: &data,
            step: 7,
            calls: 0,
            lie: false,
        };
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 1000);
        assert_eq!(buf, data);
        let mut short = vec![0u8; 2000];
        let mut r = Awkward {
            data: &data,
            step: 300,
            calls: 0,
            lie: true,
        };
        assert_eq!(read_full(&mut r, &mut short).unwrap(), 1001);
        let mut exact = vec![0u8; 1000];
        let mut r = Awkward {
            data: &data,
            step: 1000,
            calls: 0,
            lie: true,
        };
        assert_eq!(read_full(&mut r, &mut exact).unwrap(), 1000);
    }

    #[derive(Debug, PartialEq)]
    enum Failed {
        Read(ErrorKind),
        Length(u64, u64),
        Consumer(u64),
    }

    impl From<StreamError> for Failed {
        fn from(e: StreamError) -> Self {
            match e {
                StreamError::Read(e) => Self::Read(e.kind()),
                StreamError::Length { announced, read } => Self::Length(announced, read),
                StreamError::Device(_) => unreachable!(),
            }
        }
    }

    fn collect(data: &[u8], len: Option<u64>, staging: usize) -> Result<Vec<u8>, Failed> {
        let mut out = Vec::new();
        let n = stream_chunks(data, len, staging, |offset, chunk| {
            assert_eq!(offset, out.len() as u64);
            assert!(chunk.len() <= staging);
            out.extend_from_slice(chunk);
            Ok::<(), Failed>(())
        })?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    #[test]
    fn stream_chunks_yields_every_byte_in_order_and_checks_the_length() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13) as u8).collect();
        for staging in [1, 4096, 99_999, 100_000, 1 << 20] {
            assert_eq!(collect(&data, None, staging).unwrap(), data);
            assert_eq!(collect(&data, Some(100_000), staging).unwrap(), data);
            assert_eq!(
                collect(&data, Some(100_001), staging),
                Err(Failed::Length(100_001, 100_000))
            );
            assert_eq!(
                collect(&data, Some(99_999), staging),
                Err(Failed::Length(99_999, 100_000))
            );
        }
        assert_eq!(collect(&[], None, 16).unwrap(), Vec::<u8>::new());
        assert_eq!(collect(&[], Some(0), 16).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn stream_chunks_stops_at_the_first_consumer_or_read_error() {
        let data = vec![5u8; 10_000];
        let mut seen = 0;
        let r = stream_chunks(&data[..], Some(10_000), 1000, |offset, _| {
            seen += 1;
            if offset >= 3000 {
                Err(Failed::Consumer(offset))
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(Failed::Consumer(3000)));
        assert_eq!(seen, 4);
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(ErrorKind::PermissionDenied.into())
            }
        }
        let r = stream_chunks(Broken, None, 1000, |_, _| Ok::<(), Failed>(()));
        assert_eq!(r, Err(Failed::Read(ErrorKind::PermissionDenied)));
    }

    #[test]
    fn stream_into_fills_the_memory_in_order_and_checks_the_length() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        for piece in [1, 4096, 99_999, 100_000, 1 << 20] {
            let mut memory = vec![0u8; data.len()];
            let mut seen = Vec::new();
            stream_into(&mut &data[..], &mut memory, piece, |part| {
                assert!(part.len() <= piece);
                seen.extend_from_slice(part);
                Ok::<(), Failed>(())
            })
            .unwrap();
            assert_eq!(memory, data);
            assert_eq!(seen, data);
            let mut long = vec![0u8; data.len() + 1];
            let r = stream_into(&mut &data[..], &mut long, piece, |_| Ok::<(), Failed>(()));
            assert_eq!(r, Err(Failed::Length(100_001, 100_000)), "piece {piece}");
            let mut short = vec![0u8; data.len() - 1];
            let r = stream_into(&mut &data[..], &mut short, piece, |_| Ok::<(), Failed>(()));
            assert_eq!(r, Err(Failed::Length(99_999, 100_000)), "piece {piece}");
        }
        let r = stream_into(&mut &data[..], &mut [0u8; 5000], 1000, |part| {
            if part[0] == data[2000] {
                Err(Failed::Consumer(2000))
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(Failed::Consumer(2000)));
        assert_eq!(
            stream_into(&mut &[][..], &mut [], 16, |_| Ok::<(), Failed>(())),
            Ok(())
        );
    }
}
