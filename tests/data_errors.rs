//! Bad input gives a clear `DataError` naming the file, never a panic or a
//! silently skipped sample. Every test builds its own small files in a temp dir.
use std::path::{Path, PathBuf};

use palm_cnn::data::image::{decode, DecodeMode};
use palm_cnn::data::{self, DataError, LoadOptions, PalmLoader};

const S: usize = 8;

fn jpeg(w: u16, h: u16, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 95)
        .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

fn gray_jpeg() -> Vec<u8> {
    let mut out = Vec::new();
    let px: Vec<u8> = (0..64).map(|i| (i * 4) as u8).collect();
    jpeg_encoder::Encoder::new(&mut out, 100)
        .encode(&px, 8, 8, jpeg_encoder::ColorType::Luma)
        .unwrap();
    out
}

fn png(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(depth);
        e.write_header().unwrap().write_image_data(data).unwrap();
    }
    out
}

fn good() -> Vec<u8> {
    jpeg(16, 16, &vec![128u8; 16 * 16 * 3])
}

/// A minimal valid dataset: 3 training images, 2 validation images + CSV.
fn make_set(root: &Path) {
    let t = root.join("PALM-Training400");
    let v = root.join("PALM-Validation400");
    let g = root.join("PALM-Validation-GT");
    for d in [&t, &v, &g] {
        std::fs::create_dir_all(d).unwrap();
    }
    for n in ["H0001.jpg", "N0001.jpg", "P0001.jpg"] {
        std::fs::write(t.join(n), good()).unwrap();
    }
    for n in ["V0001.jpg", "V0002.jpg"] {
        std::fs::write(v.join(n), good()).unwrap();
    }
    write_csv(
        root,
        "ID,imgName,Label,Fovea_X,Fovea_Y\n1,V0001.jpg,0,1.5,2.5\n2,V0002.jpg,1,3.0,4.0\n",
    );
}

fn write_csv(root: &Path, text: &str) {
    std::fs::write(root.join("PALM-Validation-GT/labels.csv"), text).unwrap();
}

fn open_err(root: &Path) -> DataError {
    data::open(root).expect_err("expected an error")
}

fn first_batch_err(root: &Path) -> DataError {
    let ds = data::open(root).unwrap();
    let dev = dfdx::tensor::Cpu::default();
    let l = PalmLoader::<S>::new(&ds.train, LoadOptions::default());
    let mut errs = l.in_order(&dev, 10).unwrap().filter_map(|b| b.err());
    errs.next().expect("expected a decode error")
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().to_path_buf();
    make_set(&p);
    (t, p)
}

#[test]
fn the_minimal_set_opens() {
    let (_t, p) = tmp();
    let ds = data::open(&p).unwrap();
    assert_eq!(
        ds.train.samples.iter().map(|s| s.label).collect::<Vec<_>>(),
        vec![0, 0, 1]
    );
    assert_eq!(ds.valid.samples[1].fovea, Some((3.0, 4.0)));
    assert!(data::inspect(&p).is_ok());
}

#[test]
fn corrupt_jpeg_is_a_decode_error_naming_the_file() {
    let (_t, p) = tmp();
    let mut bad = good();
    for b in bad.iter_mut().skip(200) {
        *b = 0x5A;
    }
    std::fs::write(p.join("PALM-Training400/N0001.jpg"), &bad).unwrap();
    let e = first_batch_err(&p);
    assert!(matches!(e, DataError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("N0001.jpg"), "{e}");
}

#[test]
fn truncated_jpeg_is_a_decode_error() {
    let (_t, p) = tmp();
    let g = jpeg(
        64,
        64,
        &(0..64 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>(),
    );
    std::fs::write(p.join("PALM-Training400/P0001.jpg"), &g[..g.len() / 2]).unwrap();
    let e = first_batch_err(&p);
    assert!(matches!(e, DataError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("P0001.jpg"), "{e}");
}

#[test]
fn non_image_file_is_a_decode_error() {
    let (_t, p) = tmp();
    std::fs::write(p.join("PALM-Training400/H0001.jpg"), b"this is not a picture").unwrap();
    let e = first_batch_err(&p);
    assert!(
        e.to_string().contains("H0001.jpg") && e.to_string().contains("not an image"),
        "{e}"
    );
}

#[test]
fn grayscale_is_replicated_to_three_channels() {
    let img = decode(&gray_jpeg(), Path::new("g.jpg"), DecodeMode::Exact, None).unwrap();
    assert_eq!((img.width, img.height), (8, 8));
    for px in img.data.chunks_exact(3) {
        assert!(px[0] == px[1] && px[1] == px[2]);
    }
    // Gray PNG: exact values.
    let g = png(2, 1, png::ColorType::Grayscale, png::BitDepth::Eight, &[7, 200]);
    let img = decode(&g, Path::new("g.png"), DecodeMode::Exact, None).unwrap();
    assert_eq!(img.data, vec![7, 7, 7, 200, 200, 200]);
}

#[test]
fn rgba_drops_alpha_and_16_bit_keeps_the_high_byte() {
    let rgba = png(
        2,
        1,
        png::ColorType::Rgba,
        png::BitDepth::Eight,
        &[1, 2, 3, 0, 250, 251, 252, 255],
    );
    let img = decode(&rgba, Path::new("a.png"), DecodeMode::Exact, None).unwrap();
    assert_eq!(img.data, vec![1, 2, 3, 250, 251, 252]);
    // 16-bit RGB, big-endian samples: 0x1234 -> 0x12, 0xFF01 -> 0xFF, ...
    let d16 = [0x12, 0x34, 0xFF, 0x01, 0x00, 0xFF, 0x80, 0x00, 0x7F, 0xFF, 0x01, 0x00];
    let p16 = png(2, 1, png::ColorType::Rgb, png::BitDepth::Sixteen, &d16);
    let img = decode(&p16, Path::new("b.png"), DecodeMode::Exact, None).unwrap();
    assert_eq!(img.data, vec![0x12, 0xFF, 0x00, 0x80, 0x7F, 0x01]);
}

#[test]
fn cmyk_is_converted_like_opencv() {
    // jpeg-encoder writes Adobe CMYK; white paper (no ink) and full black ink.
    let mut out = Vec::new();
    let cmyk = [0u8, 0, 0, 0, 0, 0, 0, 255, 0, 255, 255, 0];
    jpeg_encoder::Encoder::new(&mut out, 100)
        .encode(&cmyk, 3, 1, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let img = decode(&out, Path::new("c.jpg"), DecodeMode::Exact, None).unwrap();
    let close = |a: u8, b: u8| (a as i32 - b as i32).abs() <= 6;
    let want = [[255, 255, 255], [0, 0, 0], [255, 0, 0]]; // no ink, black, M+Y = red
    for (px, w) in img.data.chunks_exact(3).zip(want) {
        assert!(px.iter().zip(w).all(|(&a, b)| close(a, b)), "got {px:?}, want {w:?}");
    }
}

#[test]
fn empty_folder_is_reported() {
    let t = tempfile::tempdir().unwrap();
    make_set(t.path());
    for e in std::fs::read_dir(t.path().join("PALM-Training400")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let e = open_err(t.path());
    assert!(
        matches!(&e, DataError::EmptyFolder { path, .. } if path.ends_with("PALM-Training400")),
        "{e}"
    );
}

#[test]
fn bad_training_file_name_is_reported() {
    let (_t, p) = tmp();
    std::fs::write(p.join("PALM-Training400/X0001.jpg"), good()).unwrap();
    let e = open_err(&p);
    assert!(
        matches!(&e, DataError::BadFileName { path } if path.ends_with("X0001.jpg")),
        "{e}"
    );
}

#[test]
fn csv_missing_column_is_reported() {
    let (_t, p) = tmp();
    write_csv(&p, "ID,imgName,Fovea_X,Fovea_Y\n1,V0001.jpg,1,2\n2,V0002.jpg,3,4\n");
    let e = open_err(&p);
    assert!(
        matches!(&e, DataError::MissingColumn { column, .. } if column == "Label"),
        "{e}"
    );
    assert!(e.to_string().contains("labels.csv"));
}

#[test]
fn bad_label_value_is_reported() {
    let (_t, p) = tmp();
    write_csv(
        &p,
        "ID,imgName,Label,Fovea_X,Fovea_Y\n1,V0001.jpg,2,1,2\n2,V0002.jpg,1,3,4\n",
    );
    let e = open_err(&p);
    assert!(
        matches!(&e, DataError::BadLabel { row: 2, value, .. } if value == "2"),
        "{e}"
    );
}

#[test]
fn duplicate_name_is_reported() {
    let (_t, p) = tmp();
    write_csv(
        &p,
        "ID,imgName,Label,Fovea_X,Fovea_Y\n1,V0001.jpg,0,1,2\n2,V0002.jpg,1,3,4\n3,V0001.jpg,1,3,4\n",
    );
    let e = open_err(&p);
    assert!(
        matches!(&e, DataError::DuplicateName { name, .. } if name == "V0001.jpg"),
        "{e}"
    );
}

#[test]
fn csv_row_without_image_is_reported() {
    let (_t, p) = tmp();
    write_csv(
        &p,
        "ID,imgName,Label,Fovea_X,Fovea_Y\n1,V0001.jpg,0,1,2\n2,V0002.jpg,1,3,4\n3,V0003.jpg,1,3,4\n",
    );
    let e = open_err(&p);
    assert!(
        matches!(&e, DataError::MissingImage { name, row: 4, .. } if name == "V0003.jpg"),
        "{e}"
    );
}

#[test]
fn image_not_in_csv_is_reported() {
    let (_t, p) = tmp();
    std::fs::write(p.join("PALM-Validation400/V0009.jpg"), good()).unwrap();
    let e = open_err(&p);
    assert!(
        matches!(&e, DataError::UnlistedImage { path, .. } if path.ends_with("V0009.jpg")),
        "{e}"
    );
}

#[test]
fn zip_that_is_not_a_zip_is_reported() {
    let t = tempfile::tempdir().unwrap();
    make_set(t.path());
    std::fs::remove_dir_all(t.path().join("PALM-Validation400")).unwrap();
    std::fs::write(t.path().join("validation.zip"), b"PK but not really").unwrap();
    let e = open_err(t.path());
    assert!(
        matches!(&e, DataError::NotAZip { path, .. } if path.ends_with("validation.zip")),
        "{e}"
    );
}

#[test]
fn missing_splits_are_reported_and_all_problems_are_collected() {
    let t = tempfile::tempdir().unwrap();
    let e = open_err(t.path());
    let DataError::Problems { problems, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(problems.len(), 3, "{e}"); // training, validation images, labels
                                          // inspect lists every problem, including decode errors, without stopping.
    let (_t2, p) = tmp();
    std::fs::write(p.join("PALM-Training400/H0001.jpg"), b"junk").unwrap();
    std::fs::write(p.join("PALM-Training400/Z0001.jpg"), good()).unwrap();
    std::fs::write(p.join("PALM-Validation400/V0002.jpg"), b"junk").unwrap();
    write_csv(
        &p,
        "ID,imgName,Label,Fovea_X,Fovea_Y\n1,V0001.jpg,7,1,2\n2,V0002.jpg,1,3,4\n",
    );
    let rep = data::inspect(&p);
    let text = rep.to_string();
    assert_eq!(rep.problems.len(), 4, "{text}");
    for needle in ["Z0001.jpg", "H0001.jpg", "V0002.jpg", "bad label value `7`"] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(text.contains("training: 3 images"), "{text}");
}

#[test]
fn course_double_nested_training_folder_is_found() {
    let (_t, p) = tmp();
    let outer = p.join("PALM-Training400");
    let inner = outer.join("PALM-Training400");
    std::fs::create_dir_all(&inner).unwrap();
    for n in ["H0001.jpg", "N0001.jpg", "P0001.jpg"] {
        std::fs::rename(outer.join(n), inner.join(n)).unwrap();
    }
    let ds = data::open(&p).unwrap();
    assert_eq!(ds.train.location, inner);
    assert_eq!(ds.train.len(), 3);
}
