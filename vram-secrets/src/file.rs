//! Reading a secret file under owner-only rules.

use std::fs::{self, File, FileType, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{SecretsError, MAX_SECRET_LEN, MIN_SECRET_LEN};

/// The longest systemd credential name accepted (a file name limit).
const MAX_CREDENTIAL_NAME_LEN: usize = 255;

/// `dir/name` after checking that `name` is a plain file name.
pub(crate) fn credential_path(dir: &Path, name: &str) -> Result<PathBuf, SecretsError> {
    let plain = !name.is_empty()
        && name.len() <= MAX_CREDENTIAL_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0']);
    if !plain {
        return Err(SecretsError::InvalidCredentialName {
            shown: vram_validation::escape_for_log(name, crate::SHOWN_CHARS),
        });
    }
    Ok(dir.join(name))
}

/// What a secret was read from.
#[derive(Debug)]
pub(crate) enum Origin {
    /// A regular file (perhaps behind symlinks), which passed the owner-only
    /// checks.
    File {
        /// The file the opened descriptor names, as the kernel reports it
        /// (`/proc/self/fd/N`): the target of any symlinks, when it has a path.
        resolved: Option<PathBuf>,
        /// Its (device, inode), from the opened descriptor.
        id: (u64, u64),
    },
    /// A pipe or socket (standard input, `/dev/fd/N`, `<(...)`): no owner or
    /// mode applies, and there is no file to protect.
    Stream,
}

/// A secret's bytes and where they came from.
pub(crate) struct Loaded {
    pub(crate) bytes: Zeroizing<Vec<u8>>,
    pub(crate) origin: Origin,
}

/// Whether `path` names an already open file descriptor (`/dev/stdin`,
/// `/dev/fd/N`, `/proc/self/fd/N`), as a shell's `<(...)` or a service
/// manager hands one over: only such a path may be a pipe.
fn names_a_descriptor(path: &Path) -> bool {
    let Some(text) = path.to_str() else {
        return false;
    };
    if text == "/dev/stdin" {
        return true;
    }
    ["/dev/fd/", "/proc/self/fd/"].iter().any(|prefix| {
        text.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Opens `path` following symlinks and reads the secret with the checks
/// documented on [`WorkerSecret::load_file`](crate::WorkerSecret::load_file).
///
/// Every check is made on the opened descriptor (`fstat`), never on the path
/// again, so what is checked is what is read, however the symlinks change.
/// A path that does not name a descriptor is opened with `O_NONBLOCK`, so a
/// FIFO behind it cannot hang the open before it is refused (the flag does
/// nothing to a regular file).
pub(crate) fn read_secret_file(path: &Path) -> Result<Loaded, SecretsError> {
    let descriptor = names_a_descriptor(path);
    let mut options = OpenOptions::new();
    options.read(true);
    if !descriptor {
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| io_error(path, e))?;
    read_opened(path, file, descriptor)
}

/// Reads the secret from standard input: a pipe (`printf ... | vram`), or a
/// regular file redirected with `<`, which gets the owner-only checks.
pub(crate) fn read_secret_stdin() -> Result<Loaded, SecretsError> {
    let path = Path::new("-");
    let fd = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| io_error(path, e))?;
    read_opened(path, File::from(fd), true)
}

fn io_error(path: &Path, e: io::Error) -> SecretsError {
    match e.kind() {
        io::ErrorKind::NotFound => SecretsError::NotFound {
            path: path.to_owned(),
        },
        kind => SecretsError::Io {
            path: path.to_owned(),
            kind,
        },
    }
}

/// The checks and the read on an opened file; `stream_ok` lets a pipe or a
/// socket through (with the size checks only).
fn read_opened(path: &Path, file: File, stream_ok: bool) -> Result<Loaded, SecretsError> {
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    let file_type = meta.file_type();
    if file_type.is_file() {
        check_owner(path, meta.uid(), current_euid()?)?;
        let resolved = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .ok()
            .filter(|p| p.is_absolute());
        if check_mode(path, meta.mode()).is_err() {
            check_kubelet_group_mode(path, meta.mode(), meta.gid(), resolved.as_deref())?;
        }
        let bytes = read_regular(path, file, meta.len())?;
        return Ok(Loaded {
            bytes,
            origin: Origin::File {
                resolved,
                id: (meta.dev(), meta.ino()),
            },
        });
    }
    if stream_ok && (file_type.is_fifo() || file_type.is_socket()) {
        let bytes = read_stream(path, file)?;
        return Ok(Loaded {
            bytes,
            origin: Origin::Stream,
        });
    }
    Err(SecretsError::NotRegularFile {
        path: path.to_owned(),
        found: kind_name(file_type),
    })
}

/// Reads a regular file of `len` bytes (as `fstat` said) whole.
fn read_regular(
    path: &Path,
    mut file: impl Read,
    len: u64,
) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let max = MAX_SECRET_LEN as u64;
    if len > max {
        return Err(SecretsError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(SecretsError::Empty);
    }
    let len = usize::try_from(len).map_err(|_| SecretsError::TooLarge { len, max })?;

    let changed = || SecretsError::Changed {
        path: path.to_owned(),
    };
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    file.read_exact(&mut bytes).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => changed(),
        _ => io_error(path, e),
    })?;
    let mut probe = Zeroizing::new([0u8; 1]);
    if file.read(probe.as_mut()).map_err(|e| io_error(path, e))? != 0 {
        return Err(changed());
    }

    strip_one_newline(&mut bytes);
    Ok(bytes)
}

/// Reads a pipe to its end, at most [`MAX_SECRET_LEN`] bytes: into one
/// zeroizing buffer allocated up front (never grown, so never copied), then
/// into one of the exact size.
fn read_stream(path: &Path, mut file: impl Read) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let max = MAX_SECRET_LEN as u64;
    let mut buf = Zeroizing::new(vec![0u8; MAX_SECRET_LEN.saturating_add(1)]);
    let mut filled = 0usize;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
    if filled > MAX_SECRET_LEN {
        // At least this much: the rest of the stream is not read.
        return Err(SecretsError::TooLarge {
            len: max.saturating_add(1),
            max,
        });
    }
    if filled == 0 {
        return Err(SecretsError::Empty);
    }
    let mut bytes = Zeroizing::new(buf.get(..filled).unwrap_or_default().to_vec());
    strip_one_newline(&mut bytes);
    Ok(bytes)
}

/// Removes one trailing `\n` or `\r\n`, but only when at least
/// [`MIN_SECRET_LEN`] bytes remain.
///
/// The newline an editor or `echo` appends to a text secret (`openssl rand
/// -hex 32 > f`) is not part of it; but the last byte of a raw binary secret
/// (`head -c 32 /dev/urandom > f`) is `0x0a` one time in 256, and removing it
/// would leave 31 bytes. So a file of at least [`MIN_SECRET_LEN`] bytes is
/// never refused as too short, and every file accepted under the old rule
/// (always strip) still gives the same bytes, hence the same keys.
fn strip_one_newline(bytes: &mut Vec<u8>) {
    let newline = if bytes.ends_with(b"\r\n") {
        2
    } else if bytes.ends_with(b"\n") {
        1
    } else {
        return;
    };
    let kept = bytes.len().saturating_sub(newline);
    if kept >= MIN_SECRET_LEN {
        bytes.truncate(kept);
    }
}

/// What a file that is not a regular file is, for an error message.
fn kind_name(file_type: FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// The file must belong to this process's user or to root.
pub(crate) fn check_owner(path: &Path, file_uid: u32, euid: u32) -> Result<(), SecretsError> {
    if file_uid == euid || file_uid == 0 {
        Ok(())
    } else {
        Err(SecretsError::WrongOwner {
            path: path.to_owned(),
            expected_uid: euid,
            actual_uid: file_uid,
        })
    }
}

/// Group and others must have no permission bits.
pub(crate) fn check_mode(path: &Path, mode: u32) -> Result<(), SecretsError> {
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(SecretsError::TooPermissive {
            mode,
            path: path.to_owned(),
        })
    }
}

/// The one relaxation of [`check_mode`]: the kubelet makes a secret volume's
/// `defaultMode: 0400` into 0440 when the pod has an `fsGroup` (group
/// `fsGroup`). Such a file is accepted when all of these hold, and refused as
/// too open otherwise:
///
/// * its mode grants the group read and nothing else, and others nothing
///   (`mode & 0o077 == 0o040`);
/// * it sits in the kubelet's layout: the opened file is `DIR/..STAMP/NAME`
///   and `DIR/..data` is a symlink to exactly `..STAMP`;
/// * its group is this process's effective group or one of its supplementary
///   groups, and no other user is in that group: `/etc/group` lists no member
///   but this process's user, and `/etc/passwd` no other user with it as
///   primary group.
///
/// Then the group gives no one but this process's own user (and root)
/// read access, which is what the owner-only rule protects.
fn check_kubelet_group_mode(
    path: &Path,
    mode: u32,
    gid: u32,
    resolved: Option<&Path>,
) -> Result<(), SecretsError> {
    let too_open = || SecretsError::TooPermissive {
        mode,
        path: path.to_owned(),
    };
    if mode & 0o077 != 0o040 || !resolved.is_some_and(in_kubelet_layout) {
        return Err(too_open());
    }
    let status = read_proc_status()?;
    let (euid, groups) = parse_ids(&status).ok_or(SecretsError::Io {
        path: PathBuf::from(PROC_STATUS),
        kind: io::ErrorKind::InvalidData,
    })?;
    if !groups.contains(&gid) {
        return Err(too_open());
    }
    let passwd = read_optional("/etc/passwd")?;
    let group = read_optional("/etc/group")?;
    if !group_is_private(gid, euid, &passwd, &group) {
        return Err(too_open());
    }
    tracing::info!(
        gid,
        "secret file is group-readable in a Kubernetes secret volume (fsGroup); the group is this process's own and has no other member"
    );
    Ok(())
}

/// Whether `file` is `DIR/..STAMP/NAME` with `DIR/..data -> ..STAMP`, the
/// layout of the kubelet's atomic writer.
fn in_kubelet_layout(file: &Path) -> bool {
    let Some(stamp_dir) = file.parent() else {
        return false;
    };
    let Some(stamp) = stamp_dir.file_name().and_then(|s| s.to_str()) else {
        return false;
    };
    if !stamp.starts_with("..") || stamp == ".." || stamp == "..data" {
        return false;
    }
    let Some(dir) = stamp_dir.parent() else {
        return false;
    };
    fs::read_link(dir.join("..data")).is_ok_and(|target| target.as_os_str() == stamp)
}

/// Whether no user other than `euid` is in group `gid`, per the `passwd` and
/// `group` databases' text (an absent file lists no one).
fn group_is_private(gid: u32, euid: u32, passwd: &str, group: &str) -> bool {
    let mut own_names = Vec::new();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let (Some(name), Some(uid), Some(primary)) = (f.first(), f.get(2), f.get(3)) else {
            continue;
        };
        let (Ok(uid), Ok(primary)) = (uid.parse::<u32>(), primary.parse::<u32>()) else {
            continue;
        };
        if uid == euid {
            own_names.push(*name);
        } else if primary == gid {
            return false;
        }
    }
    group.lines().all(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let is_this = f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(gid);
        !is_this
            || f.get(3).is_none_or(|members| {
                members
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .all(|m| own_names.contains(&m))
            })
    })
}

/// A system database's text; an absent file is empty.
fn read_optional(path: &str) -> Result<String, SecretsError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(SecretsError::Io {
            path: PathBuf::from(path),
            kind: e.kind(),
        }),
    }
}

const PROC_STATUS: &str = "/proc/self/status";

fn read_proc_status() -> Result<String, SecretsError> {
    fs::read_to_string(PROC_STATUS).map_err(|e| SecretsError::Io {
        path: PathBuf::from(PROC_STATUS),
        kind: e.kind(),
    })
}

/// The effective uid and every group of this process (effective gid and
/// supplementary groups), from `/proc/self/status`.
fn parse_ids(status: &str) -> Option<(u32, Vec<u32>)> {
    let euid = parse_euid(status)?;
    let egid = status
        .lines()
        .find_map(|line| line.strip_prefix("Gid:"))
        .and_then(|gids| gids.split_whitespace().nth(1))
        .and_then(|g| g.parse().ok())?;
    let mut groups = vec![egid];
    if let Some(line) = status.lines().find_map(|l| l.strip_prefix("Groups:")) {
        for g in line.split_whitespace() {
            groups.push(g.parse().ok()?);
        }
    }
    Some((euid, groups))
}

/// This process's effective uid, from the `Uid:` line of `/proc/self/status`
/// (real, effective, saved, filesystem).
fn current_euid() -> Result<u32, SecretsError> {
    const STATUS: &str = "/proc/self/status";
    let failed = |kind| SecretsError::Io {
        path: PathBuf::from(STATUS),
        kind,
    };
    let status = fs::read_to_string(STATUS).map_err(|e| failed(e.kind()))?;
    parse_euid(&status).ok_or(failed(io::ErrorKind::InvalidData))
}

fn parse_euid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_uid() {
        let status = "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n";
        assert_eq!(parse_euid(status), Some(1001));
        assert_eq!(parse_euid("Name:\tx\n"), None);
        assert_eq!(parse_euid("Uid:\t1000\n"), None);
        assert_eq!(parse_euid("Uid:\tx\ty\n"), None);
        assert!(current_euid().is_ok());
    }

    #[test]
    fn owner_rule() {
        let p = Path::new("/s");
        assert!(check_owner(p, 1000, 1000).is_ok());
        assert!(check_owner(p, 0, 1000).is_ok());
        let err = check_owner(p, 1001, 1000).unwrap_err();
        assert!(matches!(
            err,
            SecretsError::WrongOwner {
                expected_uid: 1000,
                actual_uid: 1001,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "secret file \"/s\" is owned by uid 1001, expected uid 1000 (this process) or 0; run chown 1000 \"/s\""
        );
    }

    #[test]
    fn mode_rule() {
        let p = Path::new("/s");
        for ok in [0o100600, 0o100400, 0o100700, 0o100000] {
            assert!(check_mode(p, ok).is_ok(), "{ok:o}");
        }
        for bad in [0o100644, 0o100640, 0o100604, 0o100601, 0o100610, 0o100666] {
            assert!(check_mode(p, bad).is_err(), "{bad:o}");
        }
        assert_eq!(
            check_mode(p, 0o100644).unwrap_err().to_string(),
            "permissions 0644 for \"/s\" are too open; run chmod 600 \"/s\" (in Kubernetes, set defaultMode: 0400 on the secret volume)"
        );
    }

    #[test]
    fn a_group_is_private_when_no_other_user_is_in_it() {
        let passwd =
            "root:x:0:0::/root:/bin/sh\nsvc:x:1000:2000::/:/bin/sh\nother:x:1001:3000::/:/bin/sh\n";
        let group = "root:x:0:\nfs:x:2000:svc\nshared:x:3000:\nmixed:x:4000:svc,other\n";
        assert!(group_is_private(0, 0, passwd, group));
        assert!(group_is_private(2000, 1000, passwd, group));
        // Not listed anywhere (a pod's fsGroup): no one else is in it.
        assert!(group_is_private(5000, 1000, passwd, group));
        assert!(group_is_private(5000, 1000, "", ""));
        // Another user's primary group, or a listed member who is not us.
        assert!(!group_is_private(3000, 1000, passwd, group));
        assert!(!group_is_private(4000, 1000, passwd, group));
        assert!(!group_is_private(2000, 0, passwd, group));
    }

    #[test]
    fn parses_effective_and_supplementary_groups() {
        let status = "Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t2000 3000 \n";
        assert_eq!(parse_ids(status), Some((2, vec![6, 2000, 3000])));
        assert_eq!(
            parse_ids("Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\n"),
            Some((2, vec![6]))
        );
        assert_eq!(parse_ids("Uid:\t1\t2\t3\t4\n"), None);
    }

    #[test]
    fn newline_stripping() {
        let text = [b'k'; 40];
        let cases: [(Vec<u8>, Vec<u8>); 8] = [
            ([&text[..], b"\n"].concat(), text.to_vec()),
            ([&text[..], b"\r\n"].concat(), text.to_vec()),
            ([&text[..], b"\n\n"].concat(), [&text[..], b"\n"].concat()),
            (text.to_vec(), text.to_vec()),
            ([&text[..], b"\r"].concat(), [&text[..], b"\r"].concat()),
            // Stripping would leave fewer than 32 bytes: the file is kept whole.
            (
                [&[7u8; 31][..], b"\n"].concat(),
                [&[7u8; 31][..], b"\n"].concat(),
            ),
            (
                [&[7u8; 30][..], b"\r\n"].concat(),
                [&[7u8; 30][..], b"\r\n"].concat(),
            ),
            // Short files are left for the length check to refuse.
            (b"abc\n".to_vec(), b"abc\n".to_vec()),
        ];
        for (input, want) in cases {
            let mut v = input.clone();
            strip_one_newline(&mut v);
            assert_eq!(v, want, "{input:?}");
        }
        let mut exactly = [&[7u8; 32][..], b"\n"].concat();
        strip_one_newline(&mut exactly);
        assert_eq!(exactly, [7u8; 32]);
    }

    /// A reader that hands out its bytes a few at a time, after an
    /// interruption, then fails or ends as told.
    struct Flaky {
        data: Vec<u8>,
        at: usize,
        interrupted: bool,
        then: Option<io::ErrorKind>,
    }

    impl Flaky {
        fn new(data: &[u8], then: Option<io::ErrorKind>) -> Flaky {
            Flaky {
                data: data.to_vec(),
                at: 0,
                interrupted: false,
                then,
            }
        }
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let rest = &self.data[self.at..];
            if rest.is_empty() {
                return match self.then {
                    Some(kind) => Err(kind.into()),
                    None => Ok(0),
                };
            }
            let n = rest.len().min(buf.len()).min(5);
            buf[..n].copy_from_slice(&rest[..n]);
            self.at = self.at.saturating_add(n);
            Ok(n)
        }
    }

    #[test]
    fn a_stream_read_is_resumed_after_an_interruption_and_fails_on_an_error() {
        let p = Path::new("-");
        let secret = [9u8; 40];
        let got = read_stream(p, Flaky::new(&secret, None)).unwrap();
        assert_eq!(&got[..], &secret[..]);
        // A real error ends the read with that error, not a retry.
        assert!(matches!(
            read_stream(p, Flaky::new(&secret, Some(io::ErrorKind::BrokenPipe))),
            Err(SecretsError::Io {
                kind: io::ErrorKind::BrokenPipe,
                ..
            })
        ));
    }

    /// A file shorter or longer than `fstat` said while it is read changed
    /// under the reader: refused as changed, not as an I/O error.
    #[test]
    fn a_file_that_changes_length_while_read_is_refused_as_changed() {
        let p = Path::new("/s");
        let shrunk = read_regular(p, io::Cursor::new(vec![1u8; 30]), 40);
        assert!(
            matches!(shrunk, Err(SecretsError::Changed { .. })),
            "{shrunk:?}"
        );
        let grown = read_regular(p, io::Cursor::new(vec![1u8; 41]), 40);
        assert!(
            matches!(grown, Err(SecretsError::Changed { .. })),
            "{grown:?}"
        );
        let same = read_regular(p, io::Cursor::new(vec![1u8; 40]), 40).unwrap();
        assert_eq!(same.len(), 40);
        let failed = read_regular(
            p,
            Flaky::new(&[], Some(io::ErrorKind::PermissionDenied)),
            40,
        );
        assert!(
            matches!(
                failed,
                Err(SecretsError::Io {
                    kind: io::ErrorKind::PermissionDenied,
                    ..
                })
            ),
            "{failed:?}"
        );
    }

    #[test]
    fn descriptor_paths() {
        for yes in ["/dev/stdin", "/dev/fd/0", "/dev/fd/63", "/proc/self/fd/12"] {
            assert!(names_a_descriptor(Path::new(yes)), "{yes}");
        }
        for no in [
            "/dev/fd/",
            "/dev/fd/x",
            "/dev/fd/1/x",
            "/dev/fd/../x",
            "/proc/1/fd/3",
            "dev/fd/3",
            "/dev/zero",
            "/etc/vram/secret",
            "-",
        ] {
            assert!(!names_a_descriptor(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn credential_names() {
        let dir = Path::new("/run/credentials/x.service");
        assert_eq!(
            credential_path(dir, "worker-secret").unwrap(),
            dir.join("worker-secret")
        );
        assert!(credential_path(dir, "a.b").is_ok());
        for bad in ["", ".", "..", "a/b", "/abs", "../x", "a\0b"] {
            assert!(
                matches!(
                    credential_path(dir, bad),
                    Err(SecretsError::InvalidCredentialName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(credential_path(dir, &"n".repeat(256)).is_err());
        assert!(credential_path(dir, &"n".repeat(255)).is_ok());
    }
}
