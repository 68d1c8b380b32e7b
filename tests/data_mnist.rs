//! The shipped MNIST subset, the IDX reader and MNIST batches.
use std::io::Write;

use dfdx::prelude::HasShape;
use palm_cnn::data::mnist::{builtin_split, Mnist, MnistScale, PIXELS};

#[test]
fn builtin_subset_has_500_digits_per_class() {
    let m = Mnist::builtin().unwrap();
    assert_eq!(m.len(), 5000);
    assert_eq!(m.images.len(), 5000 * PIXELS);
    for d in 0..10u8 {
        assert_eq!(m.labels.iter().filter(|&&l| l == d).count(), 500);
    }
    // Independent reference (Python on the CSV): the first digit is a 0 whose
    // first non-zero pixel is at index 127 with value 51 (then 159, 253).
    assert_eq!(m.labels[0], 0);
    let first = m.image(0);
    let nz = first.iter().position(|&v| v != 0).unwrap();
    assert_eq!((nz, first[nz], first[nz + 1], first[nz + 2]), (127, 51, 159, 253));
}

#[test]
fn split_is_4000_1000_stratified_and_deterministic() {
    let (tr, te) = builtin_split().unwrap();
    assert_eq!((tr.len(), te.len()), (4000, 1000));
    for d in 0..10u8 {
        assert_eq!(tr.labels.iter().filter(|&&l| l == d).count(), 400);
        assert_eq!(te.labels.iter().filter(|&&l| l == d).count(), 100);
    }
    assert_eq!(builtin_split().unwrap().1, te);
    let all = Mnist::builtin().unwrap();
    // The first test digit is the 401st zero of the file.
    let zeros: Vec<usize> = (0..all.len()).filter(|&i| all.labels[i] == 0).collect();
    assert_eq!(te.image(0), all.image(zeros[400]));
}

#[test]
fn idx_files_round_trip_gzipped_or_not() {
    let all = Mnist::builtin().unwrap();
    let n = 30;
    let t = tempfile::tempdir().unwrap();
    let mut img = vec![0, 0, 8, 3];
    img.extend((n as u32).to_be_bytes());
    img.extend(28u32.to_be_bytes());
    img.extend(28u32.to_be_bytes());
    img.extend(&all.images[..n * PIXELS]);
    let mut lab = vec![0, 0, 8, 1];
    lab.extend((n as u32).to_be_bytes());
    lab.extend(&all.labels[..n]);
    std::fs::write(t.path().join("train-images-idx3-ubyte"), &img).unwrap();
    std::fs::write(t.path().join("train-labels-idx1-ubyte"), &lab).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&img).unwrap();
    std::fs::write(t.path().join("train-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    let plain = Mnist::from_idx(
        t.path().join("train-images-idx3-ubyte"),
        t.path().join("train-labels-idx1-ubyte"),
    )
    .unwrap();
    let gzd = Mnist::from_idx(
        t.path().join("train-images-idx3-ubyte.gz"),
        t.path().join("train-labels-idx1-ubyte"),
    )
    .unwrap();
    assert_eq!(plain.labels, all.labels[..n].to_vec());
    assert_eq!(plain.images, all.images[..n * PIXELS].to_vec());
    assert_eq!(plain, gzd);
    // Bad magic, truncation and label/image count mismatch are errors naming the file.
    let mut bad = img.clone();
    bad[3] = 1;
    std::fs::write(t.path().join("bad"), &bad).unwrap();
    let e = Mnist::from_idx(t.path().join("bad"), t.path().join("train-labels-idx1-ubyte")).unwrap_err();
    assert!(e.to_string().contains("bad") && e.to_string().contains("magic"), "{e}");
    std::fs::write(t.path().join("short"), &img[..img.len() - 1]).unwrap();
    assert!(Mnist::from_idx(t.path().join("short"), t.path().join("train-labels-idx1-ubyte")).is_err());
    lab.push(3);
    lab[7] += 1;
    std::fs::write(t.path().join("lab31"), &lab).unwrap();
    assert!(Mnist::from_idx(t.path().join("train-images-idx3-ubyte"), t.path().join("lab31")).is_err());
}

#[test]
fn batches_are_scaled_and_one_hot() {
    let (_, te) = builtin_split().unwrap();
    let dev = dfdx::tensor::Cpu::default();
    let batches: Vec<_> = te.batches(&dev, 64, MnistScale::default(), None).unwrap().collect();
    assert_eq!(batches.len(), 16); // 15 * 64 + 40
    assert_eq!(batches[15].labels.len(), 40);
    let b = &batches[0];
    assert_eq!(b.images.shape().0, 64);
    let px = b.images.as_vec();
    for (k, v) in px.iter().enumerate().take(64 * PIXELS) {
        let raw = te.images[k] as f64;
        assert_eq!(*v, (raw / 127.5 - 1.0) as f32);
    }
    let oh = b.one_hot.as_vec();
    for (k, &l) in b.labels.iter().enumerate() {
        assert_eq!(l, te.labels[k] as usize);
        for c in 0..10 {
            assert_eq!(oh[k * 10 + c], if c == l { 1.0 } else { 0.0 });
        }
    }
    assert_eq!(MnistScale::ZeroToOne.apply(255), 1.0);
    assert_eq!(MnistScale::MinusOneToOne.apply(0), -1.0);
    let s1: Vec<usize> = te
        .batches(&dev, 10, MnistScale::default(), Some((5, 0)))
        .unwrap()
        .order()
        .to_vec();
    let s2: Vec<usize> = te
        .batches(&dev, 10, MnistScale::default(), Some((5, 1)))
        .unwrap()
        .order()
        .to_vec();
    assert_ne!(s1, s2);
    assert_eq!(
        s1,
        te.batches(&dev, 10, MnistScale::default(), Some((5, 0)))
            .unwrap()
            .order()
    );
}
