//! LeNet, as the course writes it: sigmoid activations, max pooling, a 120-channel 4×4 (MNIST)
//! or 4×4 over 50×50 (iChallenge-PM) third convolution; and LeNet-PALM with ReLU in place of
//! the sigmoids, the first change the course's discussion suggests when LeNet does not learn.

use crate::nn::{Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sigmoid};

crate::network! {
    /// LeNet for 1×28×28 MNIST digits → 10 class logits. 41,806 parameters.
    pub struct LeNetMnist: [1, 28, 28] -> [10] {
        conv1: Conv2d<1, 6, 5, 1, 0, 24, 24, E, D>,
        act1: Sigmoid,
        pool1: MaxPool2d<2, 2, 12, 12>,
        conv2: Conv2d<6, 16, 5, 1, 0, 8, 8, E, D>,
        act2: Sigmoid,
        pool2: MaxPool2d<2, 2, 4, 4>,
        conv3: Conv2d<16, 120, 4, 1, 0, 1, 1, E, D>,
        act3: Sigmoid,
        flatten: Flatten<120>,
        fc1: Linear<120, 64, E, D>,
        act4: Sigmoid,
        fc2: Linear<64, 10, E, D>,
    }
}

crate::network! {
    /// LeNet for 3×224×224 fundus photos → one logit (pathologic myopia). 19,233,841 parameters,
    /// nearly all in `fc1` (300,000 → 64).
    pub struct LeNetPalm: [3, 224, 224] -> [1], cam_layer = act3 {
        conv1: Conv2d<3, 6, 5, 1, 0, 220, 220, E, D>,
        act1: Sigmoid,
        pool1: MaxPool2d<2, 2, 110, 110>,
        conv2: Conv2d<6, 16, 5, 1, 0, 106, 106, E, D>,
        act2: Sigmoid,
        pool2: MaxPool2d<2, 2, 53, 53>,
        conv3: Conv2d<16, 120, 4, 1, 0, 50, 50, E, D>,
        act3: Sigmoid,
        flatten: Flatten<300_000>,
        fc1: Linear<300_000, 64, E, D>,
        act4: Sigmoid,
        fc2: Linear<64, 1, E, D>,
    }
}

crate::network! {
    /// [`LeNetPalm`] with ReLU activations in place of the sigmoids: same layers, same
    /// 19,233,841 parameters, but activations that do not saturate (the sigmoid's derivative is
    /// at most 1/4, so five sigmoid layers shrink the gradient reaching `conv1` by 4⁵ or more).
    pub struct LeNetPalmRelu: [3, 224, 224] -> [1], cam_layer = act3 {
        conv1: Conv2d<3, 6, 5, 1, 0, 220, 220, E, D>,
        act1: ReLU,
        pool1: MaxPool2d<2, 2, 110, 110>,
        conv2: Conv2d<6, 16, 5, 1, 0, 106, 106, E, D>,
        act2: ReLU,
        pool2: MaxPool2d<2, 2, 53, 53>,
        conv3: Conv2d<16, 120, 4, 1, 0, 50, 50, E, D>,
        act3: ReLU,
        flatten: Flatten<300_000>,
        fc1: Linear<300_000, 64, E, D>,
        act4: ReLU,
        fc2: Linear<64, 1, E, D>,
    }
}
