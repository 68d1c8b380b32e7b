//! The command end to end on a small synthetic set: train → checkpoint → eval → predict,
//! and a truncated checkpoint.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palm-cnn"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{cmd:?} failed\nstdout:\n{so}\nstderr:\n{se}");
    so
}

#[test]
fn train_eval_predict_on_small_synthetic_set() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("palm");
    let opts = palm_cnn::data::SynthOptions {
        size: Some((64, 64)),
        ..Default::default()
    };
    palm_cnn::data::synth::generate_with(&data, &opts).unwrap();
    let run = tmp.path().join("run");
    let d = data.to_str().unwrap();
    let r = run.to_str().unwrap();

    let out = run_ok(bin().args([
        "train",
        "--model",
        "lenet-palm",
        "--data",
        d,
        "--epochs",
        "1",
        "--limit",
        "24",
        "--batch-size",
        "8",
        "--out",
        r,
        "--quiet",
    ]));
    assert!(out.contains("done: lenet-palm, 1 epochs, validation accuracy"), "{out}");
    let ck = run.join("model.safetensors");
    assert!(ck.exists() && run.join("metrics.csv").exists());
    let hist: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(hist["batches"].as_array().unwrap().len(), 3);
    let epoch = &hist["epochs"][0];
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2);

    // eval on the same validation subset reproduces the epoch's validation numbers.
    let out = run_ok(bin().args([
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--data",
        d,
        "--limit",
        "24",
        "--batch-size",
        "8",
    ]));
    let want = format!(
        "[validation] accuracy/loss: {:.4}/{:.4}",
        epoch["val_accuracy"].as_f64().unwrap(),
        epoch["val_loss"].as_f64().unwrap()
    );
    assert!(out.contains(&want), "{out}\nwanted {want}");

    // predict: one probability per image, in [0, 1].
    let ds = palm_cnn::data::open(&data).unwrap();
    let imgs: Vec<String> = ds.valid.samples[..2]
        .iter()
        .map(|s| s.source.display_path().to_string_lossy().into_owned())
        .collect();
    let out = run_ok(
        bin()
            .args(["predict", "--checkpoint", ck.to_str().unwrap()])
            .args(&imgs),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (l, img) in lines.iter().zip(&imgs) {
        let (name, p) = l.split_once('\t').unwrap();
        assert_eq!(name, img);
        let p: f64 = p.parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{p}");
    }

    // A truncated checkpoint: non-zero exit, one line naming the tensor.
    let cut = tmp.path().join("cut.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = bin()
        .args(["predict", "--checkpoint", cut.to_str().unwrap()])
        .args(&imgs)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("fc1.weight") && err.contains("truncated"),
        "{err}"
    );
    assert!(!Path::new(&cut.with_extension("safetensors.tmp")).exists());
}

/// ResNet-50 with the course's recipe keeps its L2 weight decay 0.001 unless `--weight-decay`
/// says otherwise (the command once overwrote it with "none"); `data synth --masks` and
/// `explain` (PNG per photo, and the lesion share) run on the result.
#[test]
fn resnet50_recipe_weight_decay_and_explain() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("palm");
    let d = data.to_str().unwrap();
    let out = run_ok(bin().args(["data", "synth", "--out", d, "--size", "64x64", "--masks"]));
    assert!(out.contains("wrote 211 lesion masks"), "{out}");
    assert_eq!(
        std::fs::read_dir(data.join("PALM-Validation-Masks")).unwrap().count(),
        211
    );

    let train = |run: &Path, extra: &[&str]| {
        run_ok(
            bin()
                .args(["train", "--model", "resnet50", "--data", d, "--epochs", "1"])
                .args(["--limit", "4", "--batch-size", "4", "--quiet", "--out"])
                .arg(run)
                .args(extra),
        );
        let text = std::fs::read_to_string(run.join("metrics.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["config"]["weight_decay"].clone()
    };
    let run = tmp.path().join("run");
    assert_eq!(train(&run, &[]).as_f64(), Some(0.001));
    assert!(train(&tmp.path().join("run0"), &["--weight-decay", "0"]).is_null());

    let ck = run.join("model.safetensors");
    let photo = data.join("PALM-Validation400").join("V0001.jpg");
    let gc = tmp.path().join("gc");
    let out = run_ok(
        bin()
            .args(["explain", "--checkpoint", ck.to_str().unwrap(), "--out"])
            .arg(&gc)
            .arg(&photo),
    );
    let fields: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 3, "{out}");
    let p: f64 = fields[1].parse().unwrap();
    assert!((0.0..=1.0).contains(&p), "{p}");
    let png = gc.join("V0001_gradcam.png");
    assert_eq!(Path::new(fields[2]), png);
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let info = decoder.read_info().unwrap();
    // Two 224×224 tiles side by side, with captions and a title.
    assert!(
        info.info().width >= 448 && info.info().height >= 224,
        "{:?}",
        info.info()
    );

    let json = tmp.path().join("share.json");
    let out = run_ok(
        bin()
            .args(["explain", "--checkpoint", ck.to_str().unwrap(), "--lesion-share"])
            .args(["--data", d, "--limit", "3", "--json", json.to_str().unwrap()]),
    );
    assert!(out.starts_with("resnet50: Grad-CAM at `bb_3_2`"), "{out}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(
        images.len() + report["zero_maps"].as_u64().unwrap() as usize,
        3,
        "{report}"
    );
    for i in images {
        let (share, area) = (i["share"].as_f64().unwrap(), i["area"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&share) && area > 0.0 && area < 1.0, "{i}");
    }

    // Without masks, the lesion share says how to get them.
    std::fs::remove_dir_all(data.join("PALM-Validation-Masks")).unwrap();
    let out = bin()
        .args([
            "explain",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--lesion-share",
            "--data",
            d,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("data synth --masks"));
}
