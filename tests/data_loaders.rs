//! Loaders on a small synthetic set: layout, labels, folders vs zips vs xlsx,
//! batches, shuffling, augmentation, caches, and the trivial baseline.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dfdx::prelude::HasShape;
use palm_cnn::data::{
    self, synth, Augment, DecodeMode, LabelsChoice, LabelsFrom, LoadOptions, OpenOptions, PalmLoader, Prefer,
};

const S: usize = 32;

/// One small set (256x248, with zips) per test binary.
fn set() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = DIR.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("palm");
        let s = synth::generate(&p, 7, Some((256, 248)), true).unwrap();
        assert_eq!((s.train, s.valid, s.valid_positives), (400, 400, 211));
        (t, p)
    });
    p
}

#[test]
fn layout_names_and_counts_match_the_real_set() {
    let ds = data::open(set()).unwrap();
    let count = |c: char| ds.train.samples.iter().filter(|s| s.name.starts_with(c)).count();
    assert_eq!((count('H'), count('N'), count('P')), (26, 161, 213));
    assert_eq!(ds.train.len(), 400);
    for s in &ds.train.samples {
        assert_eq!(s.label, u8::from(s.name.starts_with('P')), "{}", s.name);
    }
    assert_eq!(ds.valid.len(), 400);
    assert_eq!(ds.valid.positives(), 211);
    let names: Vec<String> = ds.valid.samples.iter().map(|s| s.name.clone()).collect();
    let expected: Vec<String> = (1..=400).map(|i| format!("V{i:04}.jpg")).collect();
    assert_eq!(names, expected);
    assert!(matches!(ds.valid.labels_from, LabelsFrom::Csv(_)));
    // The CSV header and first row's shape, read independently.
    let csv = std::fs::read_to_string(set().join("PALM-Validation-GT/labels.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("ID,imgName,Label,Fovea_X,Fovea_Y"));
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first[0..2], ["1", "V0001.jpg"]);
    let fx: f64 = first[3].parse().unwrap();
    assert_eq!(ds.valid.samples[0].fovea.unwrap().0, fx);
    assert_eq!(ds.valid.samples[0].label.to_string(), first[2]);
}

fn decoded(split: &data::Split) -> Vec<Vec<u8>> {
    let l = PalmLoader::<S>::new(split, LoadOptions::default());
    l.preload().unwrap();
    (0..l.len()).map(|i| l.bytes(i).unwrap().to_vec()).collect()
}

#[test]
fn folders_zips_and_xlsx_give_identical_results() {
    let folders = data::open_with(
        set(),
        OpenOptions {
            prefer: Prefer::Folders,
            labels: LabelsChoice::Csv,
        },
    )
    .unwrap();
    let zips = data::open_with(
        set(),
        OpenOptions {
            prefer: Prefer::Archives,
            labels: LabelsChoice::Auto,
        },
    )
    .unwrap();
    let xlsx = data::open_with(
        set(),
        OpenOptions {
            prefer: Prefer::Folders,
            labels: LabelsChoice::Xlsx,
        },
    )
    .unwrap();
    assert!(zips.train.location.to_string_lossy().contains("training.zip"));
    assert!(zips.train.location.to_string_lossy().ends_with("PALM-Training400.zip"));
    assert!(matches!(&zips.valid.labels_from, LabelsFrom::Xlsx(p) if p.to_string_lossy().contains("valid_gt.zip")));
    assert!(matches!(xlsx.valid.labels_from, LabelsFrom::Xlsx(_)));
    for other in [&zips, &xlsx] {
        for (a, b) in [(&folders.train, &other.train), (&folders.valid, &other.valid)] {
            let ka: Vec<_> = a.samples.iter().map(|s| (s.name.clone(), s.label, s.fovea)).collect();
            let kb: Vec<_> = b.samples.iter().map(|s| (s.name.clone(), s.label, s.fovea)).collect();
            assert_eq!(ka.len(), kb.len());
            for (x, y) in ka.iter().zip(&kb) {
                assert_eq!(x, y);
            }
        }
    }
    assert_eq!(decoded(&folders.train), decoded(&zips.train));
    assert_eq!(decoded(&folders.valid), decoded(&zips.valid));
    // The archives alone (no extracted folders next to them) give the same.
    let only = tempfile::tempdir().unwrap();
    for z in ["training.zip", "validation.zip", "valid_gt.zip"] {
        std::fs::copy(set().join(z), only.path().join(z)).unwrap();
    }
    let z2 = data::open(only.path()).unwrap();
    assert_eq!(
        z2.valid.samples.iter().map(|s| s.label).collect::<Vec<_>>(),
        folders.valid.samples.iter().map(|s| s.label).collect::<Vec<_>>()
    );
    assert_eq!(decoded(&z2.valid)[..20], decoded(&folders.valid)[..20]);
}

#[test]
fn training_batches_are_seeded_reshuffled_and_keep_the_short_batch() {
    let ds = data::open(set()).unwrap();
    let dev = dfdx::tensor::Cpu::default();
    let l = PalmLoader::<S>::new(&ds.train, LoadOptions::default());
    let e0 = l.train_epoch(&dev, 7, 42, 0).unwrap();
    let order0 = e0.order().to_vec();
    assert_eq!(e0.num_batches(), 58); // 57 * 7 + 1 = 400
    let mut sorted = order0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..400).collect::<Vec<_>>());
    assert_eq!(l.train_epoch(&dev, 7, 42, 0).unwrap().order(), &order0[..]);
    assert_ne!(l.train_epoch(&dev, 7, 42, 1).unwrap().order(), &order0[..]);
    assert_ne!(l.train_epoch(&dev, 7, 43, 0).unwrap().order(), &order0[..]);
    let mut sizes = Vec::new();
    let mut seen = 0;
    for b in e0 {
        let (x, y) = b.unwrap();
        let n = x.shape().0;
        assert_eq!(y.shape().0, n);
        let ys = y.as_vec();
        for k in 0..n {
            let i = order0[seen + k];
            assert_eq!(ys[k], ds.train.samples[i].label as f32);
        }
        // The first image of the batch equals the loader's own image.
        let xs = x.as_vec();
        assert_eq!(&xs[..3 * S * S], &l.image(order0[seen]).unwrap()[..]);
        seen += n;
        sizes.push(n);
    }
    assert_eq!(seen, 400);
    assert_eq!(sizes.len(), 58);
    assert!(sizes[..57].iter().all(|&n| n == 7));
    assert_eq!(sizes[57], 1);
    assert_eq!(l.cached(), 400); // later epochs do not decode again
}

#[test]
fn validation_batches_are_in_csv_order() {
    let ds = data::open(set()).unwrap();
    let dev = dfdx::tensor::Cpu::default();
    let l = PalmLoader::<S>::new(&ds.valid, LoadOptions::default());
    let mut labels = Vec::new();
    let mut n_batches = 0;
    for b in l.in_order(&dev, 10).unwrap() {
        let (x, y) = b.unwrap();
        assert_eq!(x.shape().0, 10);
        labels.extend(y.as_vec());
        n_batches += 1;
    }
    assert_eq!(n_batches, 40);
    let csv = std::fs::read_to_string(set().join("PALM-Validation-GT/labels.csv")).unwrap();
    let from_csv: Vec<f32> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(labels, from_csv);
    assert!(l.in_order(&dev, 0).is_err());
}

#[test]
fn augmentation_is_off_by_default_seeded_and_training_only() {
    let ds = data::open(set()).unwrap();
    let dev = dfdx::tensor::Cpu::default();
    let plain = PalmLoader::<S>::new(&ds.train, LoadOptions::default());
    assert!(plain.options().augment.is_none());
    let flip = Augment {
        hflip: true,
        ..Augment::none()
    };
    let aug = PalmLoader::<S>::new(
        &ds.train,
        LoadOptions {
            augment: Some(flip),
            ..LoadOptions::default()
        },
    );
    let (x, _) = aug.train_epoch(&dev, 40, 1, 0).unwrap().next().unwrap().unwrap();
    let order = aug.train_epoch(&dev, 40, 1, 0).unwrap().order().to_vec();
    let xs = x.as_vec();
    let (mut flipped, mut same) = (0, 0);
    for k in 0..40 {
        let orig = plain.image(order[k]).unwrap();
        let got = &xs[k * 3 * S * S..(k + 1) * 3 * S * S];
        let mirror: Vec<f32> = (0..3 * S * S)
            .map(|j| {
                let (c, y, xx) = (j / (S * S), (j / S) % S, j % S);
                orig[c * S * S + y * S + (S - 1 - xx)]
            })
            .collect();
        if got == &orig[..] {
            same += 1;
        } else {
            assert_eq!(
                got,
                &mirror[..],
                "augmented image is neither the original nor its mirror"
            );
            flipped += 1;
        }
    }
    assert!(flipped > 5 && same > 5, "flipped {flipped}, same {same}");
    // Same seed and epoch -> identical batch.
    let (x2, _) = aug.train_epoch(&dev, 40, 1, 0).unwrap().next().unwrap().unwrap();
    assert_eq!(x2.as_vec(), xs);
    // Validation iteration is never augmented.
    let (xv, _) = aug.in_order(&dev, 1).unwrap().next().unwrap().unwrap();
    assert_eq!(xv.as_vec(), plain.image(0).unwrap());
    // The full default augmentation stays in range and changes the image.
    let full = PalmLoader::<S>::new(
        &ds.train,
        LoadOptions {
            augment: Some(Augment::default()),
            ..LoadOptions::default()
        },
    );
    let (xf, _) = full.train_epoch(&dev, 5, 3, 0).unwrap().next().unwrap().unwrap();
    assert!(xf.as_vec().iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn disk_cache_round_trips() {
    let ds = data::open(set()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        disk_cache: Some(cache.path().to_path_buf()),
        ..LoadOptions::default()
    };
    let a = PalmLoader::<S>::new(&ds.valid, opts.clone());
    a.preload().unwrap();
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 400);
    let b = PalmLoader::<S>::new(&ds.valid, opts);
    let plain = PalmLoader::<S>::new(&ds.valid, LoadOptions::default());
    for i in [0, 17, 399] {
        assert_eq!(b.bytes(i).unwrap(), plain.bytes(i).unwrap());
    }
}

#[test]
fn fast_decode_is_close_to_exact_decode() {
    let ds = data::open(set()).unwrap();
    let fast = PalmLoader::<S>::new(&ds.valid, LoadOptions::default());
    let exact = PalmLoader::<S>::new(
        &ds.valid,
        LoadOptions {
            decode: DecodeMode::Exact,
            ..LoadOptions::default()
        },
    );
    let (mut max, mut sum, mut n) = (0i32, 0i64, 0i64);
    for i in 0..50 {
        let (a, b) = (fast.bytes(i).unwrap(), exact.bytes(i).unwrap());
        for (x, y) in a.iter().zip(b.iter()) {
            let d = (*x as i32 - *y as i32).abs();
            max = max.max(d);
            sum += d as i64;
            n += 1;
        }
    }
    let mean = sum as f64 / n as f64;
    assert!(max > 0, "a 1/8-scale decode should differ somewhere");
    assert!(mean < 3.0, "mean abs difference {mean} levels");
}

/// Best accuracy of any threshold (either direction) on one feature.
fn best_threshold_accuracy(vals: &[(f64, u8)]) -> f64 {
    let mut v = vals.to_vec();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let n = v.len() as f64;
    let total_pos = v.iter().filter(|x| x.1 == 1).count() as f64;
    let (mut best, mut pos_below) = (total_pos.max(n - total_pos) / n, 0.0);
    for (i, x) in v.iter().enumerate() {
        if x.1 == 1 {
            pos_below += 1.0;
        }
        let below = (i + 1) as f64;
        // predict 1 above the cut / predict 1 below the cut
        let acc_above = ((below - pos_below) + (total_pos - pos_below)) / n;
        best = best.max(acc_above).max(1.0 - acc_above);
    }
    best
}

#[test]
fn mean_colour_does_not_separate_the_classes() {
    let ds = data::open(set()).unwrap();
    let feats: Vec<([f64; 4], u8)> = ds
        .valid
        .samples
        .iter()
        .map(|s| {
            let b = s.source.read().unwrap();
            let img = data::image::decode(&b, Path::new(&s.name), DecodeMode::Exact, None).unwrap();
            let mut m = [0f64; 4];
            for px in img.data.chunks_exact(3) {
                for c in 0..3 {
                    m[c] += px[c] as f64;
                }
                m[3] += 0.299 * px[0] as f64 + 0.587 * px[1] as f64 + 0.114 * px[2] as f64;
            }
            let n = (img.width * img.height) as f64;
            (m.map(|v| v / n), s.label)
        })
        .collect();
    for f in 0..4 {
        let acc = best_threshold_accuracy(&feats.iter().map(|(m, l)| (m[f], *l)).collect::<Vec<_>>());
        eprintln!("feature {f} (R, G, B, brightness): best threshold accuracy {acc:.3}");
        assert!(acc < 0.75, "feature {f}: a single threshold reaches {acc:.3}");
    }
    // Sanity check of the helper on a separable feature.
    let sep: Vec<(f64, u8)> = ds.valid.samples.iter().map(|s| (s.label as f64, s.label)).collect();
    assert_eq!(best_threshold_accuracy(&sep), 1.0);
}

#[test]
fn generation_is_deterministic_and_atomic() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let b = t.path().join("b");
    synth::generate(&a, 3, Some((64, 62)), false).unwrap();
    synth::generate(&b, 3, Some((64, 62)), false).unwrap();
    for f in [
        "PALM-Training400/P0001.jpg",
        "PALM-Validation400/V0400.jpg",
        "PALM-Validation-GT/labels.csv",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // A non-empty target is refused and left alone; no temp folder remains.
    assert!(synth::generate(&a, 4, Some((64, 62)), false).is_err());
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(synth::parse_size("256x248").unwrap(), (256, 248));
    assert!(synth::parse_size("256").is_err());
}
