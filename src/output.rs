//! Atomic output: files are written to a temporary file beside the target and renamed into
//! place, so a killed run leaves either the old file or the new one, never half of one. On
//! Linux the bytes go past the page cache (`O_DIRECT`) where the file system allows it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A file that could not be written: which file or folder, and the I/O error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The folder of the file could not be created.
    #[error("cannot create folder {}", .path.display())]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No temporary file could be created in the folder of the file.
    #[error("cannot create a temporary file in {}", .path.display())]
    CreateTemporary {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the contents failed. The message is the I/O error's alone (it is not given as
    /// a source, which would repeat it).
    #[error("{error}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The temporary file could not be renamed into place.
    #[error("cannot write {}", .path.display())]
    Persist {
        /// The file.
        path: PathBuf,
        /// Why (the temporary file, removed when this is dropped, and the I/O error).
        source: tempfile::PersistError,
    },
}

/// Write a file atomically by calling `fill` on a buffered temporary file.
///
/// `fill` fails with the caller's own error type `E`, which this function passes through;
/// its own failures become `E` through [`From<Error>`].
pub fn write_atomic<E: From<Error>>(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(), E> {
    write_atomic_send(path, |w| fill(w))
}

/// [`write_atomic`] for writers that must be [`Send`] (rust_xlsxwriter's).
pub fn write_atomic_send<E: From<Error>>(
    path: &Path,
    fill: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(special) = special_file(path) {
        return fill_buffered(special, path, fill);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateFolder {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(".rulebook-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|source| Error::CreateTemporary {
            path: dir.to_path_buf(),
            source,
        })?;
    // Past the page cache where the file system allows it (see `Direct`).
    #[cfg(target_os = "linux")]
    {
        let direct = Direct::open(tmp.path(), tmp.as_file(), (DIRECT_FIRST, DIRECT_STAGE));
        if let Some(mut w) = direct {
            fill(&mut w)?;
            w.finish().map_err(|error| Error::Write {
                path: path.to_path_buf(),
                error,
            })?;
            return persist(tmp, path);
        }
    }
    write_buffered(tmp, path, fill)
}

/// `path` opened for writing if it names something that is not a regular file or folder:
/// `/dev/null`, `/dev/stdout`, a terminal, a named pipe. Such a target is written in place,
/// since renaming a temporary file over it would replace the device with a file (as root,
/// `--out /dev/null` would otherwise leave a regular file where the null device was).
///
/// Paths under `/dev` and `/proc` are always written in place: `/dev/stdout` redirected to a
/// file is a regular file behind a link, and renaming over it would replace the link. Such a
/// file is added to at its end: the shell opened it (`>` emptied it, `>>` keeps what it
/// holds), and what the run printed before is not overwritten.
fn special_file(path: &Path) -> Option<std::fs::File> {
    let meta = std::fs::metadata(path).ok()?;
    let system = cfg!(unix) && (path.starts_with("/dev") || path.starts_with("/proc"));
    if meta.is_dir() || (meta.is_file() && !system) {
        return None;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .append(meta.is_file())
        .open(path)
        .ok()
}

/// Call `fill` on `inner` behind a 1 MiB buffer, then flush it (`path` names it in errors):
/// a device or pipe written in place, or the page-cache path's temporary file.
fn fill_buffered<W: Write + Send, E: From<Error>>(
    inner: W,
    path: &Path,
    fill: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), E>,
) -> Result<(), E> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, inner);
    fill(&mut w)?;
    w.flush().map_err(|error| Error::Write {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(())
}

/// The end of [`write_atomic_send`] through the page cache, flushed as it goes.
fn write_buffered<E: From<Error>>(
    tmp: tempfile::NamedTempFile,
    path: &Path,
    fill: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), E>,
) -> Result<(), E> {
    std::thread::scope(|scope| {
        let file = Flushing {
            file: tmp.as_file(),
            every: FLUSH_EVERY,
            since: 0,
            scope,
            flusher: None,
        };
        fill_buffered(file, path, fill)
    })?;
    persist(tmp, path)
}

/// Sync the finished temporary file and rename it to `path`.
fn persist<E: From<Error>>(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), E> {
    tmp.as_file().sync_all().ok();
    // Temporary files are private (0600); outputs are ordinary files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .ok();
    }
    tmp.persist(path).map_err(|source| Error::Persist {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// Bytes written between two background flushes of a file's data to disk.
const FLUSH_EVERY: u64 = 64 << 20;

/// A file being written that has its data flushed to disk in the background every
/// [`FLUSH_EVERY`] bytes, so that the `fsync` before the rename waits only for the last part
/// of a large file rather than all of it (2.3 GB of findings took 1.2 s to sync at the end).
struct Flushing<'s, 'e> {
    file: &'e std::fs::File,
    /// Bytes between flushes ([`FLUSH_EVERY`]).
    every: u64,
    /// Bytes written since the last flush began.
    since: u64,
    scope: &'s std::thread::Scope<'s, 'e>,
    /// The flush under way, if any; a new one starts only once it is done.
    flusher: Option<std::thread::ScopedJoinHandle<'s, ()>>,
}

impl Write for Flushing<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since += n as u64;
        if self.since >= self.every && self.flusher.as_ref().is_none_or(|h| h.is_finished()) {
            self.since = 0;
            let file = self.file;
            // A failed flush is not an error here: the final `fsync` is the one that counts.
            self.flusher = Some(self.scope.spawn(move || {
                file.sync_data().ok();
            }));
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Bytes staged before each write that goes past the page cache ([`Direct`]), at most and at
/// first.
#[cfg(target_os = "linux")]
const DIRECT_STAGE: usize = 8 << 20;
#[cfg(target_os = "linux")]
const DIRECT_FIRST: usize = 1 << 20;

/// Alignment of a write past the page cache: of the memory, the file offset and the length.
#[cfg(target_os = "linux")]
const DIRECT_ALIGN: usize = 4096;

/// A file written past the page cache (Linux `O_DIRECT`): bytes are staged in an aligned
/// buffer and written from there straight to the disk, a stage at a time, the last part
/// padded and the file then cut to its length. Copying 2.3 GB of findings into the page
/// cache cost this 2-core VM 1.7–5.9 s of system time (`dd … conv=fsync`: 2.6–7.0 s), and
/// writing them past it 0.3 s (1.4–1.5 s). Where the file system refuses (`EINVAL` from
/// tmpfs, odd block sizes, any other failure), the writes go through the page cache instead,
/// from the same buffer.
///
/// A direct write returns only once the disk has the bytes, so from the second stage on a
/// writing thread ([`Writing`]) writes one stage while the next is filled: at 200k members
/// the findings' 2.3 GB take the disk about 1.3 s, which now overlaps with encoding them
/// instead of adding to it. A file of one stage (most PDFs) starts no thread.
#[cfg(target_os = "linux")]
struct Direct {
    /// Where stages go while no thread writes them (the thread takes it when it starts).
    sink: Option<Sink>,
    /// The writing thread, once a stage has filled.
    writing: Option<Writing>,
    /// The stage being filled.
    cur: Stage,
    /// Stages made so far (at most two: one filled while the other is written).
    made: usize,
    /// Bytes written at a time: from the first stage (1 MiB) up to `max_stage`, four times
    /// larger each time, as the file grows (a small file, such as one PDF of thousands,
    /// needs no large buffer zeroed).
    stage: usize,
    max_stage: usize,
    /// Bytes staged in `cur`.
    len: usize,
    /// Where in the file the staged bytes go.
    offset: u64,
}

/// An aligned buffer: `size` bytes from `at` on, `at` aligned to [`DIRECT_ALIGN`].
#[cfg(target_os = "linux")]
struct Stage {
    buf: Vec<u8>,
    at: usize,
    size: usize,
}

#[cfg(target_os = "linux")]
impl Stage {
    fn new(size: usize) -> Stage {
        let buf = vec![0u8; size + DIRECT_ALIGN];
        let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
        Stage { buf, at, size }
    }

    /// No buffer yet.
    fn none() -> Stage {
        Stage {
            buf: Vec::new(),
            at: 0,
            size: 0,
        }
    }

    /// The first `n` bytes (`n` at most `size`, a multiple of [`DIRECT_ALIGN`]).
    fn bytes(&self, n: usize) -> &[u8] {
        &self.buf[self.at..self.at + n]
    }

    fn bytes_mut(&mut self, from: usize, to: usize) -> &mut [u8] {
        &mut self.buf[self.at + from..self.at + to]
    }
}

/// The two handles of the file: past the page cache, until the file system refuses, and
/// through it.
#[cfg(target_os = "linux")]
struct Sink {
    direct: Option<std::fs::File>,
    plain: std::fs::File,
}

#[cfg(target_os = "linux")]
impl Sink {
    /// Write the first `n` bytes of `stage` (`n` a multiple of [`DIRECT_ALIGN`] unless it is
    /// the end of the file, then padded) at `offset`.
    fn write(&mut self, stage: &Stage, n: usize, offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if let Some(d) = &self.direct {
            let padded = n.next_multiple_of(DIRECT_ALIGN);
            if d.write_all_at(stage.bytes(padded), offset).is_ok() {
                return Ok(());
            }
            // The file system does not take direct writes (or not these): through the page
            // cache from here on, which reports the error if it was not about that.
            self.direct = None;
        }
        self.plain.write_all_at(stage.bytes(n), offset)
    }
}

/// The thread that writes filled stages in order, and the way back for emptied ones.
#[cfg(target_os = "linux")]
struct Writing {
    /// A stage, its bytes, and where they go.
    to: std::sync::mpsc::Sender<(Stage, usize, u64)>,
    back: std::sync::mpsc::Receiver<Stage>,
    /// Ends with the first error, or with the sink when the stages stop coming.
    thread: std::thread::JoinHandle<std::io::Result<Sink>>,
}

#[cfg(target_os = "linux")]
impl Writing {
    fn start(mut sink: Sink) -> std::io::Result<Writing> {
        let (to, stages) = std::sync::mpsc::channel::<(Stage, usize, u64)>();
        let (give_back, back) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rulebook-write".into())
            .spawn(move || {
                for (stage, n, offset) in stages {
                    sink.write(&stage, n, offset)?;
                    // Nobody waits for it once the file is finished.
                    give_back.send(stage).ok();
                }
                Ok(sink)
            })?;
        Ok(Writing { to, back, thread })
    }

    /// Wait for the writes to end: the sink, or the first error.
    fn end(self) -> std::io::Result<Sink> {
        drop(self.to);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the writing thread panicked")))
    }
}

#[cfg(target_os = "linux")]
impl Direct {
    /// Open `path` (the file `plain` is open on) again past the page cache; `None` when it
    /// cannot be.
    /// `stages`: the first stage's size and the largest.
    fn open(path: &Path, plain: &std::fs::File, stages: (usize, usize)) -> Option<Direct> {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        Direct::new(Some(direct), plain, stages).ok()
    }

    fn new(
        direct: Option<std::fs::File>,
        plain: &std::fs::File,
        (first, max): (usize, usize),
    ) -> std::io::Result<Direct> {
        let max_stage = max.next_multiple_of(DIRECT_ALIGN);
        let stage = first.next_multiple_of(DIRECT_ALIGN).min(max_stage);
        Ok(Direct {
            sink: Some(Sink {
                direct,
                plain: plain.try_clone()?,
            }),
            writing: None,
            cur: Stage::new(stage),
            made: 1,
            stage,
            max_stage,
            len: 0,
            offset: 0,
        })
    }

    /// Hand the full stage to the writing thread (starting it the first time) and take an
    /// empty one of the next size.
    fn send(&mut self) -> std::io::Result<()> {
        if let Some(sink) = self.sink.take() {
            self.writing = Some(Writing::start(sink)?);
        }
        let Some(w) = self.writing.as_ref() else {
            return Err(std::io::Error::other("the writing thread stopped"));
        };
        let next = (self.stage * 4).min(self.max_stage);
        // Two stages at most: a new one while there are fewer, else the one being written.
        let empty = if self.made < 2 {
            self.made += 1;
            Stage::new(next)
        } else {
            Stage::none()
        };
        let full = std::mem::replace(&mut self.cur, empty);
        if w.to.send((full, self.stage, self.offset)).is_err() {
            return Err(self.end_writing());
        }
        self.offset += self.stage as u64;
        self.len = 0;
        self.stage = next;
        if self.cur.size == 0 {
            // None comes back only after an error, which ending the thread reports.
            let Ok(s) = w.back.recv() else {
                return Err(self.end_writing());
            };
            self.cur = if s.size < next { Stage::new(next) } else { s };
        }
        Ok(())
    }

    /// The error that ended the writing thread.
    fn end_writing(&mut self) -> std::io::Error {
        match self.writing.take().map(Writing::end) {
            Some(Err(e)) => e,
            _ => std::io::Error::other("the writing thread stopped"),
        }
    }

    /// Write what is staged, wait for every write, and cut the file to the bytes written
    /// (the last direct write was padded). Returns whether every write went past the page
    /// cache.
    fn finish(mut self) -> std::io::Result<bool> {
        let n = self.len;
        // The padding is zeros (the buffer may hold an earlier stage's bytes there).
        let padded = n.next_multiple_of(DIRECT_ALIGN);
        self.cur.bytes_mut(n, padded).fill(0);
        let mut sink = match (self.writing.take(), self.sink.take()) {
            (Some(w), _) => w.end()?,
            (None, Some(sink)) => sink,
            (None, None) => return Err(std::io::Error::other("the writing thread stopped")),
        };
        sink.write(&self.cur, n, self.offset)?;
        sink.plain.set_len(self.offset + n as u64)?;
        Ok(sink.direct.is_some())
    }
}

/// A file given up on (an error, a panic) still waits for its writing thread.
#[cfg(target_os = "linux")]
impl Drop for Direct {
    fn drop(&mut self) {
        if let Some(w) = self.writing.take() {
            w.end().ok();
        }
    }
}

#[cfg(target_os = "linux")]
impl Write for Direct {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(self.stage - self.len);
        self.cur
            .bytes_mut(self.len, self.len + n)
            .copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == self.stage {
            self.send()?;
        }
        Ok(n)
    }

    /// Nothing: the staged bytes wait for a whole stage or [`Direct::finish`].
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Write bytes atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic(path, |w| {
        w.write_all(bytes).map_err(|error| Error::Write {
            path: path.to_path_buf(),
            error,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device is written in place, never replaced by a renamed temporary file.
    #[cfg(unix)]
    #[test]
    fn a_device_is_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        let is_device = |p: &Path| std::fs::metadata(p).unwrap().file_type().is_char_device();
        // (Some sandboxes have a regular file there: nothing to protect.)
        if is_device(null) {
            write_bytes(null, b"gone").unwrap();
            assert!(is_device(null));
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return;
        }
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_bytes(&fifo, b"through the pipe").unwrap();
        // Checked before joining: a pipe replaced by a file would leave the reader waiting.
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(reader.join().unwrap(), b"through the pipe");
    }

    /// A file behind `/proc/self/fd/N` (as `/dev/stdout` is behind `>>`) is written in place
    /// and added to, not overwritten from its start.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_behind_a_descriptor_is_added_to() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, b"before\n").unwrap();
        let mut held = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        held.write_all(b"printed\n").unwrap();
        let link = PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()));
        write_bytes(&link, b"output\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"before\nprinted\noutput\n");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_bytes(&p, b"old").unwrap();
        write_bytes(&p, b"new content").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new content");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1);
    }

    /// A file written past the page cache holds every byte, in order, and no padding:
    /// writes of every size, across stage boundaries and growing stages, ending inside and
    /// at the end of a stage; and the same through the page cache when direct writes are
    /// refused.
    #[cfg(target_os = "linux")]
    #[test]
    fn direct_writes_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut direct_used = false;
        // Stages of 8 KiB, 32 KiB, then 36 KiB (the largest, 33,000 rounded up to 4 KiB).
        let stages = (8192, 33_000);
        for total in [
            0usize,
            1,
            4095,
            4096,
            8192,
            8193,
            8192 + 32_768,
            8192 + 32_768 + 17,
            8192 + 32_768 + 2 * 36_864,
            200_000,
        ] {
            let want: Vec<u8> = (0..total as u32).map(|i| (i % 251) as u8 + 1).collect();
            for direct in [true, false] {
                let p = dir.path().join(format!("f{total}{direct}"));
                // A longer file before: the end is cut to what was written.
                std::fs::write(&p, vec![b'x'; total + 10_000]).unwrap();
                let plain = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                let mut w = if direct {
                    match Direct::open(&p, &plain, stages) {
                        Some(w) => w,
                        None => continue,
                    }
                } else {
                    Direct::new(None, &plain, stages).unwrap()
                };
                let mut sizes = [1usize, 7, 4096, 5000, 8192, 12_345].iter().cycle();
                let mut rest = &want[..];
                while !rest.is_empty() {
                    let n = (*sizes.next().unwrap()).min(rest.len());
                    w.write_all(&rest[..n]).unwrap();
                    rest = &rest[n..];
                }
                w.flush().unwrap();
                direct_used |= w.finish().unwrap();
                assert_eq!(
                    std::fs::read(&p).unwrap(),
                    want,
                    "{total} bytes, direct {direct}"
                );
            }
        }
        // Which of the two was tested depends on the temporary folder's file system.
        eprintln!("direct writes made: {direct_used}");
    }

    /// A write that fails on the writing thread comes back as an error from a later write or
    /// from the end, whichever comes first; nothing hangs, nothing panics.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_background_write_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("read-only");
        std::fs::write(&p, b"").unwrap();
        // Read-only handles: every write fails (EBADF).
        let plain = std::fs::File::open(&p).unwrap();
        for total in [100usize, 8192, 8192 + 32_768 + 5, 200_000] {
            let mut w = Direct::new(None, &plain, (8192, 33_000)).unwrap();
            let data = vec![7u8; total];
            let written = data.chunks(5000).try_for_each(|c| w.write_all(c));
            let result = written.and_then(|()| w.finish().map(|_| ()));
            assert!(result.is_err(), "{total} bytes");
        }
        // Given up on halfway (the caller's own error): dropping it waits for the thread.
        let mut w = Direct::new(None, &plain, (8192, 33_000)).unwrap();
        w.write_all(&[1u8; 20_000]).unwrap();
        drop(w);
    }

    /// A file flushed in the background while it is written holds every byte, in order.
    #[test]
    fn flushing_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let file = std::fs::File::create(&p).unwrap();
        let want: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|scope| {
            let mut w = Flushing {
                file: &file,
                every: 4096,
                since: 0,
                scope,
                flusher: None,
            };
            for piece in want.chunks(1000) {
                w.write_all(piece).unwrap();
            }
            w.flush().unwrap();
        });
        file.sync_all().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), want);
    }
}
