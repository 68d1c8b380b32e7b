//! Reading files straight out of zip archives, nested archives included,
//! without extracting anything to disk.
//!
//! A member that is itself a zip (the course's `training.zip` holds
//! `PALM-Training400/PALM-Training400.zip`) is opened in place when it is
//! stored uncompressed (a window onto the outer file, read with positioned
//! reads, so parallel readers never share a cursor); a deflated inner archive is
//! inflated once into memory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zip::ZipArchive;

use super::error::{DataError, Result};

/// A cheap-to-clone `Read + Seek` over a file window or an in-memory buffer.
#[derive(Clone, Debug)]
pub struct ArchiveReader {
    backing: Backing,
    start: u64,
    len: u64,
    pos: u64,
}

#[derive(Clone, Debug)]
enum Backing {
    File(Arc<File>),
    Memory(Arc<[u8]>),
}

impl ArchiveReader {
    fn file(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(ArchiveReader {
            backing: Backing::File(Arc::new(file)),
            start: 0,
            len,
            pos: 0,
        })
    }

    fn memory(buf: Vec<u8>) -> Self {
        let len = buf.len() as u64;
        ArchiveReader {
            backing: Backing::Memory(buf.into()),
            start: 0,
            len,
            pos: 0,
        }
    }

    fn window(&self, start: u64, len: u64) -> Self {
        ArchiveReader {
            backing: self.backing.clone(),
            start: self.start + start,
            len,
            pos: 0,
        }
    }
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let at = self.start + self.pos;
        let got = match &self.backing {
            Backing::File(f) => read_at(f, &mut buf[..n], at)?,
            Backing::Memory(m) => {
                let at = at as usize;
                buf[..n].copy_from_slice(&m[at..at + n]);
                n
            }
        };
        self.pos += got as u64;
        Ok(got)
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, at)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, at)
}

impl Seek for ArchiveReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before start"));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// An open zip archive (possibly nested inside another) that can be read from
/// several threads at once.
#[derive(Debug)]
pub struct ZipHandle {
    /// Display path: the archive's file path, with `/member.zip` appended for
    /// each level of nesting.
    pub path: PathBuf,
    archive: ZipArchive<ArchiveReader>,
}

fn not_a_zip(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::NotAZip {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl ZipHandle {
    /// Opens the zip file at `path`.
    pub fn open(path: &Path) -> Result<Arc<ZipHandle>> {
        let f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let r = ArchiveReader::file(f).map_err(|e| DataError::io(path, e))?;
        let archive = ZipArchive::new(r).map_err(|e| not_a_zip(path, e))?;
        Ok(Arc::new(ZipHandle {
            path: path.to_path_buf(),
            archive,
        }))
    }

    /// Names of all members that are files (directories left out), in archive order.
    pub fn file_names(&self) -> Vec<String> {
        let mut a = self.archive.clone();
        (0..a.len())
            .filter_map(|i| {
                let f = a.by_index_raw(i).ok()?;
                (!f.is_dir()).then(|| match f.name() {
                    Ok(n) => n.into_owned(),
                    Err(_) => String::from_utf8_lossy(f.name_raw()).into_owned(),
                })
            })
            .collect()
    }

    /// The display path of member `name`.
    pub fn member_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads member `name` whole.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut a = self.archive.clone();
        let shown = self.member_path(name);
        let mut f = a.by_name(name).map_err(|e| match e {
            zip::result::ZipError::FileNotFound => DataError::NotFound {
                path: shown.clone(),
                what: "archive member".into(),
            },
            e => not_a_zip(&shown, e),
        })?;
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf).map_err(|e| DataError::io(&shown, e))?;
        Ok(buf)
    }

    /// Opens member `name`, itself a zip archive, as a nested archive.
    pub fn open_nested(&self, name: &str) -> Result<Arc<ZipHandle>> {
        let shown = self.member_path(name);
        let mut a = self.archive.clone();
        let (stored, start, size) = {
            let f = a.by_name(name).map_err(|e| not_a_zip(&shown, e))?;
            (
                f.compression() == zip::CompressionMethod::Stored,
                f.data_start(),
                f.size(),
            )
        };
        let reader = if let (true, Some(start)) = (stored, start) {
            a.into_inner().window(start, size)
        } else {
            ArchiveReader::memory(self.read(name)?)
        };
        let archive = ZipArchive::new(reader).map_err(|e| not_a_zip(&shown, e))?;
        Ok(Arc::new(ZipHandle { path: shown, archive }))
    }
}
