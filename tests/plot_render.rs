//! The training plots render to SVG and PNG with the embedded font (no system fonts).

use palm_cnn::metrics::Confusion;
use palm_cnn::models::ModelKind;
use palm_cnn::plot::{self, Figure};
use palm_cnn::train::{BatchRecord, EpochRecord, History, TrainConfig};

fn history() -> History {
    let mut h = History::new("lenet-palm", &TrainConfig::course(ModelKind::LeNetPalm));
    let per_epoch = 20;
    for epoch in 0..3 {
        for batch in 0..per_epoch {
            let t = (epoch * per_epoch + batch) as f32;
            let noise = ((t * 12.9898).sin() * 43758.547).fract().abs() * 0.2;
            h.batches.push(BatchRecord {
                epoch,
                batch,
                loss: 0.7 * (-t / 30.0).exp() + 0.1 + noise,
            });
        }
        let c = Confusion {
            tp: 30 + 5 * epoch,
            fp: 10 - 3 * epoch,
            tn: 40 + 3 * epoch,
            fn_: 20 - 5 * epoch,
        };
        h.epochs.push(EpochRecord {
            epoch,
            train_loss: 0.6 - 0.15 * epoch as f64,
            val_loss: 0.65 - 0.12 * epoch as f64,
            val_accuracy: c.accuracy().unwrap(),
            val_auc: Some(0.75 + 0.07 * epoch as f64),
            val_sensitivity: c.sensitivity(),
            val_specificity: c.specificity(),
            val_confusion: Some(c),
            val_logit_std: 0.5,
            collapsed: false,
            single_class: None,
            train_seconds: 1.0,
            train_images_per_s: 100.0,
        });
    }
    h
}

/// Decodes the PNG and checks size, variety of colours and dark (text) pixels in the title band.
fn check_png(fig: &Figure, name: &str) {
    let bytes = fig.to_png().unwrap();
    let dec = png::Decoder::new(bytes.as_slice());
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = fig.size();
    assert_eq!((info.width, info.height), (w, h), "{name}");
    assert_eq!(info.color_type, png::ColorType::Rgb, "{name}");
    let px: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    let distinct: std::collections::HashSet<[u8; 3]> = px.iter().copied().collect();
    assert!(distinct.len() > 20, "{name}: only {} colours", distinct.len());
    // The caption sits in the top ~45 rows; antialiased glyphs leave dark pixels there.
    let title_dark = px[..(w * 45) as usize]
        .iter()
        .filter(|p| p.iter().all(|&c| c < 100))
        .count();
    assert!(title_dark > 100, "{name}: {title_dark} dark pixels in the title band");
    if std::env::var_os("PLOT_RENDER_KEEP").is_some() {
        let dir = std::path::PathBuf::from(std::env::var_os("PLOT_RENDER_KEEP").unwrap());
        fig.save(&dir, name).unwrap();
    }
}

fn check_svg(fig: &Figure, name: &str, texts: &[&str]) {
    let svg = fig.to_svg();
    assert!(svg.starts_with("<svg"), "{name}");
    for t in texts {
        assert!(svg.contains(t), "{name}: SVG lacks {t:?}");
    }
}

#[test]
fn loss_curve_renders() {
    let fig = plot::loss_curve(&history()).unwrap();
    check_svg(
        &fig,
        "loss",
        &[
            "batch",
            "loss",
            "Training loss per batch",
            "epoch start",
            "moving average",
        ],
    );
    check_png(&fig, "loss");
}

#[test]
fn epoch_metrics_render() {
    let fig = plot::epoch_metrics(&history()).unwrap();
    check_svg(
        &fig,
        "metrics",
        &["epoch", "accuracy", "AUC", "validation loss", "Validation metrics"],
    );
    check_png(&fig, "metrics");
}

#[test]
fn roc_renders() {
    let scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1, 0.05];
    let labels = [1, 1, 0, 1, 1, 0, 1, 0, 0, 0];
    let fig = plot::roc_from_scores(&scores, &labels).unwrap();
    check_svg(&fig, "roc", &["false-positive rate", "true-positive rate", "AUC 0.840"]);
    check_png(&fig, "roc");
}

#[test]
fn confusion_matrix_renders() {
    let c = history().epochs.last().unwrap().val_confusion.unwrap();
    let fig = plot::confusion_matrix(&c).unwrap();
    check_svg(
        &fig,
        "confusion",
        &["predicted class", "true class", "\n40\n", "\n10\n", "\n4\n", "\n46\n"],
    );
    check_png(&fig, "confusion");
    // The plain matrix works too.
    let m = plot::confusion_matrix(&[[1usize, 2], [3, 4]]).unwrap();
    assert!(m.to_svg().contains("\n3\n"));
}

#[test]
fn save_writes_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let fig = plot::confusion_matrix(&[[5usize, 1], [2, 7]]).unwrap();
    let paths = fig.save(dir.path(), "confusion").unwrap();
    assert_eq!(paths.len(), 2);
    assert!(dir.path().join("confusion.svg").is_file());
    let png = std::fs::read(dir.path().join("confusion.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "temporary files left behind"
    );
}

#[test]
fn ema_is_bias_corrected() {
    let s = plot::ema(&[2.0, 2.0, 2.0], 0.9);
    assert!(s.iter().all(|v| (v - 2.0).abs() < 1e-12), "{s:?}");
}
