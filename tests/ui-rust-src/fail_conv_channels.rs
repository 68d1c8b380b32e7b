// The second convolution expects 16 channels but the first gives 6.
use dfdx::prelude::*;
use palm_cnn::nn::Conv2d;

fn main() {
    let dev = Cpu::default();
    let net = dev.build_module::<(Conv2d<1, 6, 5, 1, 0, 24, 24>, ReLU, Conv2d<16, 16, 5, 1, 0, 20, 20>), f32>();
    let _ = net.forward(dev.zeros::<Rank4<1, 1, 28, 28>>());
}
