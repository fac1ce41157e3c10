// HailoRT test double (hailo-clip): the umbrella header, as HailoRT's hailort.hpp.
#ifndef HAILO_CLIP_FAKE_HAILORT_HPP
#define HAILO_CLIP_FAKE_HAILORT_HPP

#include "hailo/hailort.h"
#include "hailo/expected.hpp"
#include "hailo/buffer.hpp"
#include "hailo/device.hpp"
#include "hailo/vdevice.hpp"
#include "hailo/infer_model.hpp"

#endif
