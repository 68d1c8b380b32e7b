//! The iChallenge-PM (PALM) dataset in the course's layout: finding the splits,
//! reading the labels, listing the samples.
//!
//! [`open`] takes one folder holding either the course's archives or the
//! extracted folders (or a mix) and finds:
//!
//! | split | extracted (tried first) | archives |
//! |---|---|---|
//! | training | `PALM-Training400/PALM-Training400/*.jpg` or `PALM-Training400/*.jpg` | `PALM-Training400/PALM-Training400.zip`, or `training.zip` (holding `PALM-Training400.zip`, or the images directly) |
//! | validation | `PALM-Validation400/*.jpg` | `validation.zip` |
//! | labels | `PALM-Validation-GT/labels.csv`, then `PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx` | `valid_gt.zip` (holding the xlsx or a csv) |
//!
//! Training labels come from the first letter of the file name: `H` (high
//! myopia) and `N` (normal) are 0, `P` (pathologic myopia) is 1; any other name
//! is a [`DataError::BadFileName`]. Validation labels come from the CSV (header
//! `ID,imgName,Label,Fovea_X,Fovea_Y`; `imgName` and `Label` are required) or
//! directly from the xlsx workbook (first sheet, same columns). Hidden files
//! (`.*`) and `__MACOSX/` members are ignored; every other file in an image
//! folder is a sample (and fails to decode if it is no image).
//!
//! Training samples are sorted by name; validation samples keep the order of
//! the labels table, like the course's reader.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::archive::ZipHandle;
use super::error::{DataError, Result};

/// Folder name of the training images.
pub const TRAIN_DIR: &str = "PALM-Training400";
/// Folder name of the validation images.
pub const VALID_DIR: &str = "PALM-Validation400";
/// Folder name of the validation labels.
pub const GT_DIR: &str = "PALM-Validation-GT";
/// The course's hand-converted labels file (inside [`GT_DIR`]).
pub const LABELS_CSV: &str = "labels.csv";
/// The labels workbook as shipped (inside [`GT_DIR`]).
pub const LABELS_XLSX: &str = "PM_Label_and_Fovea_Location.xlsx";
/// The course's training archive.
pub const TRAIN_ZIP: &str = "training.zip";
/// The inner archive inside [`TRAIN_ZIP`].
pub const TRAIN_INNER_ZIP: &str = "PALM-Training400.zip";
/// The course's validation-images archive.
pub const VALID_ZIP: &str = "validation.zip";
/// The course's validation-labels archive.
pub const GT_ZIP: &str = "valid_gt.zip";

/// Where one image's bytes live.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// A file on disk.
    File(PathBuf),
    /// A member of a (possibly nested) zip archive.
    Zip {
        /// The open archive.
        archive: Arc<ZipHandle>,
        /// The member name inside it.
        member: String,
    },
}

impl ImageSource {
    /// Reads the whole encoded image.
    pub fn read(&self) -> Result<Vec<u8>> {
        match self {
            ImageSource::File(p) => std::fs::read(p).map_err(|e| DataError::io(p, e)),
            ImageSource::Zip { archive, member } => archive.read(member),
        }
    }

    /// The path shown in messages (`archive.zip/member` for archive members).
    pub fn display_path(&self) -> PathBuf {
        match self {
            ImageSource::File(p) => p.clone(),
            ImageSource::Zip { archive, member } => archive.member_path(member),
        }
    }
}

/// Which split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitKind {
    /// `PALM-Training400`.
    Train,
    /// `PALM-Validation400`.
    Valid,
}

/// Where a split's labels came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelsFrom {
    /// From the first letter of each file name (training).
    FileNames,
    /// From a CSV file (display path).
    Csv(PathBuf),
    /// From an xlsx workbook (display path).
    Xlsx(PathBuf),
}

impl std::fmt::Display for LabelsFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelsFrom::FileNames => write!(f, "file names (H/N -> 0, P -> 1)"),
            LabelsFrom::Csv(p) => write!(f, "CSV {}", p.display()),
            LabelsFrom::Xlsx(p) => write!(f, "xlsx {}", p.display()),
        }
    }
}

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File name, e.g. `P0001.jpg` or `V0001.jpg`.
    pub name: String,
    /// 1 = pathologic myopia, 0 = not.
    pub label: u8,
    /// Fovea location in original-image pixels, when the labels table has it.
    pub fovea: Option<(f64, f64)>,
    /// Where the bytes are.
    pub source: ImageSource,
}

/// One split of the dataset.
#[derive(Debug, Clone)]
pub struct Split {
    /// Training or validation.
    pub kind: SplitKind,
    /// The folder or archive the images came from (display path).
    pub location: PathBuf,
    /// Where the labels came from.
    pub labels_from: LabelsFrom,
    /// The samples, in the split's canonical order.
    pub samples: Vec<Sample>,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when the split has no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Number of samples with label 1.
    pub fn positives(&self) -> usize {
        self.samples.iter().filter(|s| s.label == 1).count()
    }
}

/// The opened dataset.
#[derive(Debug, Clone)]
pub struct PalmDataset {
    /// The folder passed to [`open`].
    pub root: PathBuf,
    /// Training split (400 images in the real set).
    pub train: Split,
    /// Validation split (400 images in the real set).
    pub valid: Split,
}

/// Which kind of storage to take the images and labels from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefer {
    /// Extracted folders when present, the archives otherwise. Default.
    #[default]
    Auto,
    /// Only extracted folders.
    Folders,
    /// Only the archives.
    Archives,
}

/// Which labels file to read for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelsChoice {
    /// `labels.csv` when present, the xlsx otherwise. Default.
    #[default]
    Auto,
    /// Only `labels.csv`.
    Csv,
    /// Only `PM_Label_and_Fovea_Location.xlsx`.
    Xlsx,
}

/// Options of [`open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Folders or archives.
    pub prefer: Prefer,
    /// CSV or xlsx labels.
    pub labels: LabelsChoice,
}

/// Opens the dataset under `root` with default options; see the module docs.
///
/// Nothing is decoded yet. All problems found while listing (bad names,
/// labels-table errors, missing or unlisted images, bad archives) are collected:
/// one problem is returned as itself, several as [`DataError::Problems`].
pub fn open(root: impl AsRef<Path>) -> Result<PalmDataset> {
    open_with(root, OpenOptions::default())
}

/// Opens the dataset under `root`; see [`open`].
pub fn open_with(root: impl AsRef<Path>, opts: OpenOptions) -> Result<PalmDataset> {
    let root = root.as_ref();
    let mut problems = Vec::new();
    let train = scan_train(root, opts, &mut problems);
    let valid = scan_valid(root, opts, &mut problems);
    match (train, valid) {
        (Some(train), Some(valid)) if problems.is_empty() => Ok(PalmDataset {
            root: root.to_path_buf(),
            train,
            valid,
        }),
        _ => Err(collapse(root, problems)),
    }
}

pub(crate) fn collapse(root: &Path, mut problems: Vec<DataError>) -> DataError {
    if problems.len() == 1 {
        problems.pop().unwrap()
    } else {
        DataError::Problems {
            path: root.to_path_buf(),
            problems,
        }
    }
}

fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.starts_with("__MACOSX/") || name.contains("/.")
}

fn base_name(member: &str) -> &str {
    member.rsplit('/').next().unwrap_or(member)
}

fn is_image_name(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.ends_with(".jpg") || l.ends_with(".jpeg") || l.ends_with(".png")
}

/// Lists regular, non-hidden files of a folder, sorted by name.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if is_ignored(&name) {
            continue;
        }
        let ft = e.file_type().map_err(|err| DataError::io(e.path(), err))?;
        if ft.is_file() || (ft.is_symlink() && e.path().is_file()) {
            out.push((name, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn dir_has_images(dir: &Path) -> bool {
    list_dir(dir)
        .map(|l| l.iter().any(|(n, _)| is_image_name(n)))
        .unwrap_or(false)
}

/// A candidate set of image files: (name, source) pairs plus the display location.
struct Listing {
    location: PathBuf,
    files: Vec<(String, ImageSource)>,
}

fn listing_from_dir(dir: &Path) -> Result<Listing> {
    let files = list_dir(dir)?
        .into_iter()
        .map(|(n, p)| (n, ImageSource::File(p)))
        .collect();
    Ok(Listing {
        location: dir.to_path_buf(),
        files,
    })
}

/// Lists the file members of an archive, excluding nested `.zip` members.
fn listing_from_zip(z: &Arc<ZipHandle>, problems: &mut Vec<DataError>) -> Listing {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for m in z.file_names() {
        if is_ignored(&m) || m.to_ascii_lowercase().ends_with(".zip") {
            continue;
        }
        let name = base_name(&m).to_string();
        if is_ignored(&name) {
            continue;
        }
        if !seen.insert(name.clone()) {
            problems.push(DataError::DuplicateName {
                path: z.path.clone(),
                name,
            });
            continue;
        }
        files.push((
            name,
            ImageSource::Zip {
                archive: z.clone(),
                member: m,
            },
        ));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Listing {
        location: z.path.clone(),
        files,
    }
}

fn find_train(root: &Path, prefer: Prefer, problems: &mut Vec<DataError>) -> Option<Listing> {
    let outer = root.join(TRAIN_DIR);
    if prefer != Prefer::Archives {
        for dir in [outer.join(TRAIN_DIR), outer.clone()] {
            if dir_has_images(&dir) {
                return listing_from_dir(&dir).map_err(|e| problems.push(e)).ok();
            }
        }
    }
    if prefer != Prefer::Folders {
        let inner = outer.join(TRAIN_INNER_ZIP);
        if inner.is_file() {
            return ZipHandle::open(&inner)
                .map(|z| listing_from_zip(&z, problems))
                .map_err(|e| problems.push(e))
                .ok();
        }
        let zip = root.join(TRAIN_ZIP);
        if zip.is_file() {
            let z = match ZipHandle::open(&zip) {
                Ok(z) => z,
                Err(e) => {
                    problems.push(e);
                    return None;
                }
            };
            let nested = z
                .file_names()
                .into_iter()
                .find(|m| !is_ignored(m) && base_name(m) == TRAIN_INNER_ZIP);
            return match nested {
                Some(m) => z
                    .open_nested(&m)
                    .map(|zi| listing_from_zip(&zi, problems))
                    .map_err(|e| problems.push(e))
                    .ok(),
                None => Some(listing_from_zip(&z, problems)),
            };
        }
    }
    // An existing but empty folder is reported as such.
    for dir in [outer.join(TRAIN_DIR), outer.clone()] {
        if dir.is_dir() && prefer != Prefer::Archives {
            return listing_from_dir(&dir).map_err(|e| problems.push(e)).ok();
        }
    }
    problems.push(DataError::NotFound {
        path: root.to_path_buf(),
        what: format!("training images: {TRAIN_DIR}/ or {TRAIN_ZIP}"),
    });
    None
}

/// Label from a training file name: H/N -> 0, P -> 1.
pub fn label_from_name(name: &str) -> Option<u8> {
    match name.chars().next() {
        Some('H') | Some('N') => Some(0),
        Some('P') => Some(1),
        _ => None,
    }
}

fn scan_train(root: &Path, opts: OpenOptions, problems: &mut Vec<DataError>) -> Option<Split> {
    let listing = find_train(root, opts.prefer, problems)?;
    if listing.files.is_empty() {
        problems.push(DataError::EmptyFolder {
            path: listing.location.clone(),
            expected: "training JPEGs named H*, N* or P*".into(),
        });
        return None;
    }
    let mut samples = Vec::with_capacity(listing.files.len());
    for (name, source) in listing.files {
        match label_from_name(&name) {
            Some(label) => samples.push(Sample {
                name,
                label,
                fovea: None,
                source,
            }),
            None => problems.push(DataError::BadFileName {
                path: source.display_path(),
            }),
        }
    }
    Some(Split {
        kind: SplitKind::Train,
        location: listing.location,
        labels_from: LabelsFrom::FileNames,
        samples,
    })
}

fn find_valid_images(root: &Path, prefer: Prefer, problems: &mut Vec<DataError>) -> Option<Listing> {
    let dir = root.join(VALID_DIR);
    if prefer != Prefer::Archives && dir.is_dir() {
        return listing_from_dir(&dir).map_err(|e| problems.push(e)).ok();
    }
    let zip = root.join(VALID_ZIP);
    if prefer != Prefer::Folders && zip.is_file() {
        return ZipHandle::open(&zip)
            .map(|z| listing_from_zip(&z, problems))
            .map_err(|e| problems.push(e))
            .ok();
    }
    problems.push(DataError::NotFound {
        path: root.to_path_buf(),
        what: format!("validation images: {VALID_DIR}/ or {VALID_ZIP}"),
    });
    None
}

/// One row of the labels table.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    /// 1-based row number in the file (header = 1).
    pub row: usize,
    /// `imgName`.
    pub name: String,
    /// `Label` (0 or 1).
    pub label: u8,
    /// `Fovea_X`, `Fovea_Y`, when both columns are present.
    pub fovea: Option<(f64, f64)>,
}

/// Parses a label cell: `0`, `1`, `0.0`, `1.0` (surrounding spaces allowed).
fn parse_label(v: &str) -> Option<u8> {
    match v.trim() {
        "0" => Some(0),
        "1" => Some(1),
        t => match t.parse::<f64>() {
            Ok(0.0) => Some(0),
            Ok(1.0) => Some(1),
            _ => None,
        },
    }
}

/// Turns a header plus string rows into label rows, collecting every problem.
fn table_to_rows(
    path: &Path,
    header: &[String],
    rows: Vec<Vec<String>>,
    problems: &mut Vec<DataError>,
) -> Vec<LabelRow> {
    let col = |n: &str| header.iter().position(|h| h.trim() == n);
    let found = header.join(",");
    let (Some(ci), Some(cl)) = (col("imgName"), col("Label")) else {
        for c in ["imgName", "Label"] {
            if col(c).is_none() {
                problems.push(DataError::MissingColumn {
                    path: path.to_path_buf(),
                    column: c.into(),
                    found: found.clone(),
                });
            }
        }
        return Vec::new();
    };
    let (cx, cy) = (col("Fovea_X"), col("Fovea_Y"));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in rows.into_iter().enumerate() {
        let row = i + 2;
        if r.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let get = |c: usize| r.get(c).map(|s| s.trim()).unwrap_or("");
        let name = get(ci).to_string();
        if name.is_empty() {
            problems.push(DataError::BadRow {
                path: path.to_path_buf(),
                row,
                reason: "empty imgName".into(),
            });
            continue;
        }
        let Some(label) = parse_label(get(cl)) else {
            problems.push(DataError::BadLabel {
                path: path.to_path_buf(),
                row,
                value: get(cl).to_string(),
            });
            continue;
        };
        let fovea = match (cx, cy) {
            (Some(cx), Some(cy)) => match (get(cx).parse::<f64>(), get(cy).parse::<f64>()) {
                (Ok(x), Ok(y)) => Some((x, y)),
                _ => {
                    problems.push(DataError::BadRow {
                        path: path.to_path_buf(),
                        row,
                        reason: format!("bad fovea coordinates `{}`, `{}`", get(cx), get(cy)),
                    });
                    continue;
                }
            },
            _ => None,
        };
        if !seen.insert(name.clone()) {
            problems.push(DataError::DuplicateName {
                path: path.to_path_buf(),
                name,
            });
            continue;
        }
        out.push(LabelRow {
            row,
            name,
            label,
            fovea,
        });
    }
    out
}

/// Parses a labels CSV (`ID,imgName,Label,Fovea_X,Fovea_Y`) held in `bytes`.
/// `path` is used in messages. Every problem is pushed to `problems`.
pub fn parse_labels_csv(bytes: &[u8], path: &Path, problems: &mut Vec<DataError>) -> Vec<LabelRow> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let mut records = rdr.records();
    let header: Vec<String> = match records.next() {
        Some(Ok(h)) => h.iter().map(|s| s.trim_start_matches('\u{feff}').to_string()).collect(),
        Some(Err(e)) => {
            problems.push(DataError::BadRow {
                path: path.to_path_buf(),
                row: 1,
                reason: e.to_string(),
            });
            return Vec::new();
        }
        None => {
            problems.push(DataError::BadRow {
                path: path.to_path_buf(),
                row: 1,
                reason: "empty file, no header".into(),
            });
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for (i, r) in records.enumerate() {
        match r {
            Ok(r) => rows.push(r.iter().map(str::to_string).collect()),
            Err(e) => {
                problems.push(DataError::BadRow {
                    path: path.to_path_buf(),
                    row: i + 2,
                    reason: e.to_string(),
                });
                rows.push(Vec::new());
            }
        }
    }
    table_to_rows(path, &header, rows, problems)
}

/// Parses the labels workbook (first sheet, header row, same columns as the CSV).
pub fn parse_labels_xlsx(bytes: Vec<u8>, path: &Path, problems: &mut Vec<DataError>) -> Vec<LabelRow> {
    use calamine::{Data, Reader};
    let xerr = |e: &dyn std::fmt::Display| DataError::Xlsx {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut wb = match calamine::Xlsx::new(std::io::Cursor::new(bytes)) {
        Ok(wb) => wb,
        Err(e) => {
            problems.push(xerr(&e));
            return Vec::new();
        }
    };
    let range = match wb.worksheet_range_at(0) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            problems.push(xerr(&e));
            return Vec::new();
        }
        None => {
            problems.push(xerr(&"workbook has no sheet"));
            return Vec::new();
        }
    };
    let cell = |d: &Data| match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) => format!("{f}"),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => b.to_string(),
        other => other.to_string(),
    };
    let mut it = range.rows();
    let Some(h) = it.next() else {
        problems.push(xerr(&"first sheet is empty"));
        return Vec::new();
    };
    let header: Vec<String> = h.iter().map(cell).collect();
    let rows = it.map(|r| r.iter().map(cell).collect()).collect();
    table_to_rows(path, &header, rows, problems)
}

/// Finds and parses the validation labels; returns rows and where they came from.
fn find_labels(root: &Path, opts: OpenOptions, problems: &mut Vec<DataError>) -> Option<(Vec<LabelRow>, LabelsFrom)> {
    let gt = root.join(GT_DIR);
    let csv_path = gt.join(LABELS_CSV);
    let xlsx_path = gt.join(LABELS_XLSX);
    let want_csv = opts.labels != LabelsChoice::Xlsx;
    let want_xlsx = opts.labels != LabelsChoice::Csv;
    let read =
        |p: &Path, problems: &mut Vec<DataError>| std::fs::read(p).map_err(|e| problems.push(DataError::io(p, e))).ok();
    if opts.prefer != Prefer::Archives {
        if want_csv && csv_path.is_file() {
            let b = read(&csv_path, problems)?;
            return Some((parse_labels_csv(&b, &csv_path, problems), LabelsFrom::Csv(csv_path)));
        }
        if want_xlsx && xlsx_path.is_file() {
            let b = read(&xlsx_path, problems)?;
            return Some((parse_labels_xlsx(b, &xlsx_path, problems), LabelsFrom::Xlsx(xlsx_path)));
        }
    }
    let zip = root.join(GT_ZIP);
    if opts.prefer != Prefer::Folders && zip.is_file() {
        let z = ZipHandle::open(&zip).map_err(|e| problems.push(e)).ok()?;
        let names = z.file_names();
        let find = |want: &str| {
            names
                .iter()
                .find(|m| !is_ignored(m) && base_name(m).eq_ignore_ascii_case(want))
                .cloned()
        };
        if want_csv {
            if let Some(m) = find(LABELS_CSV) {
                let b = z.read(&m).map_err(|e| problems.push(e)).ok()?;
                let p = z.member_path(&m);
                return Some((parse_labels_csv(&b, &p, problems), LabelsFrom::Csv(p)));
            }
        }
        if want_xlsx {
            if let Some(m) = find(LABELS_XLSX) {
                let b = z.read(&m).map_err(|e| problems.push(e)).ok()?;
                let p = z.member_path(&m);
                return Some((parse_labels_xlsx(b, &p, problems), LabelsFrom::Xlsx(p)));
            }
        }
    }
    problems.push(DataError::NotFound {
        path: root.to_path_buf(),
        what: format!("validation labels: {GT_DIR}/{LABELS_CSV}, {GT_DIR}/{LABELS_XLSX} or {GT_ZIP}"),
    });
    None
}

fn scan_valid(root: &Path, opts: OpenOptions, problems: &mut Vec<DataError>) -> Option<Split> {
    let listing = find_valid_images(root, opts.prefer, problems);
    let before_labels = problems.len();
    let labels = find_labels(root, opts, problems);
    // With a broken labels table, "image not listed" would only repeat its errors.
    let labels_ok = problems.len() == before_labels;
    let listing = listing?;
    if listing.files.is_empty() {
        problems.push(DataError::EmptyFolder {
            path: listing.location.clone(),
            expected: "validation JPEGs V0001.jpg ...".into(),
        });
        return None;
    }
    let (rows, from) = labels?;
    let labels_path = match &from {
        LabelsFrom::Csv(p) | LabelsFrom::Xlsx(p) => p.clone(),
        LabelsFrom::FileNames => unreachable!("validation labels come from a table"),
    };
    let before = problems.len();
    let mut by_name: HashMap<&str, &ImageSource> = listing.files.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut samples = Vec::with_capacity(rows.len());
    for r in &rows {
        match by_name.remove(r.name.as_str()) {
            Some(src) => samples.push(Sample {
                name: r.name.clone(),
                label: r.label,
                fovea: r.fovea,
                source: src.clone(),
            }),
            None => problems.push(DataError::MissingImage {
                labels: labels_path.clone(),
                row: r.row,
                name: r.name.clone(),
                images: listing.location.clone(),
            }),
        }
    }
    for (name, src) in &listing.files {
        if labels_ok && by_name.contains_key(name.as_str()) {
            problems.push(DataError::UnlistedImage {
                path: src.display_path(),
                labels: labels_path.clone(),
            });
        }
    }
    if samples.is_empty() && labels_ok && problems.len() == before {
        problems.push(DataError::EmptyFolder {
            path: labels_path.clone(),
            expected: "at least one labelled row".into(),
        });
    }
    Some(Split {
        kind: SplitKind::Valid,
        location: listing.location,
        labels_from: from,
        samples,
    })
}

/// Lists what [`open`] would find, returning the splits that could be formed
/// and every problem (used by `inspect`).
pub(crate) fn scan_all(root: &Path, opts: OpenOptions) -> (Option<Split>, Option<Split>, Vec<DataError>) {
    let mut problems = Vec::new();
    let t = scan_train(root, opts, &mut problems);
    let v = scan_valid(root, opts, &mut problems);
    (t, v, problems)
}
