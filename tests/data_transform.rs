//! The course transform: exact OpenCV INTER_LINEAR resize, channel order, scaling.
use palm_cnn::data::transform::{course_transform, normalize, resize_linear, to_chw, ChannelOrder};

#[test]
fn halving_averages_2x2_blocks_with_rounding() {
    // 4x4 gray image (1 channel). Half-pixel centres at scale 2 fall exactly
    // between source pixels, so each output is the rounded mean of a 2x2 block:
    // (a + b + c + d + 2) >> 2.
    #[rustfmt::skip]
    let src = [
        10, 20,   0, 255,
        30, 41, 255, 255,
         1,  2, 100, 101,
         3,  5, 102, 104,
    ];
    let out = resize_linear(&src, 4, 4, 1, 2, 2);
    // (10+20+30+41+2)>>2 = 103>>2 = 25; (0+255+255+255+2)>>2 = 767>>2 = 191;
    // (1+2+3+5+2)>>2 = 13>>2 = 3; (100+101+102+104+2)>>2 = 409>>2 = 102.
    assert_eq!(out, vec![25, 191, 3, 102]);
}

#[test]
fn upscaling_uses_half_pixel_centres_and_clamps_borders() {
    // 2x1 -> 4x1: source positions (d + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25;
    // clamped at the borders: 0, 0.25*200, 0.75*200, 200.
    let out = resize_linear(&[0, 200], 2, 1, 1, 4, 1);
    assert_eq!(out, vec![0, 50, 150, 200]);
    // Same along y, 3 channels, independent per channel.
    let out = resize_linear(&[0, 100, 40, 200, 0, 80], 1, 2, 3, 1, 4);
    assert_eq!(out, vec![0, 100, 40, 50, 75, 50, 150, 25, 70, 200, 0, 80]);
}

#[test]
fn matches_cv2_resize_byte_for_byte() {
    // Reference: opencv-python-headless 4.10, cv2.resize(img, (11, 13)) of this
    // LCG-generated 37x29x3 image (see bench/decode_bench.py for the generator).
    let (w, h) = (37, 29);
    let mut st: u64 = 12345;
    let img: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            st = (st * 1103515245 + 12345) & 0x7fff_ffff;
            ((st >> 16) & 255) as u8
        })
        .collect();
    let expected_hex = "9d5857717f6e537cd7526de55e7c50fb0d9fa586a54894964ea5974d3048e7ba4eab9b995eb06447b895b63b3d9dd7225fc9576ab4d377953725dbb0439fc2977547b07048596fbc4b22a859c0bded225c27af9d5a96ac41d079af3b6d919fe9de9b39b4724cadce6a2ccb9b1ca0a9b69d755f6c62ac9c8cd4266a8c401b5ba1515161cd34514662897b6b4f6574adbb9c9b4d7b57ac648378878e619e6f7a1a519693ccd686a79c6da0e2ca85be77c75a877c5d969d9d6c3f607d906fcd9ba77792afd2455240c680587082994cbe7f7cd3a63a39623f914de587cd38dcace118e0a17e1a2b82904db078c48ae4ce3d749270b94294bdab337369a236d05e958dc639be49ca85374578a19474ae6b9f6d88ada75c3e66a58352973b564c9bb7855a9da73a7d4153cb5ebd8aaed8754c71ac865970c2918ab34c485665e197809057771c4f9fa1e36ccf5178d550afd7f561c251c46a5d215e23f3125b9567cb42c067ea4f95626b67c8caaa6455aea66bb122748899858e76adcc67a0a1648b209e8d792b797e5fa37466c4aa8d3585a6c16854285e7b7268ad779b6b3849ad7e8e66a9515a528330743a206c";
    let expected: Vec<u8> = (0..expected_hex.len() / 2)
        .map(|i| u8::from_str_radix(&expected_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(resize_linear(&img, w, h, 3, 11, 13), expected);
}

#[test]
fn chw_reorders_channels_bgr_by_default() {
    let rgb = [10, 20, 30, 40, 50, 60]; // two pixels, RGB
    assert_eq!(ChannelOrder::default(), ChannelOrder::Bgr);
    assert_eq!(to_chw(&rgb, 2, 1, ChannelOrder::Bgr), vec![30, 60, 20, 50, 10, 40]);
    assert_eq!(to_chw(&rgb, 2, 1, ChannelOrder::Rgb), vec![10, 40, 20, 50, 30, 60]);
}

#[test]
fn normalize_is_x_over_255_times_2_minus_1() {
    assert_eq!(normalize(0), -1.0);
    assert_eq!(normalize(255), 1.0);
    assert_eq!(normalize(51), -0.6f64 as f32); // 51/255 = 0.2
    assert_eq!(normalize(153), 0.2f64 as f32); // 153/255 = 0.6 -> 0.2
}

#[test]
fn whole_course_transform_on_a_hand_made_image() {
    // 2x2 RGB image -> 1x1: mean of the four pixels per channel, rounded:
    // R (0+255+0+255+2)>>2 = 128, G (51*4+2)>>2 = 51, B (0+0+0+4+2)>>2 = 1.
    let rgb = [0, 51, 0, 255, 51, 0, 0, 51, 0, 255, 51, 4];
    let bgr = course_transform(&rgb, 2, 2, 1, ChannelOrder::Bgr);
    let f = |x: f64| (x / 255.0 * 2.0 - 1.0) as f32;
    assert_eq!(bgr, vec![f(1.0), f(51.0), f(128.0)]);
    let rgb_out = course_transform(&rgb, 2, 2, 1, ChannelOrder::Rgb);
    assert_eq!(rgb_out, vec![f(128.0), f(51.0), f(1.0)]);
}
