//! VGG-16, the course's variant for 224×224 inputs and one output logit: thirteen 3×3
//! convolutions in five blocks, each block ending in a 2×2 max-pool.

use crate::nn::{Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU};

crate::network! {
    /// VGG-16 (course variant): 3×224×224 → one logit. 134,264,641 parameters, 102,764,544 of
    /// them in `fc1`.
    pub struct Vgg16: [3, 224, 224] -> [1], cam_layer = act5_3 {
        conv1_1: Conv2d<3, 64, 3, 1, 1, 224, 224, E, D>,
        act1_1: ReLU,
        conv1_2: Conv2d<64, 64, 3, 1, 1, 224, 224, E, D>,
        act1_2: ReLU,
        pool1: MaxPool2d<2, 2, 112, 112>,
        conv2_1: Conv2d<64, 128, 3, 1, 1, 112, 112, E, D>,
        act2_1: ReLU,
        conv2_2: Conv2d<128, 128, 3, 1, 1, 112, 112, E, D>,
        act2_2: ReLU,
        pool2: MaxPool2d<2, 2, 56, 56>,
        conv3_1: Conv2d<128, 256, 3, 1, 1, 56, 56, E, D>,
        act3_1: ReLU,
        conv3_2: Conv2d<256, 256, 3, 1, 1, 56, 56, E, D>,
        act3_2: ReLU,
        conv3_3: Conv2d<256, 256, 3, 1, 1, 56, 56, E, D>,
        act3_3: ReLU,
        pool3: MaxPool2d<2, 2, 28, 28>,
        conv4_1: Conv2d<256, 512, 3, 1, 1, 28, 28, E, D>,
        act4_1: ReLU,
        conv4_2: Conv2d<512, 512, 3, 1, 1, 28, 28, E, D>,
        act4_2: ReLU,
        conv4_3: Conv2d<512, 512, 3, 1, 1, 28, 28, E, D>,
        act4_3: ReLU,
        pool4: MaxPool2d<2, 2, 14, 14>,
        conv5_1: Conv2d<512, 512, 3, 1, 1, 14, 14, E, D>,
        act5_1: ReLU,
        conv5_2: Conv2d<512, 512, 3, 1, 1, 14, 14, E, D>,
        act5_2: ReLU,
        conv5_3: Conv2d<512, 512, 3, 1, 1, 14, 14, E, D>,
        act5_3: ReLU,
        pool5: MaxPool2d<2, 2, 7, 7>,
        flatten: Flatten<25_088>,
        fc1: Linear<25_088, 4096, E, D>,
        act6: ReLU,
        drop1: Dropout,
        fc2: Linear<4096, 4096, E, D>,
        act7: ReLU,
        drop2: Dropout,
        fc3: Linear<4096, 1, E, D>,
    }
}
