// A batch normalisation of 128 channels after a convolution that gives 64.
use dfdx::prelude::*;
use palm_cnn::nn::{BatchNorm2d, Conv2dNoBias};

fn main() {
    let dev = Cpu::default();
    let net = dev.build_module::<(Conv2dNoBias<3, 64, 3, 1, 1, 8, 8>, BatchNorm2d<128>), f32>();
    let _ = net.forward(dev.zeros::<Rank4<1, 3, 8, 8>>());
}
