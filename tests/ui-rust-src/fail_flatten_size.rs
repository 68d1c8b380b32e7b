// LeNet-PALM's third convolution gives 120×50×50 = 300,000 features, not 30,000.
use dfdx::prelude::*;
use palm_cnn::nn::{Conv2d, Flatten};

fn main() {
    let dev = Cpu::default();
    let net = dev.build_module::<(Conv2d<16, 120, 4, 1, 0, 50, 50>, Flatten<30_000>), f32>();
    let _ = net.forward(dev.zeros::<Rank4<1, 16, 53, 53>>());
}
