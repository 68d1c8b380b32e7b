//! The one error type of the data layer.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while finding, reading or decoding data.
///
/// Every variant names the file (or folder) involved and the reason, so the
/// `Display` text alone tells the user what to fix. The data layer never panics
/// on bad input and never silently skips a sample: it returns one of these.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error while reading or writing `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder that should exist does not.
    #[error("{}: not found ({what})", path.display())]
    NotFound {
        /// Where it was looked for.
        path: PathBuf,
        /// What was being looked for.
        what: String,
    },
    /// A folder (or archive) that should hold images holds none.
    #[error("{}: no images found (expected {expected})", path.display())]
    EmptyFolder {
        /// The folder or archive.
        path: PathBuf,
        /// What was expected in it.
        expected: String,
    },
    /// The image could not be decoded: corrupt, truncated, or not an image at all.
    #[error("{}: cannot decode image: {reason}", path.display())]
    Decode {
        /// The image (for an archive member: `archive.zip/member.jpg`).
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The image decodes but has a pixel format or size that is refused.
    #[error("{}: unsupported image: {reason}", path.display())]
    Unsupported {
        /// The image.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A training image whose name does not start with `H`, `N` or `P`.
    #[error("{}: cannot derive a label from the file name (expected H*, N* or P*)", path.display())]
    BadFileName {
        /// The image.
        path: PathBuf,
    },
    /// The labels table lacks a required column.
    #[error("{}: missing column `{column}` (found: {found})", path.display())]
    MissingColumn {
        /// The CSV or xlsx file.
        path: PathBuf,
        /// The column that is missing.
        column: String,
        /// The header that was found.
        found: String,
    },
    /// A row of the labels table cannot be parsed.
    #[error("{}: row {row}: {reason}", path.display())]
    BadRow {
        /// The CSV or xlsx file.
        path: PathBuf,
        /// 1-based row number in the file (the header is row 1).
        row: usize,
        /// What is wrong.
        reason: String,
    },
    /// A label value that is not 0 or 1.
    #[error("{}: row {row}: bad label value `{value}` (expected 0 or 1)", path.display())]
    BadLabel {
        /// The CSV or xlsx file.
        path: PathBuf,
        /// 1-based row number in the file.
        row: usize,
        /// The value found.
        value: String,
    },
    /// The same image name appears twice.
    #[error("{}: duplicate image name `{name}`", path.display())]
    DuplicateName {
        /// The labels file or image folder where the duplicate was seen.
        path: PathBuf,
        /// The duplicated name.
        name: String,
    },
    /// A labels row names an image that is not there.
    #[error("{}: row {row}: image `{name}` is listed but missing from {}", labels.display(), images.display())]
    MissingImage {
        /// The labels file.
        labels: PathBuf,
        /// 1-based row number.
        row: usize,
        /// The image name.
        name: String,
        /// Where the image was looked for.
        images: PathBuf,
    },
    /// An image that the labels file does not list.
    #[error("{}: image is not listed in {}", path.display(), labels.display())]
    UnlistedImage {
        /// The image.
        path: PathBuf,
        /// The labels file.
        labels: PathBuf,
    },
    /// A file that should be a zip archive is not one.
    #[error("{}: not a valid zip archive: {reason}", path.display())]
    NotAZip {
        /// The file.
        path: PathBuf,
        /// What the zip reader said.
        reason: String,
    },
    /// An xlsx workbook that cannot be read.
    #[error("{}: cannot read xlsx: {reason}", path.display())]
    Xlsx {
        /// The workbook.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },
    /// A malformed MNIST file (IDX or CSV).
    #[error("{}: bad MNIST data: {reason}", path.display())]
    Mnist {
        /// The file (or `<built-in>` for the shipped subset).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A bad argument (batch size 0, bad size string, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Several problems at once (from opening a dataset); all are listed.
    #[error("{}: {} problem(s):\n{}", path.display(), problems.len(), ListDisplay(problems))]
    Problems {
        /// The dataset root.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<DataError>,
    },
}

struct ListDisplay<'a>(&'a [DataError]);

impl fmt::Display for ListDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Shorthand for [`DataError::Decode`].
    pub fn decode(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        DataError::Decode {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DataError::Unsupported`].
    pub fn unsupported(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        DataError::Unsupported {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Result alias of the data layer.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
