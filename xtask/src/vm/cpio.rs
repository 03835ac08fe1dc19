//! A writer for the cpio "newc" format, the only archive format the kernel
//! unpacks as an initramfs.
//!
//! Writing it here instead of piping a file list into `cpio -H newc` lets the
//! image hold files under guest paths that differ from their host paths,
//! generated files and device nodes, without staging a directory tree first.
//! The kernel's unpacker creates no missing parent directories, so
//! [`Archive`] adds every parent before the entry that needs it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// The source of an entry's content.
pub enum Content {
    Directory,
    /// A host file, read (following symlinks) when the archive is written.
    HostFile(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
    CharDevice {
        major: u32,
        minor: u32,
    },
}

pub struct Entry {
    /// Absolute guest path, such as `/usr/bin/vethtrace`.
    pub path: String,
    /// Permission bits only; the file type comes from `content`.
    pub permissions: u32,
    pub content: Content,
}

/// The entries of one cpio archive, in the order they will be written.
#[derive(Default)]
pub struct Archive {
    entries: Vec<Entry>,
    paths: BTreeSet<String>,
}

impl Archive {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    pub fn add_directory(&mut self, path: &str) -> anyhow::Result<()> {
        self.push(path, 0o755, Content::Directory)
    }

    /// Adds the host file `source` as `path`; an existing entry for `path` is
    /// left as it is, so adding a shared library twice is harmless.
    pub fn add_host_file(&mut self, path: &str, source: &Path, permissions: u32) -> anyhow::Result<()> {
        if self.contains(path) {
            return Ok(());
        }
        self.push(path, permissions, Content::HostFile(source.to_path_buf()))
    }

    pub fn add_bytes(&mut self, path: &str, bytes: impl Into<Vec<u8>>, permissions: u32) -> anyhow::Result<()> {
        self.push(path, permissions, Content::Bytes(bytes.into()))
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) -> anyhow::Result<()> {
        self.push(path, 0o777, Content::Symlink(target.to_owned()))
    }

    pub fn add_char_device(&mut self, path: &str, major: u32, minor: u32, permissions: u32) -> anyhow::Result<()> {
        self.push(path, permissions, Content::CharDevice { major, minor })
    }

    fn push(&mut self, path: &str, permissions: u32, content: Content) -> anyhow::Result<()> {
        validate_path(path)?;
        if self.paths.contains(path) {
            if matches!(content, Content::Directory) {
                return Ok(());
            }
            bail!("the initramfs already has an entry for {path}");
        }
        if let Some((parent, _)) = path.rsplit_once('/')
            && !parent.is_empty()
        {
            self.add_directory(parent)?;
        }
        self.paths.insert(path.to_owned());
        self.entries.push(Entry {
            path: path.to_owned(),
            permissions,
            content,
        });
        Ok(())
    }

    /// Writes the archive, followed by the `TRAILER!!!` entry that ends it.
    pub fn write_to(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let mut offset = 0u64;
        for (index, entry) in self.entries.iter().enumerate() {
            let inode = u32::try_from(index + 1).context("the initramfs has more than 2^32 entries")?;
            let (mode, data, rdev) = match &entry.content {
                Content::Directory => (S_IFDIR, Vec::new(), (0, 0)),
                Content::HostFile(source) => {
                    let data = std::fs::read(source).with_context(|| format!("failed to read {}", source.display()))?;
                    (S_IFREG, data, (0, 0))
                }
                Content::Bytes(bytes) => (S_IFREG, bytes.clone(), (0, 0)),
                Content::Symlink(target) => (S_IFLNK, target.as_bytes().to_vec(), (0, 0)),
                Content::CharDevice { major, minor } => (S_IFCHR, Vec::new(), (*major, *minor)),
            };
            // The archive stores paths relative to the root.
            let name = entry.path.trim_start_matches('/');
            write_entry(out, &mut offset, inode, mode | entry.permissions, name, &data, rdev)
                .with_context(|| format!("failed to write {} into the initramfs", entry.path))?;
        }
        write_entry(out, &mut offset, 0, 0, "TRAILER!!!", &[], (0, 0)).context("failed to end the initramfs")
    }
}

fn validate_path(path: &str) -> anyhow::Result<()> {
    let valid = path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .skip(1)
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !valid {
        bail!("invalid initramfs path {path:?}: it must be absolute and normalized");
    }
    Ok(())
}

/// Writes one newc header, name and data, each padded to 4 bytes. Every
/// entry gets one link and mtime 0, so equal inputs give equal archives.
fn write_entry(
    out: &mut impl Write,
    offset: &mut u64,
    inode: u32,
    mode: u32,
    name: &str,
    data: &[u8],
    (rdev_major, rdev_minor): (u32, u32),
) -> anyhow::Result<()> {
    let file_size = u32::try_from(data.len()).with_context(|| format!("{name} is larger than 4 GiB"))?;
    let name_size = u32::try_from(name.len() + 1).context("path too long")?;
    let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
    let fields = [
        inode, mode, 0, 0, nlink, 0, file_size, 0, 0, rdev_major, rdev_minor, name_size, 0,
    ];
    let mut header = String::with_capacity(110);
    header.push_str("070701");
    for field in fields {
        header.push_str(&format!("{field:08x}"));
    }
    write_padded(out, offset, &[header.as_bytes(), name.as_bytes(), b"\0"])?;
    write_padded(out, offset, &[data])
}

fn write_padded(out: &mut impl Write, offset: &mut u64, parts: &[&[u8]]) -> anyhow::Result<()> {
    for part in parts {
        out.write_all(part)?;
        *offset += part.len() as u64;
    }
    let padding = (4 - (*offset % 4)) % 4;
    out.write_all(&[0; 3][..padding as usize])?;
    *offset += padding;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_adds_parents_first() {
        let mut archive = Archive::default();
        archive.add_bytes("/usr/bin/tool", b"x".to_vec(), 0o755).unwrap();
        let paths: Vec<&str> = archive.entries().iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(paths, ["/usr", "/usr/bin", "/usr/bin/tool"]);
    }

    #[test]
    fn archive_rejects_relative_path() {
        let mut archive = Archive::default();
        assert!(archive.add_directory("usr").is_err());
        assert!(archive.add_directory("/usr/../etc").is_err());
    }

    #[test]
    fn archive_rejects_duplicate_file() {
        let mut archive = Archive::default();
        archive.add_bytes("/init", b"a".to_vec(), 0o755).unwrap();
        assert!(archive.add_bytes("/init", b"b".to_vec(), 0o755).is_err());
    }

    #[test]
    fn entries_are_aligned_to_four_bytes() {
        let mut archive = Archive::default();
        archive.add_bytes("/a", b"hello".to_vec(), 0o644).unwrap();
        let mut bytes = Vec::new();
        archive.write_to(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        // Header (110) + "a\0" (2) = 112, then "hello" padded to 8.
        assert_eq!(&bytes[112..117], b"hello");
        assert_eq!(&bytes[120..126], b"070701");
    }
}
